package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/storage"
	"github.com/docker/go-connections/nat"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	netpkg "github.com/labd/labd/sandbox/engine/network"
	"github.com/labd/labd/sandbox/engine/runtime"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Networker is what containers need from the engine's bridge network
// (sandbox/engine/network.Network). Without one, every container gets
// NetworkMode none semantics: the runtime's new netns with only lo.
type Networker interface {
	Attach(ctx context.Context, containerID, hostname string, ports []netpkg.PortBinding) (*netpkg.Endpoint, error)
	Detach(ctx context.Context, containerID string) error
}

// SetNetwork gives the engine its bridge network; call it before serving.
func (e *Engine) SetNetwork(n Networker) { e.net = n }

// BindPolicy maps the source path a client asked to bind-mount to a root
// directory and a path inside it, or refuses it. The path is resolved
// beneath the root each time it is used (package beneath), never by a
// string checked once.
type BindPolicy func(requested string) (root, rel string, err error)

// SetAllowBind installs the bind-mount policy. nil refuses every bind
// mount (the default for sandbox engines; Open, the standalone engine,
// allows all, as dockerd does).
func (e *Engine) SetAllowBind(f BindPolicy) { e.allowBind = f }

// AllowAllBinds is the standalone engine's bind policy: any host path,
// resolved from the host's root.
func AllowAllBinds(p string) (string, string, error) { return "/", p, nil }

const defaultStopTimeout = 10

var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

type notModifiedErr struct{}

func (notModifiedErr) Error() string { return "not modified" }
func (notModifiedErr) NotModified()  {}

type errNotRunning string

func (e errNotRunning) Error() string { return fmt.Sprintf("Container %s is not running", string(e)) }
func (errNotRunning) Conflict()       {}

func (e *Engine) containerEvent(c *ctr, action events.Action, extra map[string]string) {
	attrs := map[string]string{}
	if c.meta.Config != nil {
		for k, v := range c.meta.Config.Labels {
			attrs[k] = v
		}
		attrs["image"] = c.meta.Config.Image
	}
	attrs["name"] = c.name()
	for k, v := range extra {
		attrs[k] = v
	}
	e.events.publish(events.ContainerEventType, action, c.meta.ID, attrs)
}

// ContainerCreate implements api.ContainerBackend.
func (e *Engine) ContainerCreate(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) (container.CreateResponse, error) {
	if e.shared.Runtime == nil {
		return container.CreateResponse{}, errors.New("this engine runs without a container runtime")
	}
	if name != "" && !validName.MatchString(name) {
		return container.CreateResponse{}, api.InvalidParameterError(fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	if err := validateHostConfig(hc); err != nil {
		return container.CreateResponse{}, err
	}
	if _, err := logPolicyOf(hc.LogConfig, e.limits.Logs); err != nil {
		return container.CreateResponse{}, err
	}
	if _, err := netpkg.ParseMode(string(hc.NetworkMode)); err != nil {
		return container.CreateResponse{}, mapNetErr(err)
	}
	if cfg.Image == "" {
		return container.CreateResponse{}, api.InvalidParameterError(errors.New("No command specified"))
	}
	imgID, err := e.view.Resolve(cfg.Image)
	if err != nil {
		return container.CreateResponse{}, mapErr(err)
	}
	info, err := e.view.Image(imgID)
	if err != nil {
		return container.CreateResponse{}, mapErr(err)
	}
	cfg = mergeConfig(cfg, info.Config.Config)
	if len(cfg.Entrypoint) == 0 && len(cfg.Cmd) == 0 {
		return container.CreateResponse{}, api.InvalidParameterError(errors.New("No command specified"))
	}
	// A container that alone publishes more than the sandbox may is
	// refused before it exists (a -p 1000-2000:1000-2000).
	if b, err := netpkg.BindingsFromDocker(cfg.ExposedPorts, hc.PortBindings, hc.PublishAllPorts); err == nil {
		if err := e.checkPortCount(len(b)); err != nil {
			return container.CreateResponse{}, err
		}
	}
	if hc.Init != nil && *hc.Init {
		if _, err := os.Stat(initBinary); err != nil {
			return container.CreateResponse{}, api.InvalidParameterError(fmt.Errorf("--init: %s is not available on this host", initBinary))
		}
	}
	setHostConfigDefaults(hc)

	id := newID()
	if cfg.Hostname == "" {
		cfg.Hostname = id[:12]
	}
	fullName, err := e.ctrs.reserveName(name, id)
	if err != nil {
		return container.CreateResponse{}, err
	}
	args := append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...)
	c := &ctr{
		dir: filepath.Join(e.containersDir(), id),
		meta: ctrMeta{
			ID: id, Name: fullName, View: e.name, Created: time.Now().UTC(),
			Path: args[0], Args: args[1:], Config: cfg, Image: imgID.String(), Networking: nc,
		},
		hc:      hc,
		changed: make(chan struct{}),
		execs:   map[string]*execProc{},
	}
	if err := os.MkdirAll(c.dir, 0o710); err != nil {
		e.ctrs.releaseName(fullName, id)
		return container.CreateResponse{}, fmt.Errorf("create container dir: %w", err)
	}
	mounts, err := e.setupMounts(cfg, hc)
	if err != nil {
		e.ctrs.releaseName(fullName, id)
		_ = os.RemoveAll(c.dir)
		return container.CreateResponse{}, err
	}
	c.meta.Mounts = mounts
	if err := c.saveLocked(); err != nil {
		e.ctrs.releaseName(fullName, id)
		_ = os.RemoveAll(c.dir)
		return container.CreateResponse{}, err
	}
	e.ctrs.add(c)
	e.containerEvent(c, events.ActionCreate, nil)
	return container.CreateResponse{ID: id, Warnings: []string{}}, nil
}

// mergeConfig is dockerd's merge of the image's config into the user's.
func mergeConfig(user, img *container.Config) *container.Config {
	cp := *user
	u := &cp
	if img == nil {
		return u
	}
	if u.User == "" {
		u.User = img.User
	}
	if len(img.ExposedPorts) > 0 {
		ports := nat.PortSet{}
		for p := range img.ExposedPorts {
			ports[p] = struct{}{}
		}
		for p := range u.ExposedPorts {
			ports[p] = struct{}{}
		}
		u.ExposedPorts = ports
	}
	if len(u.Env) == 0 {
		u.Env = append([]string{}, img.Env...)
	} else {
		env := append([]string{}, img.Env...)
		for _, kv := range u.Env {
			k, _, _ := strings.Cut(kv, "=")
			replaced := false
			for i, old := range env {
				ok, _, _ := strings.Cut(old, "=")
				if ok == k {
					env[i] = kv
					replaced = true
					break
				}
			}
			if !replaced {
				env = append(env, kv)
			}
		}
		u.Env = env
	}
	if len(img.Labels) > 0 {
		labels := map[string]string{}
		for k, v := range img.Labels {
			labels[k] = v
		}
		for k, v := range u.Labels {
			labels[k] = v
		}
		u.Labels = labels
	}
	if len(u.Entrypoint) == 0 {
		if len(u.Cmd) == 0 {
			u.Cmd = img.Cmd
			u.ArgsEscaped = img.ArgsEscaped //nolint:staticcheck // dockerd copies it
		}
		if u.Entrypoint == nil {
			u.Entrypoint = img.Entrypoint
		}
	}
	if u.Healthcheck == nil {
		u.Healthcheck = img.Healthcheck
	}
	if u.WorkingDir == "" {
		u.WorkingDir = img.WorkingDir
	}
	if len(img.Volumes) > 0 {
		vols := map[string]struct{}{}
		for k := range img.Volumes {
			vols[k] = struct{}{}
		}
		for k := range u.Volumes {
			vols[k] = struct{}{}
		}
		u.Volumes = vols
	}
	if u.StopSignal == "" {
		u.StopSignal = img.StopSignal
	}
	if len(u.OnBuild) == 0 {
		u.OnBuild = img.OnBuild
	}
	return u
}

// setHostConfigDefaults fills what dockerd fills at create.
func setHostConfigDefaults(hc *container.HostConfig) {
	if hc.NetworkMode == "" {
		hc.NetworkMode = "default"
	}
	if hc.ShmSize == 0 {
		hc.ShmSize = 64 << 20
	}
	if hc.Memory > 0 && hc.MemorySwap == 0 {
		hc.MemorySwap = 2 * hc.Memory
	}
	if hc.IpcMode == "" {
		hc.IpcMode = "private"
	}
	if hc.CgroupnsMode == "" {
		if cgroupVersion() == "2" {
			hc.CgroupnsMode = "private"
		} else {
			hc.CgroupnsMode = "host"
		}
	}
	if hc.LogConfig.Type == "" {
		hc.LogConfig.Type = "json-file"
	}
	if hc.RestartPolicy.Name == "" {
		hc.RestartPolicy.Name = "no"
	}
	if hc.OomScoreAdj == 0 && hc.MaskedPaths == nil {
		hc.MaskedPaths = runtime.DefaultMaskedPaths()
		hc.ReadonlyPaths = runtime.DefaultReadonlyPaths()
	}
}

func mapNetErr(err error) error {
	if errors.Is(err, netpkg.ErrHostNetwork) {
		return api.ForbiddenError(err)
	}
	return api.NotFoundError(err)
}

// initBinary is what --init runs as PID 1, bind-mounted at
// /sbin/docker-init as dockerd does (Debian's docker.io ships tini there).
var initBinary = "/usr/bin/docker-init"

// ContainerStart implements api.ContainerBackend.
func (e *Engine) ContainerStart(ctx context.Context, name string) error {
	c, err := e.ctrs.get(name)
	if err != nil {
		return err
	}
	err = e.start(ctx, c)
	if err != nil && !errors.As(err, new(notModifiedErr)) {
		c.mu.Lock()
		auto := c.hc.AutoRemove
		c.mu.Unlock()
		if auto {
			// As dockerd: a --rm container that could not start is removed,
			// so the client's wait for its removal ends. The client gives
			// up its wait as soon as it reads this start error (CLI 20.10
			// then logs "error waiting for container: context canceled"),
			// so the waits get their answer first, as from dockerd.
			_ = e.remove(context.WithoutCancel(ctx), c, true, true)
			handedOff := make(chan struct{})
			go func() { c.waiting.Wait(); close(handedOff) }()
			select {
			case <-handedOff:
				// The answer is written; let it reach the client before
				// the start error does (dockerd's removal takes about as
				// long, which is why its clients never see the race).
				time.Sleep(100 * time.Millisecond)
			case <-time.After(time.Second):
			}
		}
	}
	return err
}

func (e *Engine) start(ctx context.Context, c *ctr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A docker cp of the stopped container holds its own overlay (archive.go).
	e.waitFSIdleLocked(c)
	if c.removed || c.meta.State.Removing {
		return api.ConflictError(fmt.Errorf("container is marked for removal and cannot be started"))
	}
	if c.meta.State.Running {
		return notModifiedErr{}
	}
	cfg, hc := c.meta.Config, c.hc
	lowers, err := e.shared.Store.Layers(digest.Digest(c.meta.Image))
	if err != nil {
		return fmt.Errorf("layers of image %s: %w", c.meta.Image, err)
	}
	spec := runtime.Spec{
		ID: c.meta.ID, Lowers: lowers, Upper: c.upperDir(), Work: c.workDir(),
		Args: append([]string{c.meta.Path}, c.meta.Args...), Env: cfg.Env, Cwd: cfg.WorkingDir,
		User: cfg.User, Hostname: cfg.Hostname, Tty: cfg.Tty,
		Memory: hc.Memory, MemorySwap: hc.MemorySwap, CPUShares: hc.CPUShares,
		CPUQuota: hc.CPUQuota, CPUPeriod: hc.CPUPeriod,
		UserNS: e.userns,
		// In the sandbox's cgroup: the container's own limits (as asked,
		// and as inspect shows them) only divide the sandbox's.
		Group: e.group, OOMScoreAdj: e.oomScoreAdj(),
	}
	if hc.PidsLimit != nil && *hc.PidsLimit > 0 {
		spec.PidsLimit = *hc.PidsLimit
	}
	if hc.NanoCPUs > 0 {
		spec.CPUPeriod = 100000
		spec.CPUQuota = hc.NanoCPUs * 100000 / 1e9
	}
	if !hasEnv(spec.Env, "PATH") {
		spec.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, spec.Env...)
	}
	if !hasEnv(spec.Env, "HOSTNAME") {
		spec.Env = append([]string{spec.Env[0], "HOSTNAME=" + cfg.Hostname}, spec.Env[1:]...)
	}
	if cfg.Tty && !hasEnv(spec.Env, "TERM") {
		spec.Env = append(spec.Env, "TERM=xterm")
	}
	if c.tty != nil {
		spec.TtyHeight, spec.TtyWidth = c.tty.h, c.tty.w
	} else if hc.ConsoleSize[0] > 0 && hc.ConsoleSize[1] > 0 {
		spec.TtyHeight, spec.TtyWidth = uint16(hc.ConsoleSize[0]), uint16(hc.ConsoleSize[1])
	}
	for _, m := range c.meta.Mounts {
		rm, err := e.runtimeMount(m)
		if err != nil {
			return err
		}
		spec.Mounts = append(spec.Mounts, rm)
	}
	if hc.Init != nil && *hc.Init {
		spec.Mounts = append(spec.Mounts, runtime.Mount{Source: initBinary, Destination: "/sbin/docker-init", ReadOnly: true})
		spec.Args = append([]string{"/sbin/docker-init", "--"}, spec.Args...)
	}

	mode, err := netpkg.ParseMode(string(hc.NetworkMode))
	if err != nil {
		return mapNetErr(err)
	}
	var ep *netpkg.Endpoint
	if mode == netpkg.ModeBridge && e.net != nil {
		bindings, err := netpkg.BindingsFromDocker(cfg.ExposedPorts, hc.PortBindings, hc.PublishAllPorts)
		if err != nil {
			return api.InvalidParameterError(err)
		}
		releasePorts, err := e.acquirePorts(len(bindings))
		if err != nil {
			return err
		}
		c.releasePorts = releasePorts
		ep, err = e.net.Attach(ctx, c.meta.ID, cfg.Hostname, bindings)
		if err != nil {
			c.releasePortsLocked()
			var pa *netpkg.PortAllocatedError
			if errors.As(err, &pa) {
				// dockerd's wording, without the network's own context.
				return fmt.Errorf("driver failed programming external connectivity on endpoint %s (%s): %w", c.name(), newID(), pa)
			}
			return err
		}
		spec.NetNS = ep.NetNSPath
		spec.Hosts = ep.Hosts
		spec.ResolvConf = ep.ResolvConf
	}
	detach := func() {
		if ep != nil {
			_ = e.net.Detach(context.WithoutCancel(ctx), c.meta.ID)
		}
		c.releasePortsLocked()
	}

	logf, err := e.openContainerLog(c)
	if err != nil {
		detach()
		return err
	}
	out := newOutput(logf, &c.hub)
	spec.Stdout = out.writer("stdout")
	spec.Stderr = out.writer("stderr")
	var stdinW *io.PipeWriter
	var stdinR *io.PipeReader
	if cfg.OpenStdin {
		stdinR, stdinW = io.Pipe()
		spec.Stdin = stdinR
	}

	rc, err := e.shared.Runtime.Start(context.WithoutCancel(ctx), spec)
	if err != nil {
		detach()
		out.close()
		if stdinW != nil {
			stdinW.Close()
		}
		code := 128
		msg := err.Error()
		switch {
		case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
			code = 127
		case strings.Contains(msg, "permission denied"):
			code = 126
		}
		c.meta.State.ExitCode = code
		c.meta.State.Error = msg
		_ = c.saveLocked()
		if ue := (*runtime.UserError)(nil); errors.As(err, &ue) {
			return ue // dockerd 20.10's words, a 500: no task was made
		}
		return api.InvalidParameterError(fmt.Errorf("failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: %s: unknown", startErrText(msg)))
	}
	c.rc = rc
	c.endpoint = ep
	c.out = out
	c.stdin = stdinW
	c.meta.State = ctrState{Running: true, Pid: rc.Pid(), StartedAt: time.Now().UTC()}
	c.meta.HasBeenStarted = true
	_ = c.saveLocked()
	c.notifyLocked()
	e.containerEvent(c, events.ActionStart, nil)
	go e.monitor(c, rc, out, stdinR, stdinW)
	return nil
}

// startErrText trims the runtime's wrapping to what runc reports.
func startErrText(msg string) string {
	if i := strings.Index(msg, "exec: "); i >= 0 {
		return msg[i:]
	}
	return msg
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

func mountType(t string) string {
	if t == "tmpfs" {
		return "tmpfs"
	}
	return "bind"
}

func mountOptions(m mountPoint) []string {
	if m.Type == "tmpfs" {
		return []string{"nosuid", "nodev", "noexec"}
	}
	return []string{"rbind"}
}

// monitor waits for the container's exit and records it.
func (e *Engine) monitor(c *ctr, rc *runtime.Container, out *output, stdinR *io.PipeReader, stdinW *io.PipeWriter) {
	exit, err := rc.Wait(context.Background())
	if err != nil {
		exit = runtime.Exit{ExitCode: 255}
	}
	if stdinW != nil {
		stdinR.Close()
		stdinW.Close()
	}
	out.close()
	if e.net != nil {
		_ = e.net.Detach(context.Background(), c.meta.ID)
	}
	c.mu.Lock()
	c.releasePortsLocked()
	c.rc = nil
	c.stdin = nil
	c.out = nil
	c.endpoint = nil
	c.stopping = false
	c.meta.State.Running = false
	c.meta.State.Pid = 0
	c.meta.State.ExitCode = exit.ExitCode
	c.meta.State.OOMKilled = exit.OOMKilled
	c.meta.State.FinishedAt = time.Now().UTC()
	for _, x := range c.execs {
		x.containerExited()
	}
	_ = c.saveLocked()
	if exit.OOMKilled {
		e.containerEvent(c, events.ActionOOM, nil)
	}
	e.containerEvent(c, events.ActionDie, map[string]string{"exitCode": strconv.Itoa(exit.ExitCode)})
	c.exitSeq++
	c.notifyLocked()
	auto := c.hc.AutoRemove
	c.mu.Unlock()
	if auto {
		if err := e.remove(context.Background(), c, false, true); err != nil {
			e.shared.log.Warn("auto-remove container", "id", c.meta.ID, "err", err)
		}
	}
}

// ContainerWait implements api.ContainerBackend.
func (e *Engine) ContainerWait(ctx context.Context, name string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
	c, err := e.ctrs.get(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	seq := c.exitSeq
	c.mu.Unlock()
	// Unbuffered: a send returns once the API handler has the result.
	ch := make(chan container.WaitResponse)
	c.waiting.Add(1)
	go func() {
		defer c.waiting.Done()
		defer close(ch)
		for {
			c.mu.Lock()
			done := false
			switch cond {
			case container.WaitConditionNextExit:
				done = c.exitSeq != seq || c.removed
			case container.WaitConditionRemoved:
				done = c.removed
			default:
				done = !c.meta.State.Running || c.removed
			}
			code := c.meta.State.ExitCode
			changed := c.changed
			c.mu.Unlock()
			if done {
				select {
				case ch <- container.WaitResponse{StatusCode: int64(code)}:
				case <-ctx.Done():
				}
				return
			}
			if c.waitChanged(ctx, changed) != nil {
				return
			}
		}
	}()
	return ch, nil
}

// parseSignal accepts "SIGTERM", "TERM", "15".
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
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
	return 0, fmt.Errorf("Invalid signal: %s", s)
}

// waitExit waits until c has exited after sequence seq, at most d (d < 0:
// no limit). It reports whether it did.
func waitExit(ctx context.Context, c *ctr, seq int, d time.Duration) bool {
	var timer <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	for {
		c.mu.Lock()
		done := c.exitSeq != seq || !c.meta.State.Running
		ch := c.changed
		c.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-ch:
		case <-timer:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// ContainerStop implements api.ContainerBackend.
func (e *Engine) ContainerStop(ctx context.Context, name, signal string, timeout *int) error {
	c, err := e.ctrs.get(name)
	if err != nil {
		return err
	}
	return e.stop(ctx, c, signal, timeout)
}

func (e *Engine) stop(ctx context.Context, c *ctr, signal string, timeout *int) error {
	c.mu.Lock()
	if !c.meta.State.Running || c.rc == nil {
		c.mu.Unlock()
		return notModifiedErr{}
	}
	rc, seq := c.rc, c.exitSeq
	if signal == "" {
		signal = c.meta.Config.StopSignal
	}
	t := defaultStopTimeout
	if c.meta.Config.StopTimeout != nil {
		t = *c.meta.Config.StopTimeout
	}
	if timeout != nil {
		t = *timeout
	}
	c.stopping = true
	c.mu.Unlock()
	sig := syscall.SIGTERM
	if signal != "" {
		s, err := parseSignal(signal)
		if err != nil {
			return api.InvalidParameterError(err)
		}
		sig = s
	}
	c.mu.Lock()
	e.containerEvent(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	c.mu.Unlock()
	_ = rc.Signal(sig)
	d := time.Duration(t) * time.Second
	if t < 0 {
		d = -1
	}
	if !waitExit(ctx, c, seq, d) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.mu.Lock()
		e.containerEvent(c, events.ActionKill, map[string]string{"signal": "9"})
		c.mu.Unlock()
		_ = rc.Kill()
		if !waitExit(ctx, c, seq, -1) {
			return ctx.Err()
		}
	}
	c.mu.Lock()
	e.containerEvent(c, events.ActionStop, nil)
	c.mu.Unlock()
	return nil
}

// ContainerKill implements api.ContainerBackend.
func (e *Engine) ContainerKill(ctx context.Context, name, signal string) error {
	c, err := e.ctrs.get(name)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if signal != "" {
		s, err := parseSignal(signal)
		if err != nil {
			return api.InvalidParameterError(err)
		}
		sig = s
	}
	c.mu.Lock()
	if !c.meta.State.Running || c.rc == nil {
		c.mu.Unlock()
		return api.ConflictError(fmt.Errorf("Cannot kill container: %s: %w", name, errNotRunning(c.meta.ID)))
	}
	rc, seq := c.rc, c.exitSeq
	e.containerEvent(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	c.mu.Unlock()
	if sig == syscall.SIGKILL {
		_ = rc.Kill()
		// Like dockerd, answer once the container is gone.
		waitExit(ctx, c, seq, 20*time.Second)
		return nil
	}
	return rc.Signal(sig)
}

// ContainerRestart implements api.ContainerBackend.
func (e *Engine) ContainerRestart(ctx context.Context, name, signal string, timeout *int) error {
	c, err := e.ctrs.get(name)
	if err != nil {
		return err
	}
	if err := e.stop(ctx, c, signal, timeout); err != nil && !errors.As(err, new(notModifiedErr)) {
		return err
	}
	if err := e.start(ctx, c); err != nil {
		return err
	}
	c.mu.Lock()
	e.containerEvent(c, events.ActionRestart, nil)
	c.mu.Unlock()
	return nil
}

// ContainerRemove implements api.ContainerBackend.
func (e *Engine) ContainerRemove(ctx context.Context, name string, force, volumes bool) error {
	c, err := e.ctrs.get(name)
	if err != nil {
		return err
	}
	return e.remove(ctx, c, force, volumes)
}

func (e *Engine) remove(ctx context.Context, c *ctr, force, volumes bool) error {
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return nil
	}
	if c.meta.State.Removing {
		c.mu.Unlock()
		return api.ConflictError(fmt.Errorf("removal of container %s is already in progress", c.meta.ID))
	}
	if c.meta.State.Running {
		if !force {
			c.mu.Unlock()
			return api.ConflictError(fmt.Errorf("You cannot remove a running container %s. Stop the container before attempting removal or force remove", c.meta.ID))
		}
		rc, seq := c.rc, c.exitSeq
		c.meta.State.Removing = true
		e.containerEvent(c, events.ActionKill, map[string]string{"signal": "9"})
		c.mu.Unlock()
		_ = rc.Kill()
		if !waitExit(ctx, c, seq, 30*time.Second) {
			c.mu.Lock()
			c.meta.State.Removing = false
			c.mu.Unlock()
			return fmt.Errorf("could not kill running container %s, cannot remove", c.meta.ID)
		}
		c.mu.Lock()
	}
	c.meta.State.Removing = true
	c.notifyLocked()
	mounts := c.meta.Mounts
	c.mu.Unlock()

	mountinfo.UnmountUnder(c.dir)
	if err := os.RemoveAll(c.dir); err != nil {
		c.mu.Lock()
		c.meta.State.Removing = false
		c.meta.State.Dead = true
		_ = c.saveLocked()
		c.mu.Unlock()
		return fmt.Errorf("unable to remove filesystem for %s: %w", c.meta.ID, err)
	}
	if volumes {
		for _, m := range mounts {
			if m.Type == "volume" && m.Anonymous {
				_ = os.RemoveAll(filepath.Dir(m.Source))
			}
		}
	}
	e.ctrs.delete(c)
	c.mu.Lock()
	c.removed = true
	c.meta.State.Removing = false
	e.containerEvent(c, events.ActionDestroy, nil)
	c.notifyLocked()
	c.mu.Unlock()
	// A client attached to a container that never ran again has nothing
	// more to wait for.
	c.hub.endAll()
	return nil
}

// ContainerRename implements api.ContainerBackend.
func (e *Engine) ContainerRename(ctx context.Context, name, newName string) error {
	if name == "" || newName == "" {
		return api.InvalidParameterError(errors.New("Neither old nor new names may be empty"))
	}
	if !validName.MatchString(newName) {
		return api.InvalidParameterError(fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", newName))
	}
	c, err := e.ctrs.get(name)
	if err != nil {
		return err
	}
	newName = "/" + strings.TrimPrefix(newName, "/")
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.meta.Name
	if old == newName {
		return api.InvalidParameterError(errors.New("Renaming a container with the same name as its current name"))
	}
	if _, err := e.ctrs.reserveName(newName, c.meta.ID); err != nil {
		return api.ConflictError(fmt.Errorf("Error when allocating new name: %w", err))
	}
	e.ctrs.releaseName(old, c.meta.ID)
	c.meta.Name = newName
	if err := c.saveLocked(); err != nil {
		return err
	}
	e.containerEvent(c, events.ActionRename, map[string]string{"oldName": old})
	return nil
}

// ContainerResize implements api.ContainerBackend.
func (e *Engine) ContainerResize(ctx context.Context, name string, height, width uint16) error {
	c, err := e.ctrs.get(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Before start (docker run -it resizes at once) the size is kept for
	// the start.
	c.tty = &ttySize{h: height, w: width}
	if c.rc != nil && c.meta.Config.Tty {
		_ = c.rc.Resize(width, height)
	}
	return nil
}

var listFilters = map[string]bool{
	"ancestor": true, "before": true, "exited": true, "health": true, "id": true, "isolation": true,
	"is-task": true, "label": true, "name": true, "network": true, "publish": true, "expose": true,
	"since": true, "status": true, "volume": true,
}

var validStatus = map[string]bool{"created": true, "restarting": true, "running": true, "removing": true, "paused": true, "exited": true, "dead": true}

// ContainerList implements api.ContainerBackend.
func (e *Engine) ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error) {
	f := opts.Filters
	if err := f.Validate(listFilters); err != nil {
		return nil, api.InvalidParameterError(err)
	}
	for _, s := range f.Get("status") {
		if !validStatus[s] {
			return nil, api.InvalidParameterError(fmt.Errorf("Unrecognised filter value for status: %s", s))
		}
	}
	var exited []int
	for _, v := range f.Get("exited") {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, api.InvalidParameterError(err)
		}
		exited = append(exited, n)
	}
	all := opts.All || opts.Limit > 0 || f.Contains("status") || len(exited) > 0
	var ancestors map[string]bool
	if f.Contains("ancestor") {
		ancestors = map[string]bool{}
		for _, a := range f.Get("ancestor") {
			if id, err := e.view.Resolve(a); err == nil {
				ancestors[id.String()] = true
			}
		}
	}
	list := e.ctrs.all()
	var beforeT, sinceT time.Time
	for key, dst := range map[string]*time.Time{"before": &beforeT, "since": &sinceT} {
		for _, v := range f.Get(key) {
			c, err := e.ctrs.get(v)
			if err != nil {
				return nil, err
			}
			*dst = c.created()
		}
	}
	out := []container.Summary{}
	for _, c := range list {
		c.mu.Lock()
		st := c.meta.State.status()
		ok := all || c.meta.State.Running
		if ok && f.Contains("status") && !f.ExactMatch("status", st) {
			ok = false
		}
		if ok && len(exited) > 0 {
			match := false
			if st == "exited" {
				for _, n := range exited {
					match = match || n == c.meta.State.ExitCode
				}
			}
			ok = match
		}
		if ok && f.Contains("name") && !f.Match("name", c.meta.Name) && !f.Match("name", c.name()) {
			ok = false
		}
		if ok && f.Contains("id") && !f.Match("id", c.meta.ID) {
			ok = false
		}
		if ok && f.Contains("label") && !f.MatchKVList("label", c.meta.Config.Labels) {
			ok = false
		}
		if ok && ancestors != nil && !ancestors[c.meta.Image] {
			ok = false
		}
		if ok && !beforeT.IsZero() && !c.meta.Created.Before(beforeT) {
			ok = false
		}
		if ok && !sinceT.IsZero() && !c.meta.Created.After(sinceT) {
			ok = false
		}
		if ok {
			out = append(out, e.summaryLocked(c, opts.Size))
		}
		c.mu.Unlock()
		if opts.Limit > 0 && len(out) >= opts.Limit {
			break
		}
	}
	return out, nil
}

// command is docker ps's COMMAND before the CLI quotes and truncates it.
func command(c *ctr) string {
	if len(c.meta.Args) == 0 {
		return c.meta.Path
	}
	var args []string
	for _, a := range c.meta.Args {
		if strings.Contains(a, " ") {
			a = "'" + a + "'"
		}
		args = append(args, a)
	}
	return c.meta.Path + " " + strings.Join(args, " ")
}

// imageName is docker ps's IMAGE: the name the container was created with
// while it still names the same image, else the image ID.
func (e *Engine) imageName(c *ctr) string {
	img := c.meta.Config.Image
	if img == c.meta.Image {
		return img
	}
	id, err := e.view.Resolve(img)
	if err != nil || id.String() != c.meta.Image {
		return c.meta.Image
	}
	return img
}

func (e *Engine) summaryLocked(c *ctr, size bool) container.Summary {
	s := container.Summary{
		ID:      c.meta.ID,
		Names:   []string{c.meta.Name},
		Image:   e.imageName(c),
		ImageID: c.meta.Image,
		Command: command(c),
		Created: c.meta.Created.Unix(),
		Ports:   e.apiPortsLocked(c),
		Labels:  c.meta.Config.Labels,
		State:   c.meta.State.status(),
		Status:  c.meta.State.String(),
		Mounts:  apiMounts(c.meta.Mounts),
	}
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.HostConfig.NetworkMode = string(c.hc.NetworkMode)
	s.NetworkSettings = &container.NetworkSettingsSummary{Networks: e.networksLocked(c)}
	if size {
		rw := dirSize(c.upperDir())
		s.SizeRw = rw
		if info, err := e.view.Image(digest.Digest(c.meta.Image)); err == nil {
			s.SizeRootFs = rw + info.Size
		} else {
			s.SizeRootFs = rw
		}
	}
	return s
}

// apiPortsLocked lists published (while running) and exposed ports.
func (e *Engine) apiPortsLocked(c *ctr) []container.Port {
	var pubs []netpkg.PublishedPort
	if c.endpoint != nil {
		pubs = c.endpoint.Ports
	}
	ports := netpkg.APIPorts(c.meta.Config.ExposedPorts, pubs)
	if ports == nil {
		ports = []container.Port{}
	}
	return ports
}

func (e *Engine) networksLocked(c *ctr) map[string]*network.EndpointSettings {
	mode := string(c.hc.NetworkMode)
	if mode == "default" || mode == "" {
		mode = "bridge"
	}
	es := &network.EndpointSettings{}
	if ep := c.endpoint; ep != nil {
		es.EndpointID = ep.EndpointID
		es.IPAddress = ep.IP.String()
		es.IPPrefixLen = ep.PrefixLen
		es.Gateway = ep.Gateway.String()
		es.MacAddress = ep.MacAddress.String()
		if nid, ok := e.net.(interface{ ID() string }); ok {
			es.NetworkID = nid.ID()
		}
	}
	return map[string]*network.EndpointSettings{mode: es}
}

func apiMounts(ms []mountPoint) []container.MountPoint {
	out := []container.MountPoint{}
	for _, m := range ms {
		mp := container.MountPoint{
			Type: mountTypeAPI(m.Type), Name: m.Name, Source: m.Source, Destination: m.Destination,
			Mode: m.Mode, RW: m.RW, Propagation: mountPropagation(m.Propagation),
		}
		if m.Type == "volume" {
			mp.Driver = "local"
		}
		out = append(out, mp)
	}
	return out
}

// dirSize is dockerd's measure of a rw layer or a volume (its
// directory.Size): everything but directories, symlinks by their own
// length, and a file with several hard links once.
func dirSize(dir string) int64 {
	var n int64
	seen := map[uint64]bool{}
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		n += fi.Size()
		return nil
	})
	return n
}

func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// ContainerInspect implements api.ContainerBackend.
func (e *Engine) ContainerInspect(ctx context.Context, name string, size bool) (*container.InspectResponse, error) {
	c, err := e.ctrs.get(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.meta.State
	state := &container.State{
		Status: st.status(), Running: st.Running, Restarting: st.Restarting, OOMKilled: st.OOMKilled,
		Dead: st.Dead, Pid: st.Pid, ExitCode: st.ExitCode, Error: st.Error,
		StartedAt: formatTime(st.StartedAt), FinishedAt: formatTime(st.FinishedAt),
	}
	var execIDs []string
	for id, x := range c.execs {
		if x.isRunning() {
			execIDs = append(execIDs, id)
		}
	}
	sort.Strings(execIDs)
	lowers, _ := e.shared.Store.Layers(digest.Digest(c.meta.Image))
	gd := storage.DriverData{Name: "overlay2", Data: map[string]string{
		"LowerDir":  strings.Join(lowers, ":"),
		"MergedDir": e.mergedDir(c.meta.ID),
		"UpperDir":  c.upperDir(),
		"WorkDir":   c.workDir(),
	}}
	base := &container.ContainerJSONBase{
		ID: c.meta.ID, Created: formatTime(c.meta.Created), Path: c.meta.Path, Args: c.meta.Args,
		State: state, Image: c.meta.Image,
		ResolvConfPath: filepath.Join(c.dir, "resolv.conf"),
		HostnamePath:   filepath.Join(c.dir, "hostname"),
		HostsPath:      filepath.Join(c.dir, "hosts"),
		LogPath:        c.logPath(),
		Name:           c.meta.Name, RestartCount: c.meta.RestartCount,
		Driver: "overlay2", Platform: "linux", ExecIDs: execIDs,
		HostConfig: c.hc, GraphDriver: gd,
	}
	if base.Args == nil {
		base.Args = []string{}
	}
	if size {
		rw := dirSize(c.upperDir())
		root := rw
		if info, err := e.view.Image(digest.Digest(c.meta.Image)); err == nil {
			root += info.Size
		}
		base.SizeRw, base.SizeRootFs = &rw, &root
	}
	ns := &container.NetworkSettings{}
	ns.Networks = e.networksLocked(c)
	var pubs []netpkg.PublishedPort
	if c.endpoint != nil {
		pubs = c.endpoint.Ports
		ns.SandboxKey = c.endpoint.NetNSPath
		ns.EndpointID = c.endpoint.EndpointID
		ns.IPAddress = c.endpoint.IP.String()
		ns.IPPrefixLen = c.endpoint.PrefixLen
		ns.Gateway = c.endpoint.Gateway.String()
		ns.MacAddress = c.endpoint.MacAddress.String()
	}
	ns.Ports = netpkg.PortMap(c.meta.Config.ExposedPorts, pubs)
	if ns.Ports == nil {
		ns.Ports = nat.PortMap{}
	}
	return &container.InspectResponse{
		ContainerJSONBase: base,
		Mounts:            apiMounts(c.meta.Mounts),
		Config:            c.meta.Config,
		NetworkSettings:   ns,
	}, nil
}

// ContainersPrune implements api.ContainerBackend.
func (e *Engine) ContainersPrune(ctx context.Context, f filters.Args) (*container.PruneReport, error) {
	if err := f.Validate(map[string]bool{"until": true, "label": true, "label!": true}); err != nil {
		return nil, api.InvalidParameterError(err)
	}
	var until time.Time
	if v := f.Get("until"); len(v) > 0 {
		d, err := time.ParseDuration(v[0])
		if err == nil {
			until = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v[0]); err == nil {
			until = t
		} else if n, err := strconv.ParseInt(v[0], 10, 64); err == nil {
			until = time.Unix(n, 0)
		} else {
			return nil, api.InvalidParameterError(fmt.Errorf("invalid until filter %q", v[0]))
		}
	}
	rep := &container.PruneReport{}
	for _, c := range e.ctrs.all() {
		c.mu.Lock()
		skip := c.meta.State.Running || c.meta.State.Removing
		if !until.IsZero() && !c.meta.Created.Before(until) {
			skip = true
		}
		if f.Contains("label") && !f.MatchKVList("label", c.meta.Config.Labels) {
			skip = true
		}
		if f.Contains("label!") && f.MatchKVList("label!", c.meta.Config.Labels) {
			skip = true
		}
		c.mu.Unlock()
		if skip {
			continue
		}
		size := dirSize(c.upperDir())
		if err := e.remove(ctx, c, false, false); err != nil {
			continue
		}
		rep.ContainersDeleted = append(rep.ContainersDeleted, c.meta.ID)
		rep.SpaceReclaimed += uint64(size)
	}
	e.events.publish(events.ContainerEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(rep.SpaceReclaimed, 10)})
	return rep, nil
}

// Close stops every running container of the engine (SIGKILL): a sandbox
// being destroyed takes its containers along. State stays on disk.
func (e *Engine) Close(ctx context.Context) error {
	for _, c := range e.ctrs.all() {
		c.mu.Lock()
		rc, seq := c.rc, c.exitSeq
		c.mu.Unlock()
		if rc == nil {
			continue
		}
		_ = rc.Kill()
		waitExit(ctx, c, seq, 30*time.Second)
	}
	return e.runClosers(ctx)
}

// mergedDir is where a running container's root filesystem is mounted
// (inspect's GraphDriver.Data.MergedDir).
func (e *Engine) mergedDir(id string) string {
	if e.shared.Runtime == nil {
		return filepath.Join(e.shared.dir, "runtime", "bundles", id, "rootfs")
	}
	return filepath.Join(e.shared.Runtime.BundleDir(id), "rootfs")
}
