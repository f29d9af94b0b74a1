package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labd/labd/sandbox/engine/userns"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Options configure a Runtime.
type Options struct {
	// Root holds libcontainer's state and the per-container bundles
	// (rootfs mount points, init layers, /etc files); normally
	// <data>/engine/runtime. Required.
	Root string
	// CgroupParent is the cgroup (relative to each hierarchy's root) under
	// which every container gets <CgroupParent>/<id>. Default "labd".
	CgroupParent string
	// Seccomp is applied to every container when non-nil (for example
	// Docker's default profile). It needs a binary built with
	// `-tags seccomp`; New fails otherwise.
	Seccomp *specs.LinuxSeccomp
	// Logger gets warnings about cleanup that failed; default slog.Default().
	Logger *slog.Logger
}

// Runtime starts containers. It is safe for concurrent use.
type Runtime struct {
	root, stateDir, bundleDir string
	cgroupParent              string
	seccomp                   *specs.LinuxSeccomp
	log                       *slog.Logger
	overlayOpts               string // extra overlay options the kernel accepts
	// overlayFDs: the kernel takes overlay layers as descriptors
	// (fsconfig lowerdir+, Linux 6.13); otherwise idmapped layers are
	// attached in the bundle for the mount(2) call.
	overlayFDs bool
	// reachable is set once the bundle directory has been found
	// searchable by container root of a user namespace.
	reachable atomic.Bool

	mu      sync.Mutex
	running map[string]*Container
	groups  map[string]*Group // not yet removed, by name
}

// Mount is an extra mount in a container (a bind mount unless Type says
// otherwise).
type Mount struct {
	Source      string // host path (bind) or fs source; with Beneath, a path inside it
	Destination string // absolute path in the container
	Type        string // "" or "bind" = bind mount; else a filesystem type ("tmpfs")
	Options     []string
	ReadOnly    bool
	// Beneath makes a bind mount's Source a path inside this directory,
	// resolved when the container starts without ever leaving it (a
	// symlink to / names Beneath itself) and pinned in the bundle: the
	// container gets what the path named at that moment, whatever is
	// swapped in later. Set it for every path a learner influences.
	Beneath string
	// Create makes a missing Source (with Beneath) as directories first,
	// as dockerd does for `-v`.
	Create bool
	// Shown is the source as the user named it, for errors (default
	// Source).
	Shown string
	// IDMap makes a bind mount an idmapped mount with the container's
	// user namespace (Spec.UserNS): the container sees the on-disk owners
	// as its own ids (on-disk 0 is its root) and what it writes is stored
	// with its ids, so a workspace or volume keeps container ids on disk,
	// whatever host range the sandbox has. The source's filesystem must
	// support idmapped mounts (ext4, xfs, btrfs, tmpfs).
	IDMap bool
}

// UserNS is the user namespace a container runs in: a pinned namespace
// (userns.Create) and the mapping it was made with.
type UserNS struct {
	// Path is the namespace's pin (or any /proc/PID/ns/user).
	Path string
	// IDs is its uid and gid mapping: container id i is host id
	// IDs.Base+i. The runtime chowns what it creates for the container to
	// IDs.Base and checks that Path maps container root there.
	IDs userns.Range
}

// Spec describes one container and its init process.
type Spec struct {
	// ID names the container (Docker's 64 hex digits; letters, digits, _ . -
	// are accepted). At most one container per ID runs at a time.
	ID string
	// Lowers are the image's extracted layer directories, top first. Empty
	// means an empty root filesystem (FROM scratch).
	Lowers []string
	// Upper and Work are the container's own overlay directories, on the
	// same filesystem, not on overlayfs. Created if missing; never removed.
	Upper, Work string

	Args []string // the process: Args[0] is looked up in the container's PATH
	Env  []string // KEY=value; HOME is added from /etc/passwd when missing
	Cwd  string   // absolute; created (root-owned, 0755) when missing, like Docker. Default "/"
	// User is Docker's --user: "", "name", "uid", "name:group", "uid:gid";
	// names are looked up in the container's /etc/passwd and /etc/group.
	User     string
	Hostname string // default: the first 12 characters of ID

	// Tty runs the process on a pseudo-terminal: Stdout gets its output,
	// Stderr is unused. TtyWidth/TtyHeight set its initial size.
	Tty                 bool
	TtyWidth, TtyHeight uint16
	// Stdin, Stdout and Stderr may be nil (/dev/null). Stdin is copied until
	// it returns EOF, then the container sees EOF; a reader that never
	// returns keeps one goroutine blocked after the container has ended.
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// Resource limits; zero means none (Docker's defaults).
	Memory     int64 // bytes
	MemorySwap int64 // bytes, memory+swap; 0 = 2×Memory (Docker), -1 = unlimited
	PidsLimit  int64
	CPUShares  int64 // relative weight (--cpu-shares)
	CPUQuota   int64 // µs per CPUPeriod (--cpu-quota; --cpus=N is N×CPUPeriod)
	CPUPeriod  int64 // µs (default 100000 when CPUQuota is set)

	// NetNS is the path of a network namespace to join; "" gives the
	// container a new one with only lo (up).
	NetNS string
	// Hosts and ResolvConf are the contents of /etc/hosts and
	// /etc/resolv.conf; nil means Docker's defaults for a container
	// without a network (localhost entries; the host's resolv.conf
	// without loopback nameservers).
	Hosts, ResolvConf []byte
	// Mounts are extra mounts (volumes, binds), applied after Docker's
	// default mounts, parents first.
	Mounts []Mount

	// Group puts the container's cgroup in a group's (<CgroupParent>/
	// <group>/<id>), under the group's limits; nil: <CgroupParent>/<id>.
	Group *Group
	// Hold makes the container with its init process set up (namespaces,
	// mounts, cgroups, terminal) but not yet executed, as `runc create`:
	// Container.Release executes it. A warm sandbox's shell waits so.
	Hold bool
	// OOMScoreAdj is the oom_score_adj of the container's processes (how
	// readily the kernel's OOM killer picks them, -1000 to 1000); nil
	// inherits labd's.
	OOMScoreAdj *int

	// UserNS runs the container in that user namespace: container root is
	// the unprivileged host id UserNS.IDs.Base. The image layers are
	// mounted idmapped (shared, never chowned); Upper receives host ids
	// (IDs.Base + container id; see layer.DiffShifted); NetNS, when set,
	// must be owned by the same user namespace (userns.NewNetNS). nil runs
	// the container with host root as its root.
	UserNS *UserNS
}

var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ValidCgroupParent checks a cgroup parent: a relative path of plain
// names, so that it stays below each hierarchy's root (sweeps remove
// directories under it).
func ValidCgroupParent(p string) error {
	for _, el := range strings.Split(strings.Trim(p, "/"), "/") {
		if el == "" || el == "." || el == ".." || !validID.MatchString(el) {
			return fmt.Errorf("invalid cgroup parent %q: want names of letters, digits, _ . - separated by /", p)
		}
	}
	return nil
}

// ErrExists is returned by Start when a container with the same ID runs.
var ErrExists = errors.New("container already running")

// New prepares Root and removes what a previous labd left there (running
// containers are killed, mounts and cgroups released).
func New(opts Options) (*Runtime, error) {
	if opts.Root == "" {
		return nil, errors.New("runtime: Root is required")
	}
	if opts.Seccomp != nil && !seccomp.Enabled {
		return nil, errors.New("runtime: seccomp profile given but labd was built without seccomp support (-tags seccomp)")
	}
	if opts.CgroupParent == "" {
		opts.CgroupParent = "labd"
	}
	if err := ValidCgroupParent(opts.CgroupParent); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("runtime root: %w", err)
	}
	r := &Runtime{
		root:         root,
		stateDir:     filepath.Join(root, "state"),
		bundleDir:    filepath.Join(root, "bundles"),
		cgroupParent: opts.CgroupParent,
		seccomp:      opts.Seccomp,
		log:          opts.Logger,
		running:      map[string]*Container{},
		groups:       map[string]*Group{},
	}
	// Container root of a user namespace is not host root: it needs to
	// search its way to its rootfs (runc remounts it by path). Nothing in
	// root or bundles/ can be listed; state/ stays private.
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("runtime root: %w", err)
	}
	for _, d := range []string{r.stateDir, r.bundleDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("runtime root: %w", err)
		}
	}
	for _, d := range []string{root, r.bundleDir} {
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, fmt.Errorf("runtime root: %w", err)
		}
	}
	r.sweep()
	r.overlayOpts = probeOverlayOptions(r.bundleDir)
	r.overlayFDs = probeOverlayFDs(r.bundleDir, r.overlayOpts)
	return r, nil
}

// Close removes the runtime's directories if nothing is left in them (no
// container runs): a runtime root under /run (user namespaces) would
// otherwise outlive every data dir that was ever served. Containers still
// running keep them, and their next runtime's sweep finds them.
func (r *Runtime) Close() {
	for _, d := range []string{r.groupsDir(), r.bundleDir, r.stateDir, r.root} {
		if err := os.Remove(d); err != nil && !(d == r.groupsDir() && errors.Is(err, os.ErrNotExist)) {
			return
		}
	}
	// The per-data-dir directory above the root (runRoot), when empty.
	_ = os.Remove(filepath.Dir(r.root))
}

// BundleDir is where the container id's bundle (its root filesystem at
// rootfs/, its /etc files) is while it runs.
func (r *Runtime) BundleDir(id string) string { return filepath.Join(r.bundleDir, id) }

// sweep destroys containers and bundles left by a labd that was killed.
func (r *Runtime) sweep() {
	ents, _ := os.ReadDir(r.stateDir)
	for _, e := range ents {
		if err := destroyLeftover(r.stateDir, e.Name()); err != nil {
			r.log.Warn("runtime: destroy leftover container", "id", e.Name(), "err", err)
			_ = os.RemoveAll(filepath.Join(r.stateDir, e.Name()))
			r.removeCgroups(e.Name())
		}
	}
	r.sweepGroups()
	ents, _ = os.ReadDir(r.bundleDir)
	for _, e := range ents {
		if err := removeBundle(filepath.Join(r.bundleDir, e.Name())); err != nil {
			r.log.Warn("runtime: remove leftover bundle", "id", e.Name(), "err", err)
		}
	}
}

// removeCgroups removes the (empty) cgroup directories of a container whose
// state could not be loaded, on v1, hybrid and v2 layouts, directly under
// the parent or in a group.
func (r *Runtime) removeCgroups(id string) {
	for _, pattern := range []string{
		filepath.Join("/sys/fs/cgroup", "*", r.cgroupParent, id),
		filepath.Join("/sys/fs/cgroup", r.cgroupParent, id),
		filepath.Join("/sys/fs/cgroup", "*", r.cgroupParent, "*", id),
		filepath.Join("/sys/fs/cgroup", r.cgroupParent, "*", id),
	} {
		dirs, _ := filepath.Glob(pattern)
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	}
}

// destroyLeftover kills a container this process did not start and removes
// it. Its init process is not our child, so its end is polled for.
func destroyLeftover(stateDir, id string) error {
	c, err := libcontainer.Load(stateDir, id)
	if err != nil {
		return err
	}
	if st, err := c.Status(); err == nil && st != libcontainer.Stopped {
		_ = c.Signal(unix.SIGKILL)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return c.Destroy()
}

// Run starts a container, waits for its process and cleans up. The exit
// code is the process's, or 128+N when a signal N killed it (137 for
// SIGKILL). Cancelling ctx kills the container (SIGKILL); Run still
// returns only after the cleanup, with ctx's error.
func (r *Runtime) Run(ctx context.Context, s Spec) (exitCode int, err error) {
	c, err := r.Start(ctx, s)
	if err != nil {
		return -1, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Kill() })
	defer stop()
	st, err := c.Wait(context.Background())
	if err != nil {
		return -1, err
	}
	if ctx.Err() != nil {
		return st.ExitCode, ctx.Err()
	}
	return st.ExitCode, nil
}

// Start creates a container and starts its init process; it returns once
// the process has been executed. ctx bounds only the start: the container
// runs until its process exits or it is killed. After the process has
// exited, everything but Upper and Work is released (see Wait).
func (r *Runtime) Start(ctx context.Context, s Spec) (_ *Container, err error) {
	r.detectCgroupFiles()
	if !validID.MatchString(s.ID) {
		return nil, fmt.Errorf("invalid container id %q", s.ID)
	}
	if len(s.Args) == 0 {
		return nil, fmt.Errorf("start container %s: no command", s.ID)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.Hostname == "" {
		s.Hostname = s.ID[:min(12, len(s.ID))]
	}
	if s.Cwd == "" {
		s.Cwd = "/"
	}
	if s.CPUQuota > 0 && s.CPUPeriod == 0 {
		s.CPUPeriod = 100000
	}
	if s.Memory > 0 && s.MemorySwap == 0 && !swapLimitSupported() {
		s.MemorySwap = -1 // Docker drops the swap limit the kernel cannot enforce
	}
	ns, err := r.openUserNS(&s)
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	if ns != nil {
		defer ns.Close() // the mounts and runc keep what they need
	}

	if g := s.Group; g != nil {
		if g.r != r {
			return nil, fmt.Errorf("start container %s: group %s is another runtime's", s.ID, g.name)
		}
		if err := g.enter(); err != nil {
			return nil, fmt.Errorf("start container %s: %w", s.ID, err)
		}
		// Registered first, so it runs last: the container's own cgroup is
		// gone (lc.Destroy below) before the group may be removed.
		defer func() {
			if err != nil {
				g.leave()
			}
		}()
	}

	r.mu.Lock()
	if _, dup := r.running[s.ID]; dup {
		r.mu.Unlock()
		return nil, fmt.Errorf("start container %s: %w", s.ID, ErrExists)
	}
	c := &Container{r: r, id: s.ID, group: s.Group, done: make(chan struct{})}
	r.running[s.ID] = c
	r.mu.Unlock()
	defer func() {
		if err != nil {
			r.mu.Lock()
			delete(r.running, s.ID)
			r.mu.Unlock()
		}
	}()

	c.bundle = filepath.Join(r.bundleDir, s.ID)
	c.rootfs = filepath.Join(c.bundle, "rootfs")
	// A bundle left by a container that ended badly (never by a running
	// one: the map above rules that out) is removed first.
	if err := removeBundle(c.bundle); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	if err := r.prepareRootfs(c, &s, ns); err != nil {
		_ = removeBundle(c.bundle)
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	// A copy: the caller's Spec keeps its own sources.
	s.Mounts = append([]Mount(nil), s.Mounts...)
	if err := pinMounts(c.bundle, s.Mounts, ns); err != nil {
		_ = removeBundle(c.bundle)
		return nil, err // names the mount: "invalid mount config ..."
	}
	c.mounts = s.Mounts
	defer func() {
		if err != nil {
			c.releaseRootfs()
		}
	}()

	u, err := lookupUser(c.rootfs, s.User)
	if err != nil {
		return nil, err // Docker's wording, unwrapped: "unable to find user x: ..."
	}
	owner := -1 // host id of container root, for what labd makes for it; -1: host root
	if s.UserNS != nil {
		owner = int(s.UserNS.IDs.Base)
	}
	if err := makeCwd(c.rootfs, s.Cwd, owner); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}

	spec, err := r.ociSpec(&s, c.rootfs, c.bundle)
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	cfg, err := createConfig(s.ID, spec)
	if err != nil {
		return nil, fmt.Errorf("start container %s: config: %w", s.ID, err)
	}
	if s.UserNS != nil {
		joinUserNS(cfg, s.UserNS.Path)
	}
	// A stale state dir (labd killed between sweep and now is impossible,
	// but a crashed earlier run of this ID is not) would make Create fail.
	if _, lerr := os.Stat(filepath.Join(r.stateDir, s.ID)); lerr == nil {
		_ = destroyLeftover(r.stateDir, s.ID)
	}
	lc, err := libcontainer.Create(r.stateDir, s.ID, cfg)
	if err != nil {
		return nil, fmt.Errorf("start container %s: create: %w", s.ID, err)
	}
	c.lc = lc
	defer func() {
		if err != nil {
			_ = lc.Destroy()
		}
	}()

	p, err := newProcess(processSpec{
		Args: s.Args, Env: s.Env, Cwd: s.Cwd, user: u,
		Tty: s.Tty, TtyWidth: s.TtyWidth, TtyHeight: s.TtyHeight,
		Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr,
	}, true)
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	if err := p.start(lc, s.Hold); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	c.init = p
	go c.monitor()
	return c, nil
}

// specconvMu: runc's specconv hands every config the same default
// device nodes (specconv.AllowedDevices, pointers to package variables)
// and, under a user namespace, writes the container's root uid into them.
// Two containers of different sandboxes made at once would race there,
// and one could get /dev nodes owned by the other's uid range. The
// conversion runs alone, and each config gets devices of its own.
var specconvMu sync.Mutex

func createConfig(id string, spec *specs.Spec) (*configs.Config, error) {
	specconvMu.Lock()
	defer specconvMu.Unlock()
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:   id,
		Spec:         spec,
		NoNewKeyring: false,
	})
	if err != nil {
		return nil, err
	}
	for i, d := range cfg.Devices {
		own := *d
		cfg.Devices[i] = &own
	}
	return cfg, nil
}

// swapLimitSupported reports whether the kernel accounts swap per cgroup
// (cgroup v1 without swapaccount=1 does not).
func swapLimitSupported() bool {
	if cgroups.IsCgroup2UnifiedMode() {
		return true
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

// oomKilled reports whether the kernel's OOM killer has killed a process of
// the container (read before the cgroups are removed).
func oomKilled(paths map[string]string) bool {
	var file string
	if p, ok := paths["memory"]; ok {
		file = filepath.Join(p, "memory.oom_control") // v1: "oom_kill N"
	} else if p, ok := paths[""]; ok {
		file = filepath.Join(p, "memory.events") // v2: "oom_kill N"
	}
	if file == "" {
		return false
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		var n int
		if _, err := fmt.Sscanf(line, "oom_kill %d", &n); err == nil && n > 0 {
			return true
		}
	}
	return false
}

// unmount detaches a mount point, lazily if something still holds it.
func unmount(target string) error {
	err := unix.Unmount(target, 0)
	if err == unix.EBUSY {
		err = unix.Unmount(target, unix.MNT_DETACH)
	}
	if err == unix.EINVAL || err == unix.ENOENT {
		return nil // not mounted
	}
	return err
}
