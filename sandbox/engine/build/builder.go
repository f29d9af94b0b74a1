package build

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	buildtypes "github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Store is what the builder needs from one view of the image store.
type Store interface {
	// Resolve finds an image by reference, full ID or unique ID prefix and
	// returns its ID ("sha256:<hex>"); an error with a NotFound() method
	// when there is none.
	Resolve(ctx context.Context, name string) (string, error)
	// Config returns the exact config bytes of the image.
	Config(ctx context.Context, id string) ([]byte, error)
	// LayerDirs returns the extracted layer directories of the image, top
	// layer first (overlay lowerdir order).
	LayerDirs(ctx context.Context, id string) ([]string, error)
	// CacheChildren lists the images built locally in this view whose
	// parent is parent; parent "" lists built images with no parent.
	CacheChildren(ctx context.Context, parent string) ([]string, error)
	// CommitLayer turns an overlay upper directory into a stored layer and
	// returns its diff ID.
	CommitLayer(ctx context.Context, upperDir string) (diffID string, err error)
	// CommitRunLayer is CommitLayer for the upper directory of a RUN
	// container, whose owners are shifted when Runner.Shifted.
	CommitRunLayer(ctx context.Context, upperDir string) (diffID string, err error)
	// CreateImage stores config as an image built locally, child of parent
	// (may be ""), and returns its ID.
	CreateImage(ctx context.Context, config []byte, parent string) (string, error)
	// Tag points ref (normalised, e.g. "docker.io/library/app:latest") at id.
	Tag(ctx context.Context, id, ref string) error
}

// Puller fetches an image the store lacks (an implicit pull by FROM or
// COPY --from), writing Docker's pull lines to out; it returns the ID.
type Puller interface {
	PullForBuild(ctx context.Context, name string, out io.Writer) (id string, err error)
}

// Runner runs one RUN step's process in a container.
type Runner interface {
	Run(ctx context.Context, spec RunSpec) (exitCode int, err error)
	// Shifted reports whether RUN containers run in a user namespace, so
	// that their upper directories hold shifted host ids.
	Shifted() bool
}

// RunSpec describes a RUN container: an overlay of Lowers (top first)
// with Upper/Work, and the process.
type RunSpec struct {
	ID          string
	Lowers      []string
	Upper, Work string
	// Volumes are bind mounts of scratch directories over the image's
	// VOLUME paths: what RUN writes there never reaches the layer, while
	// the mount points do, as with dockerd's anonymous volumes.
	Volumes        []VolumeMount
	Args, Env      []string
	Cwd, User      string
	Hostname       string
	Stdout, Stderr io.Writer
}

// VolumeMount is one of RunSpec.Volumes: Source (a host directory) on
// Destination (an absolute path in the container).
type VolumeMount struct {
	Source, Destination string
}

// Config configures a Builder.
type Config struct {
	Store  Store
	Runner Runner // nil: RUN steps fail with a clear error
	Puller Puller // nil: a missing base image fails the build
	// WorkDir holds per-step scratch directories (context, upper, work,
	// mount points). It must be on the same filesystem as the store so
	// layers can be committed by rename.
	WorkDir       string
	DockerVersion string // recorded in image configs
}

// Request is one build.
type Request struct {
	Options *buildtypes.ImageBuildOptions // Options.Context is the tar
	Stdout  io.Writer                     // each Write is one stream message
	Stderr  io.Writer
	Aux     func(v any) error // nil: no aux messages (clients before 1.30)
}

// Builder runs classic builds against one store view.
type Builder struct {
	cfg Config
}

// New returns a Builder.
func New(cfg Config) *Builder {
	if cfg.DockerVersion == "" {
		cfg.DockerVersion = "28.5.2"
	}
	return &Builder{cfg: cfg}
}

type invalidParam struct{ error }

func (invalidParam) InvalidParameter() {}
func (e invalidParam) Unwrap() error   { return e.error }

type notFound struct{ error }

func (notFound) NotFound()       {}
func (e notFound) Unwrap() error { return e.error }

// Build runs the build and tags the result; it returns the image ID.
func (b *Builder) Build(ctx context.Context, req Request) (string, error) {
	o := req.Options
	tags, err := sanitizeTags(o.Tags)
	if err != nil {
		return "", err
	}
	if o.RemoteContext != "" {
		return "", invalidParam{errors.New("remote build contexts are not supported: this engine has no network access")}
	}
	if o.Squash {
		return "", invalidParam{errors.New("squash is only supported with experimental mode")}
	}
	if err := os.MkdirAll(b.cfg.WorkDir, 0o700); err != nil {
		return "", fmt.Errorf("build work dir: %w", err)
	}
	scratch, err := os.MkdirTemp(b.cfg.WorkDir, "build-")
	if err != nil {
		return "", fmt.Errorf("build work dir: %w", err)
	}
	defer os.RemoveAll(scratch)

	src, err := extractContext(o.Context, filepath.Join(scratch, "context"))
	if err != nil {
		return "", err
	}
	dfName := o.Dockerfile
	if dfName == "" {
		dfName = "Dockerfile"
	}
	ast, err := src.readDockerfile(dfName)
	if err != nil {
		return "", err
	}

	bs := &buildState{
		b: b, ctx: ctx, req: req, src: src, scratch: scratch,
		stdout: req.Stdout, stderr: req.Stderr,
		stages: newStageResults(),
	}
	id, err := bs.run(ast)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(req.Stdout, "Successfully built %s\n", truncID(id))
	for _, ref := range tags {
		if err := b.cfg.Store.Tag(ctx, id, ref.String()); err != nil {
			return "", err
		}
		fmt.Fprintf(req.Stdout, "Successfully tagged %s\n", reference.FamiliarString(ref))
	}
	return id, nil
}

// sanitizeTags is dockerd's sanitizeRepoAndTags. Its errors are plain
// ones, so 500s, as dockerd 20.10 answers them.
func sanitizeTags(names []string) ([]reference.Named, error) {
	var out []reference.Named
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" {
			continue
		}
		ref, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			if strings.HasSuffix(err.Error(), ") must be lowercase") {
				// dockerd 20.10's wording, without the name newer
				// reference parsers add.
				return nil, fmt.Errorf("%w: %w", reference.ErrReferenceInvalidFormat, reference.ErrNameContainsUppercase)
			}
			return nil, err
		}
		if _, ok := ref.(reference.Digested); ok {
			return nil, errors.New("build tag cannot contain a digest")
		}
		ref = reference.TagNameOnly(ref)
		if !seen[ref.String()] {
			seen[ref.String()] = true
			out = append(out, ref)
		}
	}
	return out, nil
}

func truncID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func randomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// buildState is one running build.
type buildState struct {
	b              *Builder
	ctx            context.Context
	req            Request
	src            *buildContext
	scratch        string
	stdout, stderr io.Writer
	stages         *stageResults
}

const stepFormat = "Step %d/%d : %v\n"

// plan is a parsed Dockerfile as the build dispatches it: its stages, cut
// at the target and with the --label options appended, the meta ARGs
// before the first FROM, and the number of steps the output counts.
type plan struct {
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	total    int
}

// newPlan turns a parsed Dockerfile into a plan; its errors are the
// learner's (400s).
func newPlan(ast *parser.Result, o *buildtypes.ImageBuildOptions) (*plan, error) {
	stages, metaArgs, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return nil, invalidParam{legacyParseError(err)}
	}
	if o.Target != "" {
		ix, found := instructions.HasStage(stages, o.Target)
		if !found {
			return nil, invalidParam{fmt.Errorf("failed to reach build target %s in Dockerfile", o.Target)}
		}
		stages = stages[:ix+1]
	}
	if len(o.Labels) > 0 && len(stages) > 0 {
		// --label becomes a LABEL at the end of the last stage (dockerd's
		// buildLabelOptions).
		last := &stages[len(stages)-1]
		for _, k := range sortedKeys(o.Labels) {
			last.AddCommand(instructions.NewLabelCommand(k, o.Labels[k], true))
		}
	}
	total := len(metaArgs) + len(stages)
	for _, s := range stages {
		total += len(s.Commands)
	}
	return &plan{stages: stages, metaArgs: metaArgs, total: total}, nil
}

func (bs *buildState) run(ast *parser.Result) (string, error) {
	o := bs.req.Options
	p, err := newPlan(ast, o)
	if err != nil {
		return "", err
	}
	ast.PrintWarnings(bs.stderr)

	args := newBuildArgs(o.BuildArgs)
	stages, metaArgs, total := p.stages, p.metaArgs, p.total
	index := 1
	shlex := shell.NewLex(ast.EscapeToken)
	for i := range metaArgs {
		fmt.Fprintf(bs.stdout, stepFormat, index, total, &metaArgs[i])
		index++
		if err := processMetaArg(metaArgs[i], shlex, args); err != nil {
			return "", err
		}
	}

	var st *stageState
	for i := range stages {
		stage := stages[i]
		if err := bs.stages.checkName(stage.Name); err != nil {
			return "", err
		}
		st = &stageState{bs: bs, shlex: shell.NewLex(ast.EscapeToken), args: args.clone(), runConfig: &container.Config{}, cacheOn: !o.NoCache}
		st.args.resetAllowed()
		fmt.Fprintf(bs.stdout, stepFormat, index, total, stage.SourceCode)
		index++
		if err := st.initialize(&stage); err != nil {
			return "", err
		}
		st.runConfig.Image = st.imageID
		fmt.Fprintf(bs.stdout, " ---> %s\n", truncID(st.imageID))
		for _, cmd := range stage.Commands {
			if err := bs.ctx.Err(); err != nil {
				fmt.Fprint(bs.stdout, "Build cancelled\n")
				return "", errors.New("Build cancelled")
			}
			fmt.Fprintf(bs.stdout, stepFormat, index, total, cmd)
			index++
			if err := st.dispatch(cmd); err != nil {
				return "", err
			}
			st.runConfig.Image = st.imageID
			fmt.Fprintf(bs.stdout, " ---> %s\n", truncID(st.imageID))
		}
		if bs.req.Aux != nil && st.imageID != "" {
			if err := bs.req.Aux(buildtypes.Result{ID: st.imageID}); err != nil {
				return "", err
			}
		}
		args.mergeReferenced(st.args)
		if err := bs.stages.commit(stage.Name, st.imageID, st.runConfig); err != nil {
			return "", err
		}
	}
	args.warnOnUnused(bs.stdout)
	if st == nil || st.imageID == "" {
		return "", errors.New("No image was generated. Is your Dockerfile empty?")
	}
	return st.imageID, nil
}

func processMetaArg(meta instructions.ArgCommand, shlex *shell.Lex, args *buildArgs) error {
	envs := shell.EnvsFromSlice(mapToEnv(args.allAllowed()))
	if err := meta.Expand(func(word string) (string, error) {
		w, _, err := shlex.ProcessWord(word, envs)
		return w, err
	}); err != nil {
		return err
	}
	for _, a := range meta.Args {
		args.addArg(a.Key, a.Value)
		args.addMetaArg(a.Key, a.Value)
	}
	return nil
}

func mapToEnv(m map[string]string) []string {
	out := []string{}
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// stageResults are the finished stages, by index and by name, for
// FROM <stage> and COPY --from.
type stageResults struct {
	flat    []stageResult
	indexed map[string]stageResult
}

type stageResult struct {
	imageID string
	config  *container.Config
}

func newStageResults() *stageResults { return &stageResults{indexed: map[string]stageResult{}} }

func (r *stageResults) checkName(name string) error {
	if name != "" {
		if _, ok := r.indexed[strings.ToLower(name)]; ok {
			return fmt.Errorf("%s stage name already used", name)
		}
	}
	return nil
}

func (r *stageResults) commit(name, id string, cfg *container.Config) error {
	if err := r.checkName(name); err != nil {
		return err
	}
	res := stageResult{imageID: id, config: cfg}
	if name != "" {
		r.indexed[strings.ToLower(name)] = res
	}
	r.flat = append(r.flat, res)
	return nil
}

// get resolves a stage by name or index; ok is false when nameOrIndex is
// no stage (then it is an image reference).
func (r *stageResults) get(nameOrIndex string) (stageResult, bool, error) {
	if s, ok := r.indexed[strings.ToLower(nameOrIndex)]; ok {
		return s, true, nil
	}
	var ix int
	if _, err := fmt.Sscanf(nameOrIndex, "%d", &ix); err != nil || fmt.Sprint(ix) != nameOrIndex {
		return stageResult{}, false, nil
	}
	if ix == len(r.flat) {
		return stageResult{}, false, errors.New("refers to current build stage")
	}
	if ix < 0 || ix > len(r.flat) {
		return stageResult{}, false, errors.New("index out of bounds")
	}
	return r.flat[ix], true, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var nowFunc = time.Now

// legacyParseError words a parse error as dockerd 20.10's vendored parser
// did: "dockerfile parse error line N: ...", without buildkit's newer
// "on line" and "(did you mean ...?)" suggestions.
func legacyParseError(err error) error {
	var ui *instructions.UnknownInstructionError
	if errors.As(err, &ui) {
		return fmt.Errorf("dockerfile parse error line %d: unknown instruction: %s", ui.Line, ui.Instruction)
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "dockerfile parse error on line "); ok {
		return errors.New("dockerfile parse error line " + rest)
	}
	return err
}
