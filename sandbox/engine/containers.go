package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	"github.com/labd/labd/sandbox/engine/ctr"
	netpkg "github.com/labd/labd/sandbox/engine/network"
	"github.com/labd/labd/sandbox/engine/runtime"
	"github.com/opencontainers/go-digest"
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

var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

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
	if err := ctr.CheckLogConfig(hc.LogConfig, e.limits.Logs); err != nil {
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

	id := ctr.NewID()
	if cfg.Hostname == "" {
		cfg.Hostname = id[:12]
	}
	fullName, err := e.ctrs.ReserveName(name, id)
	if err != nil {
		return container.CreateResponse{}, err
	}
	args := append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...)
	c := ctr.New(filepath.Join(e.containersDir(), id), ctr.Meta{
		ID: id, Name: fullName, View: e.name, Created: time.Now().UTC(),
		Path: args[0], Args: args[1:], Config: cfg, Image: imgID.String(), Networking: nc,
	}, hc)
	if err := os.MkdirAll(c.Dir, 0o710); err != nil {
		e.ctrs.ReleaseName(fullName, id)
		return container.CreateResponse{}, fmt.Errorf("create container dir: %w", err)
	}
	mounts, err := e.setupMounts(cfg, hc)
	if err != nil {
		e.ctrs.ReleaseName(fullName, id)
		_ = os.RemoveAll(c.Dir)
		return container.CreateResponse{}, err
	}
	c.Meta.Mounts = mounts
	if err := c.SaveLocked(); err != nil {
		e.ctrs.ReleaseName(fullName, id)
		_ = os.RemoveAll(c.Dir)
		return container.CreateResponse{}, err
	}
	e.ctrs.Add(c)
	e.ctrs.EventLocked(c, events.ActionCreate, nil)
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
	c, err := e.ctrs.Get(name)
	if err != nil {
		return err
	}
	err = e.start(ctx, c)
	if err != nil && !errors.As(err, new(ctr.NotModifiedError)) {
		c.Lock()
		auto := c.HostConfig.AutoRemove
		c.Unlock()
		if auto {
			// As dockerd: a --rm container that could not start is removed,
			// so the client's wait for its removal ends. The client gives
			// up its wait as soon as it reads this start error (CLI 20.10
			// then logs "error waiting for container: context canceled"),
			// so the waits get their answer first, as from dockerd.
			_ = e.ctrs.Remove(context.WithoutCancel(ctx), c, true, true)
			if c.AwaitWaiters(time.Second) {
				// The answer is written; let it reach the client before
				// the start error does (dockerd's removal takes about as
				// long, which is why its clients never see the race).
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	return err
}

func (e *Engine) start(ctx context.Context, c *ctr.Container) error {
	c.Lock()
	defer c.Unlock()
	// A docker cp of the stopped container holds its own overlay (archive.go).
	e.waitFSIdleLocked(c)
	if c.RemovedLocked() || c.Meta.State.Removing {
		return api.ConflictError(fmt.Errorf("container is marked for removal and cannot be started"))
	}
	if c.Meta.State.Running {
		return ctr.NotModifiedError{}
	}
	cfg, hc := c.Meta.Config, c.HostConfig
	lowers, err := e.shared.Store.Layers(digest.Digest(c.Meta.Image))
	if err != nil {
		return fmt.Errorf("layers of image %s: %w", c.Meta.Image, err)
	}
	spec := runtime.Spec{
		ID: c.Meta.ID, Lowers: lowers, Upper: c.UpperDir(), Work: c.WorkDir(),
		Args: append([]string{c.Meta.Path}, c.Meta.Args...), Env: cfg.Env, Cwd: cfg.WorkingDir,
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
	spec.Env = ctr.ProcessEnv(spec.Env, cfg.Hostname, cfg.Tty)
	if c.Tty != nil {
		spec.TtyHeight, spec.TtyWidth = c.Tty.H, c.Tty.W
	} else if hc.ConsoleSize[0] > 0 && hc.ConsoleSize[1] > 0 {
		spec.TtyHeight, spec.TtyWidth = uint16(hc.ConsoleSize[0]), uint16(hc.ConsoleSize[1])
	}
	for _, m := range c.Meta.Mounts {
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
	releasePorts := func() {}
	if mode == netpkg.ModeBridge && e.net != nil {
		bindings, err := netpkg.BindingsFromDocker(cfg.ExposedPorts, hc.PortBindings, hc.PublishAllPorts)
		if err != nil {
			return api.InvalidParameterError(err)
		}
		releasePorts, err = e.acquirePorts(len(bindings))
		if err != nil {
			return err
		}
		ep, err = e.net.Attach(ctx, c.Meta.ID, cfg.Hostname, bindings)
		if err != nil {
			releasePorts()
			var pa *netpkg.PortAllocatedError
			if errors.As(err, &pa) {
				// dockerd's wording, without the network's own context.
				return fmt.Errorf("driver failed programming external connectivity on endpoint %s (%s): %w", c.Name(), ctr.NewID(), pa)
			}
			return err
		}
		spec.NetNS = ep.NetNSPath
		spec.Hosts = ep.Hosts
		spec.ResolvConf = ep.ResolvConf
	}
	// The ports are given back after the endpoint, so a start that
	// follows this run's exit finds them free on the host too.
	id := c.Meta.ID
	release := func() {
		if ep != nil {
			_ = e.net.Detach(context.WithoutCancel(ctx), id)
		}
		releasePorts()
	}
	return e.ctrs.StartLocked(ctx, c, e.shared.Runtime, ctr.Run{Spec: spec, Endpoint: ep, LogCap: e.limits.Logs, Release: release})
}

func mountType(t string) string {
	if t == "tmpfs" {
		return "tmpfs"
	}
	return "bind"
}

func mountOptions(m ctr.MountPoint) []string {
	if m.Type == "tmpfs" {
		return []string{"nosuid", "nodev", "noexec"}
	}
	return []string{"rbind"}
}

// ContainerWait implements api.ContainerBackend.
func (e *Engine) ContainerWait(ctx context.Context, name string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return nil, err
	}
	return e.ctrs.Wait(ctx, c, cond), nil
}

// ContainerStop implements api.ContainerBackend.
func (e *Engine) ContainerStop(ctx context.Context, name, signal string, timeout *int) error {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return err
	}
	return e.ctrs.Stop(ctx, c, signal, timeout)
}

// ContainerKill implements api.ContainerBackend.
func (e *Engine) ContainerKill(ctx context.Context, name, signal string) error {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return err
	}
	return e.ctrs.Kill(ctx, c, name, signal)
}

// ContainerRestart implements api.ContainerBackend.
func (e *Engine) ContainerRestart(ctx context.Context, name, signal string, timeout *int) error {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return err
	}
	if err := e.ctrs.Stop(ctx, c, signal, timeout); err != nil && !errors.As(err, new(ctr.NotModifiedError)) {
		return err
	}
	if err := e.start(ctx, c); err != nil {
		return err
	}
	c.Lock()
	e.ctrs.EventLocked(c, events.ActionRestart, nil)
	c.Unlock()
	return nil
}

// ContainerRemove implements api.ContainerBackend.
func (e *Engine) ContainerRemove(ctx context.Context, name string, force, volumes bool) error {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return err
	}
	return e.ctrs.Remove(ctx, c, force, volumes)
}

// ContainerRename implements api.ContainerBackend.
func (e *Engine) ContainerRename(ctx context.Context, name, newName string) error {
	if name == "" || newName == "" {
		return api.InvalidParameterError(errors.New("Neither old nor new names may be empty"))
	}
	if !validName.MatchString(newName) {
		return api.InvalidParameterError(fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", newName))
	}
	c, err := e.ctrs.Get(name)
	if err != nil {
		return err
	}
	newName = "/" + strings.TrimPrefix(newName, "/")
	c.Lock()
	defer c.Unlock()
	old := c.Meta.Name
	if old == newName {
		return api.InvalidParameterError(errors.New("Renaming a container with the same name as its current name"))
	}
	if _, err := e.ctrs.ReserveName(newName, c.Meta.ID); err != nil {
		return api.ConflictError(fmt.Errorf("Error when allocating new name: %w", err))
	}
	e.ctrs.ReleaseName(old, c.Meta.ID)
	c.Meta.Name = newName
	if err := c.SaveLocked(); err != nil {
		return err
	}
	e.ctrs.EventLocked(c, events.ActionRename, map[string]string{"oldName": old})
	return nil
}

// ContainerResize implements api.ContainerBackend.
func (e *Engine) ContainerResize(ctx context.Context, name string, height, width uint16) error {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return err
	}
	c.Lock()
	defer c.Unlock()
	// Before start (docker run -it resizes at once) the size is kept for
	// the start.
	c.ResizeLocked(height, width)
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
	list := e.ctrs.All()
	var beforeT, sinceT time.Time
	for key, dst := range map[string]*time.Time{"before": &beforeT, "since": &sinceT} {
		for _, v := range f.Get(key) {
			c, err := e.ctrs.Get(v)
			if err != nil {
				return nil, err
			}
			*dst = c.Created()
		}
	}
	out := []container.Summary{}
	for _, c := range list {
		c.Lock()
		st := c.Meta.State.Status()
		ok := all || c.Meta.State.Running
		if ok && f.Contains("status") && !f.ExactMatch("status", st) {
			ok = false
		}
		if ok && len(exited) > 0 {
			match := false
			if st == "exited" {
				for _, n := range exited {
					match = match || n == c.Meta.State.ExitCode
				}
			}
			ok = match
		}
		if ok && f.Contains("name") && !f.Match("name", c.Meta.Name) && !f.Match("name", c.Name()) {
			ok = false
		}
		if ok && f.Contains("id") && !f.Match("id", c.Meta.ID) {
			ok = false
		}
		if ok && f.Contains("label") && !f.MatchKVList("label", c.Meta.Config.Labels) {
			ok = false
		}
		if ok && ancestors != nil && !ancestors[c.Meta.Image] {
			ok = false
		}
		if ok && !beforeT.IsZero() && !c.Meta.Created.Before(beforeT) {
			ok = false
		}
		if ok && !sinceT.IsZero() && !c.Meta.Created.After(sinceT) {
			ok = false
		}
		if ok {
			out = append(out, e.summaryLocked(c, opts.Size))
		}
		c.Unlock()
		if opts.Limit > 0 && len(out) >= opts.Limit {
			break
		}
	}
	return out, nil
}

// command is docker ps's COMMAND before the CLI quotes and truncates it.
func command(c *ctr.Container) string {
	if len(c.Meta.Args) == 0 {
		return c.Meta.Path
	}
	var args []string
	for _, a := range c.Meta.Args {
		if strings.Contains(a, " ") {
			a = "'" + a + "'"
		}
		args = append(args, a)
	}
	return c.Meta.Path + " " + strings.Join(args, " ")
}

// imageName is docker ps's IMAGE: the name the container was created with
// while it still names the same image, else the image ID.
func (e *Engine) imageName(c *ctr.Container) string {
	img := c.Meta.Config.Image
	if img == c.Meta.Image {
		return img
	}
	id, err := e.view.Resolve(img)
	if err != nil || id.String() != c.Meta.Image {
		return c.Meta.Image
	}
	return img
}

func (e *Engine) summaryLocked(c *ctr.Container, size bool) container.Summary {
	s := container.Summary{
		ID:      c.Meta.ID,
		Names:   []string{c.Meta.Name},
		Image:   e.imageName(c),
		ImageID: c.Meta.Image,
		Command: command(c),
		Created: c.Meta.Created.Unix(),
		Ports:   e.apiPortsLocked(c),
		Labels:  c.Meta.Config.Labels,
		State:   c.Meta.State.Status(),
		Status:  c.Meta.State.String(),
		Mounts:  apiMounts(c.Meta.Mounts),
	}
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.HostConfig.NetworkMode = string(c.HostConfig.NetworkMode)
	s.NetworkSettings = &container.NetworkSettingsSummary{Networks: e.networksLocked(c)}
	if size {
		rw := dirSize(c.UpperDir())
		s.SizeRw = rw
		if info, err := e.view.Image(digest.Digest(c.Meta.Image)); err == nil {
			s.SizeRootFs = rw + info.Size
		} else {
			s.SizeRootFs = rw
		}
	}
	return s
}

// apiPortsLocked lists published (while running) and exposed ports.
func (e *Engine) apiPortsLocked(c *ctr.Container) []container.Port {
	var pubs []netpkg.PublishedPort
	if c.Endpoint != nil {
		pubs = c.Endpoint.Ports
	}
	ports := netpkg.APIPorts(c.Meta.Config.ExposedPorts, pubs)
	if ports == nil {
		ports = []container.Port{}
	}
	return ports
}

func (e *Engine) networksLocked(c *ctr.Container) map[string]*network.EndpointSettings {
	mode := string(c.HostConfig.NetworkMode)
	if mode == "default" || mode == "" {
		mode = "bridge"
	}
	es := &network.EndpointSettings{}
	if ep := c.Endpoint; ep != nil {
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

func apiMounts(ms []ctr.MountPoint) []container.MountPoint {
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
	c, err := e.ctrs.Get(name)
	if err != nil {
		return nil, err
	}
	c.Lock()
	defer c.Unlock()
	st := c.Meta.State
	state := &container.State{
		Status: st.Status(), Running: st.Running, Restarting: st.Restarting, OOMKilled: st.OOMKilled,
		Dead: st.Dead, Pid: st.Pid, ExitCode: st.ExitCode, Error: st.Error,
		StartedAt: formatTime(st.StartedAt), FinishedAt: formatTime(st.FinishedAt),
	}
	execIDs := c.RunningExecsLocked()
	lowers, _ := e.shared.Store.Layers(digest.Digest(c.Meta.Image))
	gd := storage.DriverData{Name: "overlay2", Data: map[string]string{
		"LowerDir":  strings.Join(lowers, ":"),
		"MergedDir": e.mergedDir(c.Meta.ID),
		"UpperDir":  c.UpperDir(),
		"WorkDir":   c.WorkDir(),
	}}
	base := &container.ContainerJSONBase{
		ID: c.Meta.ID, Created: formatTime(c.Meta.Created), Path: c.Meta.Path, Args: c.Meta.Args,
		State: state, Image: c.Meta.Image,
		ResolvConfPath: filepath.Join(c.Dir, "resolv.conf"),
		HostnamePath:   filepath.Join(c.Dir, "hostname"),
		HostsPath:      filepath.Join(c.Dir, "hosts"),
		LogPath:        c.LogPath(),
		Name:           c.Meta.Name, RestartCount: c.Meta.RestartCount,
		Driver: "overlay2", Platform: "linux", ExecIDs: execIDs,
		HostConfig: c.HostConfig, GraphDriver: gd,
	}
	if base.Args == nil {
		base.Args = []string{}
	}
	if size {
		rw := dirSize(c.UpperDir())
		root := rw
		if info, err := e.view.Image(digest.Digest(c.Meta.Image)); err == nil {
			root += info.Size
		}
		base.SizeRw, base.SizeRootFs = &rw, &root
	}
	ns := &container.NetworkSettings{}
	ns.Networks = e.networksLocked(c)
	var pubs []netpkg.PublishedPort
	if c.Endpoint != nil {
		pubs = c.Endpoint.Ports
		ns.SandboxKey = c.Endpoint.NetNSPath
		ns.EndpointID = c.Endpoint.EndpointID
		ns.IPAddress = c.Endpoint.IP.String()
		ns.IPPrefixLen = c.Endpoint.PrefixLen
		ns.Gateway = c.Endpoint.Gateway.String()
		ns.MacAddress = c.Endpoint.MacAddress.String()
	}
	ns.Ports = netpkg.PortMap(c.Meta.Config.ExposedPorts, pubs)
	if ns.Ports == nil {
		ns.Ports = nat.PortMap{}
	}
	return &container.InspectResponse{
		ContainerJSONBase: base,
		Mounts:            apiMounts(c.Meta.Mounts),
		Config:            c.Meta.Config,
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
	for _, c := range e.ctrs.All() {
		c.Lock()
		skip := c.Meta.State.Running || c.Meta.State.Removing
		if !until.IsZero() && !c.Meta.Created.Before(until) {
			skip = true
		}
		if f.Contains("label") && !f.MatchKVList("label", c.Meta.Config.Labels) {
			skip = true
		}
		if f.Contains("label!") && f.MatchKVList("label!", c.Meta.Config.Labels) {
			skip = true
		}
		c.Unlock()
		if skip {
			continue
		}
		size := dirSize(c.UpperDir())
		if err := e.ctrs.Remove(ctx, c, false, false); err != nil {
			continue
		}
		rep.ContainersDeleted = append(rep.ContainersDeleted, c.Meta.ID)
		rep.SpaceReclaimed += uint64(size)
	}
	e.events.publish(events.ContainerEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(rep.SpaceReclaimed, 10)})
	return rep, nil
}

// Close stops every running container of the engine (SIGKILL): a sandbox
// being destroyed takes its containers along. State stays on disk.
func (e *Engine) Close(ctx context.Context) error {
	e.ctrs.KillAll(ctx)
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
