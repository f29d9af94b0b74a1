package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/build"
	"github.com/labd/labd/sandbox/engine/ctr"
	"github.com/labd/labd/sandbox/engine/distribution"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/engine/layer"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	"github.com/labd/labd/sandbox/engine/runtime"
	"github.com/opencontainers/go-digest"
)

// Version is the Docker Engine version labd's engine reports.
const Version = "28.5.2"

// DefaultView is the view `labd engine` serves.
const DefaultView = "default"

// SharedOptions configure the parts every engine of a process shares.
type SharedOptions struct {
	// NoRuntime leaves RUN steps without a container runtime (for
	// environments without root); they then fail with a clear error.
	NoRuntime bool
	// CgroupParent is the cgroup every container of this process goes
	// under, as dockerd's --cgroup-parent; default "labd". Two engines on
	// one host (or two test binaries) with different parents never see
	// each other's cgroups.
	CgroupParent string
	Logger       *slog.Logger
	// Registry says where Docker Hub's names go (the classroom registry or
	// an upstream) and which registries may be reached over HTTP.
	Registry distribution.Options
	// UserNS runs every container in a user namespace of its engine
	// (remap.go); nil: container root is host root.
	UserNS *UserNSOptions
	// Observer hears of builds, container starts and transfers of every
	// engine (labd's metrics); nil: nobody.
	Observer Observer
}

// Observer is what labd's metrics hear of the engines.
type Observer interface {
	BuildDone(d time.Duration, failed bool)
	ContainerStarted()
	// Transferred: a push or a pull ("push", "pull") of bytes over the
	// network, done or failed.
	Transferred(kind string, bytes int64, failed bool)
}

// Shared is the store and runtime shared by every sandbox's Engine.
type Shared struct {
	dir     string // <data>/engine
	Store   *image.Store
	Runtime *runtime.Runtime // nil with NoRuntime
	log     *slog.Logger
	dist    *distribution.Client // push, pull, login
	sharedNet
	remap    remap
	observer Observer // SharedOptions.Observer; nil: nobody

	closeMu sync.Mutex
	onClose []func() // OnClose
}

// OpenShared opens the engine state under dataDir/engine, sweeping what a
// killed labd left behind (staging files, build scratch directories,
// containers of RUN steps).
func OpenShared(dataDir string, opts SharedOptions) (*Shared, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// Absolute: the runtime's init and nsenter open these paths (network
	// namespaces, layers) from other working directories, so
	// `labd serve --data ./data` must not hand them relative ones.
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	dir := filepath.Join(dataDir, "engine")
	st, err := image.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	s := &Shared{dir: dir, Store: st, log: opts.Logger, remap: remap{opts: opts.UserNS}}
	s.observer = opts.Observer
	if s.dist, err = distribution.New(st, opts.Registry, Version); err != nil {
		return nil, err
	}
	if obs := opts.Observer; obs != nil {
		s.dist.OnTransfer(func(t distribution.Transfer) {
			obs.Transferred(t.Kind, t.BytesSent+t.BytesRecv, t.Error != "")
		})
	}
	// Build scratch (context, upper dirs, mount points) of a killed build.
	scratch := s.buildDir()
	if err := SweepDir(scratch); err != nil {
		return nil, fmt.Errorf("clean build scratch: %w", err)
	}
	if !opts.NoRuntime {
		ro := runtime.Options{Root: filepath.Join(dir, "runtime"), CgroupParent: opts.CgroupParent, Logger: opts.Logger}
		if opts.UserNS != nil {
			// runc's init, already container root in the user namespace
			// (an unprivileged host uid), walks to the container's bundle:
			// every directory on the way must be searchable by others. The
			// data dir need not be (it may live under /root): bundles and
			// runc's state live under /run instead, one directory per data
			// dir. Nothing there outlives a reboot, nor needs to.
			if ro.Root, err = runRoot(dataDir); err != nil {
				return nil, err
			}
		}
		// Docker's default seccomp profile on every container, as dockerd
		// does. It is not optional: learners run code as root, and the
		// profile is what keeps kernel interfaces they have no business
		// with (keyctl, bpf, module loading, ...) out of their reach.
		if !runtime.SeccompSupported() {
			return nil, errors.New("containers need Docker's default seccomp profile, but this labd was built without seccomp support: build it with -tags seccomp (make does; it needs libseccomp-dev)")
		}
		if ro.Seccomp, err = runtime.DefaultSeccompProfile(); err != nil {
			return nil, err
		}
		rt, err := runtime.New(ro)
		if err != nil {
			return nil, fmt.Errorf("start runtime: %w", err)
		}
		s.Runtime = rt
	}
	return s, nil
}

func (s *Shared) buildDir() string { return filepath.Join(s.dir, "build") }

// Dir is the engine's directory, DATA/engine. Exported for the sandbox
// provider (sandbox/enginebox), which keeps its shells' and check
// containers' files under it and finds DATA/sandboxes beside it.
func (s *Shared) Dir() string { return s.dir }

// Logger is the logger s was opened with. Exported for the sandbox
// provider (sandbox/enginebox), which logs there unless given its own.
func (s *Shared) Logger() *slog.Logger { return s.log }

// OnClose has every Close run f first, before the runtime closes (in
// the order added). The engine consumes it for the sandbox provider
// (sandbox/enginebox), whose mounts of ended sandboxes' disks for their
// kept workspaces go when labd stops.
func (s *Shared) OnClose(f func()) {
	s.closeMu.Lock()
	s.onClose = append(s.onClose, f)
	s.closeMu.Unlock()
}

// Close releases what s keeps outside the data dir (the runtime's root
// under /run with user namespaces) once every engine is closed, after
// what OnClose added.
func (s *Shared) Close() {
	s.closeMu.Lock()
	fs := append([]func(){}, s.onClose...)
	s.closeMu.Unlock()
	for _, f := range fs {
		f()
	}
	if s.Runtime != nil {
		s.Runtime.Close()
	}
}

// RuntimeRoot is where an engine on dataDir (absolute) keeps its runtime's
// state and bundles: under the data dir, or with user namespaces under
// /run/labd/<hash of the data dir's path>/runtime.
func RuntimeRoot(dataDir string, userns bool) string {
	if !userns {
		return filepath.Join(dataDir, "engine", "runtime")
	}
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join(runBase, hex.EncodeToString(sum[:8]), "runtime")
}

const runBase = "/run/labd"

// runRoot makes /run/labd searchable by others and names dataDir's
// runtime root under it.
func runRoot(dataDir string) (string, error) {
	const base = runBase
	if err := os.MkdirAll(base, 0o711); err != nil {
		return "", fmt.Errorf("runtime root: %w", err)
	}
	if err := os.Chmod(base, 0o711); err != nil {
		return "", fmt.Errorf("runtime root: %w", err)
	}
	return RuntimeRoot(dataDir, true), nil
}

// SweepDir unmounts and removes everything under dir (left by a killed
// process), keeping dir itself. Exported for the sandbox provider
// (sandbox/enginebox), which sweeps its shells', checks' and disks'
// scratch as OpenShared sweeps the build scratch.
func SweepDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	mountinfo.UnmountUnder(dir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// Engine is one sandbox's Docker engine: a view of the store, the
// builder and the event bus. It implements api.Backend.
type Engine struct {
	shared  *Shared
	view    *image.View
	builder *build.Builder
	events  *eventBus
	name    string

	ctrs      *ctr.Store
	net       Networker
	allowBind BindPolicy
	userns    *runtime.UserNS // nil: containers run as host root (remap.go)
	group     *runtime.Group  // the sandbox's cgroup; nil: none (limits.go)
	disk      *Disk           // the sandbox's disk and quota; nil: none (quota.go)
	limits    EngineLimits
	count     counters

	rec *records // for graders (records.go)

	// closers run at the end of Close (the standalone engine's network).
	closers []func(context.Context) error
	roots   stoppedRoots // docker cp's mounts of stopped containers (archive.go)
}

var _ api.Backend = (*Engine)(nil)

// Engine returns the engine of the named view, without a disk of its own
// (the standalone engine's; EngineOnDisk gives a sandbox's).
func (s *Shared) Engine(viewName string) (*Engine, error) {
	return s.EngineOnDisk(viewName, nil)
}

// EngineOnDisk returns the engine of the named view (one per sandbox)
// keeping its containers, volumes and build scratch on disk d and
// accounting its images against d's quota (quota.go); nil: no disk. The
// sandbox provider (sandbox/enginebox) mounts d before the engine opens.
func (s *Shared) EngineOnDisk(viewName string, d *Disk) (*Engine, error) {
	v, err := s.Store.View(viewName)
	if err != nil {
		return nil, fmt.Errorf("open view %s: %w", viewName, err)
	}
	rec, err := openRecords(filepath.Join(s.dir, "records"), viewName, s.log)
	if err != nil {
		return nil, fmt.Errorf("records of view %s: %w", viewName, err)
	}
	e := &Engine{shared: s, view: v, events: newEventBus(), name: viewName, rec: rec, disk: d}
	e.events.onPublish = e.recordEvent
	if err := e.loadContainers(); err != nil {
		return nil, err
	}
	var runner build.Runner
	if s.Runtime != nil {
		runner = runtimeRunner{e}
	}
	e.builder = build.New(build.Config{
		Store:         storeAdapter{e},
		Runner:        runner,
		Puller:        e,
		WorkDir:       s.buildScratch(d),
		DockerVersion: Version,
	})
	return e, nil
}

// Open opens a standalone engine (view "default") on dataDir.
func Open(dataDir string, opts SharedOptions) (*Engine, error) {
	s, err := OpenShared(dataDir, opts)
	if err != nil {
		return nil, err
	}
	e, err := s.Engine(DefaultView)
	if err != nil {
		return nil, err
	}
	e.SetAllowBind(AllowAllBinds)
	if s.Runtime != nil {
		usernsPath := ""
		if s.UserNSEnabled() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			u, release, err := s.newUserNS(ctx, DefaultView)
			cancel()
			if err != nil {
				return nil, err
			}
			e.SetUserNS(u)
			usernsPath = u.Path
			e.closers = append(e.closers, func(context.Context) error { return release() })
		}
		// As dockerd: published ports listen on the host. The bridge
		// itself still lives in a netns of its own (see network's doc).
		n, release, err := s.NewNetwork(DefaultView, "", usernsPath, true)
		if err != nil {
			return nil, errors.Join(err, e.runClosers(context.Background()))
		}
		e.SetNetwork(n)
		// Closers run in order: the network before the user namespace
		// that owns its namespaces.
		e.closers = append([]func(context.Context) error{func(ctx context.Context) error {
			return errors.Join(n.Close(ctx), release())
		}}, e.closers...)
	}
	return e, nil
}

// runClosers runs what Open attached to the engine, once.
func (e *Engine) runClosers(ctx context.Context) error {
	var errs []error
	for _, f := range e.closers {
		errs = append(errs, f(ctx))
	}
	e.closers = nil
	return errors.Join(errs...)
}

// View returns the engine's store view.
func (e *Engine) View() *image.View { return e.view }

// Shared returns the parts this engine shares with others.
func (e *Engine) Shared() *Shared { return e.shared }

// SubscribeEvents implements api.Backend.
func (e *Engine) SubscribeEvents(since, until time.Time, f filters.Args) ([]events.Message, <-chan events.Message, func()) {
	return e.events.subscribe(since, until, f)
}

func (e *Engine) imageEvent(action events.Action, id, name string) {
	attrs := map[string]string{"name": name}
	e.events.publish(events.ImageEventType, action, id, attrs)
}

// Build implements api.Backend.
func (e *Engine) Build(ctx context.Context, cfg api.BuildConfig) (string, error) {
	if cfg.Options != nil {
		if err := validateBuildOptions(cfg.Options); err != nil {
			return "", err
		}
	}
	done, err := e.acquireBuild()
	if err != nil {
		return "", err
	}
	defer done()
	rec := e.beginBuild(&cfg)
	id, err := e.builder.Build(ctx, build.Request{
		Options: cfg.Options,
		Stdout:  cfg.Stdout,
		Stderr:  cfg.Stderr,
		Aux:     cfg.Aux,
	})
	e.endBuild(rec, id, err)
	return id, mapErr(err)
}

// storeAdapter is the builder's view of the store.
type storeAdapter struct{ e *Engine }

func (a storeAdapter) Resolve(ctx context.Context, name string) (string, error) {
	id, err := a.e.view.Resolve(name)
	return id.String(), mapErr(err)
}

func (a storeAdapter) Config(ctx context.Context, id string) ([]byte, error) {
	return a.e.shared.Store.RawConfig(digest.Digest(id))
}

func (a storeAdapter) LayerDirs(ctx context.Context, id string) ([]string, error) {
	return a.e.shared.Store.Layers(digest.Digest(id))
}

func (a storeAdapter) CacheChildren(ctx context.Context, parent string) ([]string, error) {
	var out []string
	for _, c := range a.e.view.Children(digest.Digest(parent)) {
		out = append(out, c.String())
	}
	return out, nil
}

func (a storeAdapter) CommitLayer(ctx context.Context, upper string) (string, error) {
	return a.commit(ctx, upper, nil)
}

func (a storeAdapter) CommitRunLayer(ctx context.Context, upper string) (string, error) {
	var shift *layer.IDShift
	if u := a.e.userns; u != nil {
		shift = &layer.IDShift{Base: u.IDs.Base, Size: u.IDs.Size}
	}
	return a.commit(ctx, upper, shift)
}

func (a storeAdapter) commit(ctx context.Context, upper string, shift *layer.IDShift) (string, error) {
	info, err := a.e.shared.Store.CommitShiftedLayer(ctx, upper, shift)
	if err != nil {
		return "", err
	}
	if err := a.e.checkDisk(info.Size); err != nil {
		return "", err
	}
	if info.Empty {
		return "", nil
	}
	return info.DiffID.String(), nil
}

func (a storeAdapter) CreateImage(ctx context.Context, config []byte, parent string) (string, error) {
	id, err := a.e.shared.Store.PutImage(ctx, config)
	if err != nil {
		return "", err
	}
	if err := a.e.view.Add(id, digest.Digest(parent), true); err != nil {
		return "", err
	}
	return id.String(), nil
}

func (a storeAdapter) Tag(ctx context.Context, id, ref string) error {
	if err := a.e.view.Tag(digest.Digest(id), ref); err != nil {
		return mapErr(err)
	}
	a.e.imageEvent(events.ActionTag, id, familiarRef(ref))
	return nil
}

// runtimeRunner runs RUN steps on the runtime.
// runtimeRunner runs an engine's RUN steps, in its user namespace when it
// has one (the step's upper directory then holds shifted ids, which
// Shifted tells the commit).
type runtimeRunner struct{ e *Engine }

func (r runtimeRunner) Run(ctx context.Context, s build.RunSpec) (int, error) {
	u := r.e.userns
	var mounts []runtime.Mount
	for _, v := range s.Volumes {
		// The step's scratch volumes hold container ids, as a volume does.
		mounts = append(mounts, runtime.Mount{Source: v.Source, Destination: v.Destination, IDMap: u != nil})
	}
	return r.e.shared.Runtime.Run(ctx, runtime.Spec{
		ID: s.ID, Lowers: s.Lowers, Upper: s.Upper, Work: s.Work, Mounts: mounts,
		Args: s.Args, Env: s.Env, Cwd: s.Cwd, User: s.User, Hostname: s.Hostname,
		Stdout: s.Stdout, Stderr: s.Stderr, UserNS: u,
		Group: r.e.group, OOMScoreAdj: r.e.oomScoreAdj(),
	})
}

// Shifted implements build.Runner: whether RUN steps' upper directories
// hold host ids shifted by a user namespace.
func (r runtimeRunner) Shifted() bool { return r.e.userns != nil }

// mapErr gives store errors the classes the API maps to status codes.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, image.ErrNotFound):
		return api.NotFoundError(err)
	case errors.Is(err, image.ErrInvalidReference):
		return api.InvalidParameterError(err)
	case errors.Is(err, image.ErrConflict):
		return api.ConflictError(err)
	}
	return err
}
