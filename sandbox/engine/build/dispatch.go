package build

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/go-connections/nat"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/sys/unix"
)

const defaultPathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// stageState is dockerd's dispatchState: the run config being built and
// the image the stage is at.
type stageState struct {
	bs         *buildState
	shlex      *shell.Lex
	args       *buildArgs
	runConfig  *container.Config
	imageID    string
	config     *imageConfig // config of imageID; nil for scratch
	maintainer string
	cmdSet     bool
	stageName  string
	cacheOn    bool     // false with --no-cache and after the first miss
	tmpCtrs    []string // "containers" to report as removed
}

func (st *stageState) initialize(stage *instructions.Stage) error {
	st.stageName = stage.Name
	name, err := st.expandMeta(stage.BaseName)
	if err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("base name (%s) should not be blank", stage.BaseName)
	}
	if err := st.setBase(name); err != nil {
		return err
	}
	if len(st.runConfig.OnBuild) > 0 {
		triggers := st.runConfig.OnBuild
		st.runConfig.OnBuild = nil
		return st.runTriggers(triggers)
	}
	return nil
}

func (st *stageState) expandMeta(word string) (string, error) {
	var subst []string
	for k, v := range st.args.allMeta() {
		subst = append(subst, k+"="+v)
	}
	w, _, err := st.shlex.ProcessWord(word, shell.EnvsFromSlice(subst))
	return w, err
}

// setBase starts the stage from a previous stage, "scratch" or an image.
func (st *stageState) setBase(name string) error {
	ctx := st.bs.ctx
	var id string
	if s, ok, _ := st.bs.stages.get(name); ok && !isNumeric(name) {
		id = s.imageID
	} else if strings.EqualFold(name, "scratch") {
		id = ""
	} else {
		var err error
		id, err = st.bs.b.cfg.Store.Resolve(ctx, name)
		if err != nil && isNotFound(err) && st.bs.b.cfg.Puller != nil {
			id, err = st.bs.b.cfg.Puller.PullForBuild(ctx, name, st.bs.stdout)
		}
		if err != nil {
			if isNotFound(err) && st.bs.b.cfg.Puller == nil {
				return notFound{fmt.Errorf("pull access denied for %s, repository does not exist or may require 'docker login': this engine cannot pull (no network)", familiar(name))}
			}
			return err
		}
	}
	st.imageID = id
	st.runConfig = &container.Config{}
	st.config = nil
	if id != "" {
		raw, err := st.bs.b.cfg.Store.Config(ctx, id)
		if err != nil {
			return err
		}
		cfg, err := parseConfig(raw)
		if err != nil {
			return err
		}
		st.config = cfg
		if cfg.Config != nil {
			st.runConfig = copyRunConfig(cfg.Config)
		}
	}
	// dockerd's setDefaultPath.
	hasPath := false
	for _, e := range st.runConfig.Env {
		if k, _, _ := strings.Cut(e, "="); shell.EqualEnvKeys(k, "PATH") {
			hasPath = true
		}
	}
	if !hasPath {
		st.runConfig.Env = append(st.runConfig.Env, "PATH="+defaultPathEnv)
	}
	st.runConfig.OpenStdin = false
	st.runConfig.StdinOnce = false
	st.cacheOn = !st.bs.req.Options.NoCache
	return nil
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func familiar(name string) string {
	if ref, err := reference.ParseNormalizedNamed(name); err == nil {
		return reference.FamiliarName(ref)
	}
	return name
}

func isNotFound(err error) bool {
	var nf interface{ NotFound() }
	return errors.As(err, &nf)
}

func (st *stageState) runTriggers(triggers []string) error {
	out := st.bs.stdout
	fmt.Fprintf(out, "# Executing %d build trigger", len(triggers))
	if len(triggers) > 1 {
		fmt.Fprint(out, "s")
	}
	fmt.Fprintln(out)
	for _, trigger := range triggers {
		st.runConfig.Image = st.imageID
		ast, err := parser.Parse(strings.NewReader(trigger))
		if err != nil {
			return err
		}
		if len(ast.AST.Children) != 1 {
			return errors.New("onbuild trigger should be a single expression")
		}
		cmd, err := instructions.ParseCommand(ast.AST.Children[0])
		if err != nil {
			return err
		}
		if err := st.dispatch(cmd); err != nil {
			return err
		}
	}
	return nil
}

// dispatch runs one instruction (dockerd's evaluator.dispatch).
func (st *stageState) dispatch(cmd instructions.Command) (retErr error) {
	envs, err := st.expand(cmd)
	if err != nil {
		return err
	}
	defer func() {
		o := st.bs.req.Options
		if o.ForceRemove || (o.Remove && retErr == nil) {
			for _, id := range st.tmpCtrs {
				fmt.Fprintf(st.bs.stdout, "Removing intermediate container %s\n", truncID(id))
			}
		}
		st.tmpCtrs = nil
	}()
	switch c := cmd.(type) {
	case *instructions.EnvCommand:
		return st.dispatchEnv(c)
	case *instructions.MaintainerCommand:
		st.maintainer = c.Maintainer
		return st.commit("MAINTAINER " + c.Maintainer)
	case *instructions.LabelCommand:
		if st.runConfig.Labels == nil {
			st.runConfig.Labels = map[string]string{}
		}
		msg := "LABEL"
		for _, v := range c.Labels {
			st.runConfig.Labels[v.Key] = v.Value
			msg += " " + v.String()
		}
		return st.commit(msg)
	case *instructions.AddCommand:
		return st.dispatchAdd(c)
	case *instructions.CopyCommand:
		return st.dispatchCopy(c)
	case *instructions.OnbuildCommand:
		st.runConfig.OnBuild = append(st.runConfig.OnBuild, c.Expression)
		return st.commit("ONBUILD " + c.Expression)
	case *instructions.WorkdirCommand:
		return st.dispatchWorkdir(c)
	case *instructions.RunCommand:
		return st.dispatchRun(c)
	case *instructions.CmdCommand:
		cmdLine, esc := st.resolveCmdLine(c.ShellDependantCmdLine)
		st.runConfig.Cmd = cmdLine
		st.runConfig.ArgsEscaped = esc
		if err := st.commit(fmt.Sprintf("CMD %q", cmdLine)); err != nil {
			return err
		}
		if len(c.CmdLine) != 0 {
			st.cmdSet = true
		}
		return nil
	case *instructions.HealthCheckCommand:
		if hc := st.runConfig.Healthcheck; hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE" {
			fmt.Fprintf(st.bs.stdout, "Note: overriding previous HEALTHCHECK: %v\n", hc.Test)
		}
		h := c.Health
		st.runConfig.Healthcheck = &container.HealthConfig{
			Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries,
		}
		// dockerd formats the struct with %q (durations quoted, retries as
		// a rune); created-by strings must match it.
		var hc any = &legacyHealthConfig{h.Test, h.Interval, h.Timeout, h.StartPeriod, h.Retries}
		return st.commit(fmt.Sprintf("HEALTHCHECK %q", hc))
	case *instructions.EntrypointCommand:
		cmdLine, esc := st.resolveCmdLine(c.ShellDependantCmdLine)
		st.runConfig.Entrypoint = cmdLine
		st.runConfig.ArgsEscaped = esc
		if !st.cmdSet {
			st.runConfig.Cmd = nil
		}
		return st.commit(fmt.Sprintf("ENTRYPOINT %q", st.runConfig.Entrypoint))
	case *instructions.ExposeCommand:
		var ports []string
		for _, p := range c.Ports {
			ps, err := st.shlex.ProcessWords(p, envs)
			if err != nil {
				return err
			}
			ports = append(ports, ps...)
		}
		c.Ports = ports
		ps, _, err := nat.ParsePortSpecs(ports)
		if err != nil {
			return invalidParam{err}
		}
		if st.runConfig.ExposedPorts == nil {
			st.runConfig.ExposedPorts = nat.PortSet{}
		}
		for p := range ps {
			st.runConfig.ExposedPorts[p] = struct{}{}
		}
		return st.commit("EXPOSE " + strings.Join(c.Ports, " "))
	case *instructions.UserCommand:
		st.runConfig.User = c.User
		return st.commit(fmt.Sprintf("USER %v", c.User))
	case *instructions.VolumeCommand:
		if st.runConfig.Volumes == nil {
			st.runConfig.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return errors.New("VOLUME specified can not be an empty string")
			}
			st.runConfig.Volumes[v] = struct{}{}
		}
		return st.commit(fmt.Sprintf("VOLUME %v", c.Volumes))
	case *instructions.StopSignalCommand:
		if _, err := parseSignal(c.Signal); err != nil {
			return invalidParam{err}
		}
		st.runConfig.StopSignal = c.Signal
		return st.commit(fmt.Sprintf("STOPSIGNAL %v", c.Signal))
	case *instructions.ArgCommand:
		var b strings.Builder
		b.WriteString("ARG ")
		for i, a := range c.Args {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString(a.Key)
			if a.Value != nil {
				b.WriteString("=" + *a.Value)
			}
			st.args.addArg(a.Key, a.Value)
		}
		return st.commit(b.String())
	case *instructions.ShellCommand:
		st.runConfig.Shell = c.Shell
		return st.commit(fmt.Sprintf("SHELL %v", st.runConfig.Shell))
	}
	return fmt.Errorf("unsupported command type: %v", reflect.TypeOf(cmd))
}

// expand substitutes the stage's environment and allowed build args in
// cmd's words, in place, and returns that environment.
func (st *stageState) expand(cmd instructions.Command) (shell.EnvGetter, error) {
	env := st.runConfig.Env
	envs := shell.EnvsFromSlice(append(append([]string{}, env...), st.args.filterAllowed(env)...))
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		if err := ex.Expand(func(word string) (string, error) {
			w, _, err := st.shlex.ProcessWord(word, envs)
			return w, err
		}); err != nil {
			return nil, invalidParam{err}
		}
	}
	return envs, nil
}

// legacyHealthConfig is container.HealthConfig as dockerd 20.10 had it
// (no StartInterval), for the HEALTHCHECK created-by string.
type legacyHealthConfig struct {
	Test        []string
	Interval    time.Duration
	Timeout     time.Duration
	StartPeriod time.Duration
	Retries     int
}

func (st *stageState) dispatchEnv(c *instructions.EnvCommand) error {
	return st.commit(st.applyEnv(c))
}

// applyEnv sets c's variables in the run config and returns the step's
// created-by text.
func (st *stageState) applyEnv(c *instructions.EnvCommand) string {
	msg := bytes.NewBufferString("ENV")
	for _, e := range c.Env {
		nv := e.String()
		msg.WriteString(" " + nv)
		found := false
		for i, cur := range st.runConfig.Env {
			k, _, _ := strings.Cut(cur, "=")
			if shell.EqualEnvKeys(k, e.Key) {
				st.runConfig.Env[i] = nv
				found = true
				break
			}
		}
		if !found {
			st.runConfig.Env = append(st.runConfig.Env, nv)
		}
	}
	return msg.String()
}

// resolveCmdLine is dockerd's for Linux: the parsed command line as is,
// so "ENTRYPOINT []" (which the parser gives as nil) clears the
// entrypoint to null while "CMD []" leaves an empty list, and ArgsEscaped
// is never set (it is Windows-only).
func (st *stageState) resolveCmdLine(cmd instructions.ShellDependantCmdLine) ([]string, bool) {
	result := cmd.CmdLine
	if cmd.PrependShell && result != nil {
		result = append(getShell(st.runConfig), result...)
	}
	return result, false
}

func getShell(c *container.Config) []string {
	if len(c.Shell) == 0 {
		return []string{"/bin/sh", "-c"}
	}
	return append([]string{}, c.Shell...)
}

func parseSignal(s string) (syscall.Signal, error) {
	if n, err := parseUint(s); err == nil {
		if n == 0 || n > 64 {
			return 0, fmt.Errorf("Invalid signal: %s", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	if strings.HasPrefix(name, "SIGRTMIN") || strings.HasPrefix(name, "SIGRTMAX") {
		return 0, nil
	}
	return 0, fmt.Errorf("Invalid signal: %s", s)
}

func parseUint(s string) (uint64, error) {
	var n uint64
	if s == "" {
		return 0, errors.New("empty")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, errors.New("not a number")
		}
		n = n*10 + uint64(r-'0')
	}
	return n, nil
}

// commit is dockerd's Builder.commit for metadata instructions: probe
// the cache with "#(nop) <comment>", else "run" a container that changes
// nothing and commit an image with an empty layer.
func (st *stageState) commit(comment string) error {
	probe := copyRunConfig(st.runConfig)
	probe.Cmd = append(getShell(st.runConfig), "#(nop) ", comment)
	if hit, err := st.probeCache(probe); err != nil || hit {
		return err
	}
	id := st.createWith(probe)
	return st.commitContainer(id, probe, "")
}

// createWith is create for a step whose container is created from cfg.
// dockerd's container create changes that very config, and metadata and
// WORKDIR steps then commit it as their container_config: the current
// image's config fills what cfg leaves empty (fillFromImage), and
// the host is named after the container (generateHostname). cfg shares
// its Healthcheck with the stage's run config, as in dockerd, so a
// "HEALTHCHECK NONE" after a HEALTHCHECK keeps the old intervals from
// then on. COPY and ADD create no container.
func (st *stageState) createWith(cfg *container.Config) string {
	id := st.create()
	if st.config != nil && st.config.Config != nil {
		fillFromImage(cfg, imageRunConfig(st.config.Config))
	}
	if len(cfg.Entrypoint) == 1 && cfg.Entrypoint[0] == "" {
		cfg.Entrypoint = nil
	}
	if cfg.Hostname == "" {
		cfg.Hostname = id[:12]
	}
	return id
}

// imageRunConfig copies an image's run config deep enough that merging
// it into a container config never ties the two together: dockerd reads
// the image from its store afresh for every container.
func imageRunConfig(c *container.Config) *container.Config {
	cp := copyRunConfig(c)
	if c.Healthcheck != nil {
		h := *c.Healthcheck
		h.Test = cloneStrings(c.Healthcheck.Test)
		cp.Healthcheck = &h
	}
	return cp
}

// fillFromImage gives a step container's config the image's values
// wherever it has none, in place, as dockerd's container create does:
// scalars and the working directory when empty; ports, volumes, labels
// and environment variables the config lacks, added; the command only
// when neither entrypoint nor command is set; the health check field by
// field.
func fillFromImage(cfg, img *container.Config) {
	orImage := func(v *string, iv string) {
		if *v == "" {
			*v = iv
		}
	}
	orImage(&cfg.User, img.User)
	orImage(&cfg.WorkingDir, img.WorkingDir)
	orImage(&cfg.StopSignal, img.StopSignal)

	if len(cfg.ExposedPorts) == 0 {
		cfg.ExposedPorts = img.ExposedPorts
	} else {
		for p := range img.ExposedPorts {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	if len(cfg.Volumes) == 0 {
		cfg.Volumes = img.Volumes
	} else {
		for v := range img.Volumes {
			cfg.Volumes[v] = struct{}{}
		}
	}
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	for k, v := range img.Labels {
		if _, set := cfg.Labels[k]; !set {
			cfg.Labels[k] = v
		}
	}
	if len(cfg.Env) == 0 {
		cfg.Env = img.Env
	} else {
		have := map[string]bool{}
		for _, kv := range cfg.Env {
			k, _, _ := strings.Cut(kv, "=")
			have[k] = true
		}
		for _, kv := range img.Env {
			if k, _, _ := strings.Cut(kv, "="); !have[k] {
				cfg.Env = append(cfg.Env, kv)
			}
		}
	}
	// An explicit empty entrypoint (not nil) keeps the image's away.
	if len(cfg.Entrypoint) == 0 {
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = img.Cmd
		}
		if cfg.Entrypoint == nil {
			cfg.Entrypoint = img.Entrypoint
		}
	}
	switch h := cfg.Healthcheck; {
	case img.Healthcheck == nil:
	case h == nil:
		cfg.Healthcheck = img.Healthcheck
	default:
		ih := img.Healthcheck
		if len(h.Test) == 0 {
			h.Test = ih.Test
		}
		for _, d := range []struct{ v, iv *time.Duration }{
			{&h.Interval, &ih.Interval}, {&h.Timeout, &ih.Timeout},
			{&h.StartPeriod, &ih.StartPeriod}, {&h.StartInterval, &ih.StartInterval},
		} {
			if *d.v == 0 {
				*d.v = *d.iv
			}
		}
		if h.Retries == 0 {
			h.Retries = ih.Retries
		}
	}
}

// create registers a build-step container and prints its ID.
func (st *stageState) create() string {
	id := randomID()
	fmt.Fprintf(st.bs.stdout, " ---> Running in %s\n", truncID(id))
	st.tmpCtrs = append(st.tmpCtrs, id)
	return id
}

// commitContainer commits the step: upper (an overlay upper directory,
// "" for none) becomes the layer unless empty.
func (st *stageState) commitContainer(ctrID string, containerConfig *container.Config, upper string) error {
	return st.commitStep(ctrID, containerConfig, upper, false)
}

// commitRun commits a RUN step, whose upper directory a container wrote
// (with shifted ids under a user namespace).
func (st *stageState) commitRun(ctrID string, containerConfig *container.Config, upper string) error {
	return st.commitStep(ctrID, containerConfig, upper, true)
}

func (st *stageState) commitStep(ctrID string, containerConfig *container.Config, upper string, run bool) error {
	ctx := st.bs.ctx
	diffID := ""
	if upper != "" {
		empty, err := dirEmpty(upper)
		if err != nil {
			return err
		}
		if !empty {
			if run {
				diffID, err = st.bs.b.cfg.Store.CommitRunLayer(ctx, upper)
			} else {
				diffID, err = st.bs.b.cfg.Store.CommitLayer(ctx, upper)
			}
			if err != nil {
				return fmt.Errorf("commit layer: %w", err)
			}
		}
	}
	cfg := childConfig(st.config, copyRunConfig(st.runConfig), containerConfig, ctrID, st.maintainer, diffID, st.bs.b.cfg.DockerVersion, nowFunc())
	raw, err := cfg.marshal()
	if err != nil {
		return fmt.Errorf("encode image config: %w", err)
	}
	id, err := st.bs.b.cfg.Store.CreateImage(ctx, raw, st.imageID)
	if err != nil {
		return fmt.Errorf("failed to export image: %w", err)
	}
	st.imageID = id
	st.config = cfg
	return nil
}

func dirEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) == 0 {
		return true, nil
	}
	return false, err
}

// probeCache is dockerd's classic cache lookup: the newest locally built
// child of the current image whose container config equals the probe.
func (st *stageState) probeCache(probe *container.Config) (bool, error) {
	if !st.cacheOn {
		return false, nil
	}
	ctx := st.bs.ctx
	store := st.bs.b.cfg.Store
	children, err := store.CacheChildren(ctx, st.imageID)
	if err != nil {
		return false, err
	}
	var bestID string
	var best *imageConfig
	for _, id := range children {
		raw, err := store.Config(ctx, id)
		if err != nil {
			continue
		}
		cfg, err := parseConfig(raw)
		if err != nil || cfg.OS == "" && cfg.Architecture == "" {
			continue
		}
		if cfg.OS != "linux" {
			continue
		}
		if !compareConfig(cfg.ContainerConfig, probe) {
			continue
		}
		if cfg.Created != nil && (best == nil || best.Created.Before(*cfg.Created)) {
			best, bestID = cfg, id
		}
	}
	if best == nil {
		st.cacheOn = false
		return false, nil
	}
	fmt.Fprintln(st.bs.stdout, " ---> Using cache")
	st.imageID = bestID
	st.config = best
	return true, nil
}

// compareConfig is dockerd's image/cache compare.
func compareConfig(a, b *container.Config) bool {
	if a == nil || b == nil {
		return false
	}
	if !reflect.DeepEqual(nilIfEmpty(a.Env), nilIfEmpty(b.Env)) ||
		!reflect.DeepEqual(nilIfEmpty(a.Cmd), nilIfEmpty(b.Cmd)) ||
		!reflect.DeepEqual(nilIfEmpty(a.Entrypoint), nilIfEmpty(b.Entrypoint)) ||
		!reflect.DeepEqual(nilIfEmpty(a.Shell), nilIfEmpty(b.Shell)) ||
		!reflect.DeepEqual(nilIfEmpty(a.OnBuild), nilIfEmpty(b.OnBuild)) {
		return false
	}
	if len(a.ExposedPorts) != len(b.ExposedPorts) || len(a.Volumes) != len(b.Volumes) || len(a.Labels) != len(b.Labels) {
		return false
	}
	for k := range a.ExposedPorts {
		if _, ok := b.ExposedPorts[k]; !ok {
			return false
		}
	}
	for k := range a.Volumes {
		if _, ok := b.Volumes[k]; !ok {
			return false
		}
	}
	for k, v := range a.Labels {
		if bv, ok := b.Labels[k]; !ok || bv != v {
			return false
		}
	}
	if a.AttachStdin != b.AttachStdin || a.AttachStdout != b.AttachStdout || a.AttachStderr != b.AttachStderr ||
		a.NetworkDisabled != b.NetworkDisabled || a.Tty != b.Tty || a.OpenStdin != b.OpenStdin ||
		a.StdinOnce != b.StdinOnce || a.ArgsEscaped != b.ArgsEscaped || a.User != b.User ||
		a.WorkingDir != b.WorkingDir || a.StopSignal != b.StopSignal {
		return false
	}
	if (a.StopTimeout == nil) != (b.StopTimeout == nil) || a.StopTimeout != nil && *a.StopTimeout != *b.StopTimeout {
		return false
	}
	if (a.Healthcheck == nil) != (b.Healthcheck == nil) {
		return false
	}
	if a.Healthcheck != nil {
		x, y := a.Healthcheck, b.Healthcheck
		if x.Interval != y.Interval || x.StartInterval != y.StartInterval || x.StartPeriod != y.StartPeriod ||
			x.Timeout != y.Timeout || x.Retries != y.Retries || !reflect.DeepEqual(nilIfEmpty(x.Test), nilIfEmpty(y.Test)) {
			return false
		}
	}
	return true
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func copyRunConfig(c *container.Config) *container.Config {
	cp := *c
	cp.Cmd = cloneStrings(c.Cmd)
	cp.Env = cloneStrings(c.Env)
	cp.Entrypoint = cloneStrings(c.Entrypoint)
	cp.OnBuild = cloneStrings(c.OnBuild)
	cp.Shell = cloneStrings(c.Shell)
	if c.Volumes != nil {
		cp.Volumes = make(map[string]struct{}, len(c.Volumes))
		for k, v := range c.Volumes {
			cp.Volumes[k] = v
		}
	}
	if c.ExposedPorts != nil {
		cp.ExposedPorts = make(nat.PortSet, len(c.ExposedPorts))
		for k, v := range c.ExposedPorts {
			cp.ExposedPorts[k] = v
		}
	}
	if c.Labels != nil {
		cp.Labels = make(map[string]string, len(c.Labels))
		for k, v := range c.Labels {
			cp.Labels[k] = v
		}
	}
	return &cp
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

func (st *stageState) dispatchWorkdir(c *instructions.WorkdirCommand) error {
	wd := c.Path
	if !path.IsAbs(wd) {
		cur := st.runConfig.WorkingDir
		if cur == "" {
			cur = "/"
		}
		wd = path.Join(cur, wd)
	} else {
		wd = path.Clean(wd)
	}
	st.runConfig.WorkingDir = wd
	comment := "WORKDIR " + wd
	probe := copyRunConfig(st.runConfig)
	probe.Cmd = append(getShell(st.runConfig), "#(nop) "+comment)
	if hit, err := st.probeCache(probe); err != nil || hit {
		return err
	}
	id := st.createWith(probe)
	rw, err := st.newRWLayer()
	if err != nil {
		return err
	}
	defer rw.release()
	if err := mkdirAllNew(rw.root, wd, 0, 0); err != nil {
		return err
	}
	if err := rw.unmount(); err != nil {
		return err
	}
	return st.commitContainer(id, probe, rw.upper)
}

func (st *stageState) dispatchRun(c *instructions.RunCommand) error {
	if len(c.FlagsUsed) > 0 {
		return fmt.Errorf("the --%s option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled", c.FlagsUsed[0])
	}
	cmdLine, esc := st.resolveCmdLine(c.ShellDependantCmdLine)
	argEnv := st.args.filterAllowed(st.runConfig.Env)
	saveCmd := cmdLine
	if len(argEnv) > 0 {
		saveCmd = prependEnvOnCmd(st.args, argEnv, cmdLine)
	}
	probe := copyRunConfig(st.runConfig)
	probe.Cmd = saveCmd
	probe.ArgsEscaped = esc
	if len(saveCmd) > 0 {
		probe.Entrypoint = nil
	}
	if hit, err := st.probeCache(probe); err != nil || hit {
		return err
	}
	// dockerd's RUN container config: its own health check, so the
	// create-time merge cannot touch the stage's, and an entrypoint that
	// the merge leaves alone and create then drops.
	runCfg := copyRunConfig(st.runConfig)
	runCfg.Cmd = cmdLine
	runCfg.Env = append(cloneStrings(st.runConfig.Env), argEnv...)
	runCfg.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
	if len(saveCmd) > 0 {
		runCfg.Entrypoint = []string{""}
	}

	id := st.createWith(runCfg)
	rw, err := st.newRWDirs()
	if err != nil {
		return err
	}
	defer rw.release()
	if st.bs.b.cfg.Runner == nil {
		return errors.New("RUN is not available: this engine has no container runtime")
	}
	volumes, err := rw.volumes(runCfg.Volumes)
	if err != nil {
		return err
	}
	env := []string{}
	if !hasEnv(runCfg.Env, "PATH") {
		env = append(env, "PATH="+defaultPathEnv)
	}
	env = append(env, "HOSTNAME="+runCfg.Hostname)
	env = replaceOrAppendEnv(env, runCfg.Env)
	cwd := runCfg.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	code, err := st.bs.b.cfg.Runner.Run(st.bs.ctx, RunSpec{
		ID: id, Lowers: rw.lowers, Upper: rw.upper, Work: rw.work, Volumes: volumes,
		Args: cmdLine, Env: env, Cwd: cwd, User: runCfg.User, Hostname: runCfg.Hostname,
		Stdout: st.bs.stdout, Stderr: st.bs.stderr,
	})
	if err != nil {
		return err
	}
	if code != 0 {
		return &jsonmessage.JSONError{
			Message: fmt.Sprintf("The command '%s' returned a non-zero code: %d", strings.Join(cmdLine, " "), code),
			Code:    code,
		}
	}
	return st.commitRun(id, probe, rw.upper)
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			return true
		}
	}
	return false
}

// replaceOrAppendEnv overrides defaults with the config's values.
func replaceOrAppendEnv(defaults, overrides []string) []string {
	out := append([]string{}, defaults...)
	for _, o := range overrides {
		k, _, _ := strings.Cut(o, "=")
		replaced := false
		for i, d := range out {
			if dk, _, _ := strings.Cut(d, "="); dk == k {
				out[i] = o
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, o)
		}
	}
	return out
}

func prependEnvOnCmd(args *buildArgs, argEnv []string, cmd []string) []string {
	var tmp []string
	for _, e := range argEnv {
		k, _, _ := strings.Cut(e, "=")
		if args.isReferencedOrNotBuiltin(k) {
			tmp = append(tmp, e)
		}
	}
	sort.Strings(tmp)
	return append(append([]string{fmt.Sprintf("|%d", len(tmp))}, tmp...), cmd...)
}
