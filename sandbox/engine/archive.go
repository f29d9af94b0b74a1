package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/beneath"
	"github.com/labd/labd/sandbox/engine/ctr"
	"github.com/moby/go-archive"
	"github.com/moby/go-archive/chrootarchive"
	"github.com/moby/sys/user"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// docker cp and docker export. A running container's root filesystem is
// the runtime's overlay mount (in labd's mount namespace); a stopped one
// gets a temporary overlay of the same lowers and upper, shared by
// concurrent copies and held against a start (start waits: two overlays
// on one upper directory are undefined behaviour). Every tar and untar
// runs chrooted into the root (go-archive's chrootarchive), so a symlink
// in the container can never lead outside it, even one swapped in while
// the copy runs. Paths under a volume or bind mount are served from the
// mount's source.

type containerFileNotFound struct{ file, container string }

func (e containerFileNotFound) Error() string {
	return "Could not find the file " + e.file + " in container " + e.container
}
func (containerFileNotFound) NotFound() {}

// fsUse is a stopped container's temporary root filesystem.
type fsUse struct {
	n      int
	root   string
	mounts []ctr.MountPoint // bind sources pinned for the copies (pins)
	pins   []string
	done   chan struct{} // closed when the mount is gone
}

// stoppedRoots are the temporary root filesystems of an engine's stopped
// containers that docker cp is reading or writing, by container ID: one
// mount per container however many copies run, gone with the last.
type stoppedRoots struct {
	mu   sync.Mutex
	uses map[string]*fsUse
}

// waitFSIdleLocked waits, with c's lock held on entry and on return, until
// no copy holds c's temporary root filesystem. The lock is released while
// it waits (copies take it for their events); copies register under it,
// so the final check with the lock held is conclusive.
func (e *Engine) waitFSIdleLocked(c *ctr.Container) {
	for {
		e.roots.mu.Lock()
		u := e.roots.uses[c.Meta.ID]
		e.roots.mu.Unlock()
		if u == nil {
			return
		}
		c.Unlock()
		<-u.done
		c.Lock()
	}
}

// ctrRoot is the view of a container's files one copy works on.
type ctrRoot struct {
	root    string // the merged root filesystem
	mounts  []ctr.MountPoint
	bundle  string // running: where the /etc files are
	release func()
	// ids maps the root filesystem's host ids to container ids (a user
	// namespace's shift; empty without one). The pinned bind and volume
	// sources in raw hold container ids on disk and need none.
	ids user.IdentityMapping
	raw map[string]bool
}

// idsFor is the mapping for a copy under root (one of locate's roots).
func (r *ctrRoot) idsFor(root string) user.IdentityMapping {
	if r.raw[root] {
		return user.IdentityMapping{}
	}
	return r.ids
}

// rootOf gives access to c's root filesystem until release is called.
func (e *Engine) rootOf(c *ctr.Container) (*ctrRoot, error) {
	c.Lock()
	if c.RemovedLocked() || c.Meta.State.Removing {
		c.Unlock()
		return nil, api.ConflictError(fmt.Errorf("container %s is marked for removal", c.Meta.ID))
	}
	mounts := append([]ctr.MountPoint(nil), c.Meta.Mounts...)
	id := c.Meta.ID
	if c.Meta.State.Running && c.RuntimeLocked() != nil {
		bundle := e.shared.Runtime.BundleDir(id)
		c.Unlock()
		// Bind and volume sources are pinned for the copy (resolved now,
		// beneath their roots), not taken from the container: the
		// container's own are idmapped under a user namespace, and host
		// root cannot write through those.
		cpDir := "cp-" + ctr.NewID()[:12]
		pinned, pins, err := e.pinBinds(c, mounts, cpDir)
		release := func() {
			unpinAll(pins)
			// Not RemoveAll: were a pin still mounted, that would reach
			// into the learner's workspace.
			_ = os.Remove(filepath.Join(c.Dir, cpDir))
		}
		if err != nil {
			release()
			return nil, err
		}
		return &ctrRoot{root: filepath.Join(bundle, "rootfs"), mounts: pinned, bundle: bundle,
			release: release, ids: e.idMap(), raw: rawRoots(pinned, pins)}, nil
	}
	// Registered under c's lock: a start after this waits for the release.
	e.roots.mu.Lock()
	defer e.roots.mu.Unlock()
	c.Unlock()
	u := e.roots.uses[id]
	if u == nil {
		root, err := e.mountStopped(c)
		if err != nil {
			return nil, err
		}
		u = &fsUse{root: root, done: make(chan struct{})}
		if u.mounts, u.pins, err = e.pinBinds(c, mounts, "cpbinds"); err != nil {
			unpinAll(u.pins)
			_ = unix.Unmount(root, unix.MNT_DETACH)
			_ = os.Remove(root)
			return nil, err
		}
		if e.roots.uses == nil {
			e.roots.uses = map[string]*fsUse{}
		}
		e.roots.uses[id] = u
	}
	mounts = u.mounts
	u.n++
	var once sync.Once
	release := func() {
		once.Do(func() {
			e.roots.mu.Lock()
			defer e.roots.mu.Unlock()
			u.n--
			if u.n > 0 {
				return
			}
			delete(e.roots.uses, id)
			unpinAll(u.pins)
			if err := unix.Unmount(u.root, 0); err != nil {
				_ = unix.Unmount(u.root, unix.MNT_DETACH)
			}
			_ = os.Remove(u.root)
			close(u.done)
		})
	}
	return &ctrRoot{root: u.root, mounts: mounts, release: release, ids: e.idMap(), raw: rawRoots(mounts, u.pins)}, nil
}

// pinBinds resolves a container's bind sources beneath their roots now
// and pins each under <container>/<dir>: copies read and write those
// trees, never a path a learner can swap while they run. Under a user
// namespace volumes are pinned too. Pins are not idmapped: they show the
// container ids the files have on disk (rawRoots).
func (e *Engine) pinBinds(c *ctr.Container, mounts []ctr.MountPoint, dir string) ([]ctr.MountPoint, []string, error) {
	out := append([]ctr.MountPoint(nil), mounts...)
	var pins []string
	dir = filepath.Join(c.Dir, dir)
	for i, m := range out {
		if m.Type != "bind" && (m.Type != "volume" || e.userns == nil) {
			continue
		}
		rm, err := e.runtimeMount(m)
		if err != nil {
			return nil, pins, err
		}
		root, rel, shown := rm.Beneath, rm.Source, rm.Shown
		if root == "" {
			// A volume: a directory labd made, no learner path in it.
			root, rel, shown = filepath.Dir(m.Source), filepath.Base(m.Source), m.Name
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, pins, err
		}
		target := filepath.Join(dir, strconv.Itoa(i))
		if err := beneath.Pin(root, rel, target); err != nil {
			return nil, pins, api.InvalidParameterError(fmt.Errorf("mount source %s of %s: %w", shown, m.Destination, err))
		}
		pins = append(pins, target)
		out[i].Source = target
	}
	return out, pins, nil
}

// rawRoots are the pinned sources among mounts (container ids on disk).
func rawRoots(mounts []ctr.MountPoint, pins []string) map[string]bool {
	raw := map[string]bool{}
	for _, p := range pins {
		raw[p] = true
	}
	// A file mount's root is its directory (locate).
	for _, m := range mounts {
		if raw[m.Source] {
			raw[filepath.Dir(m.Source)] = raw[filepath.Dir(m.Source)] || isFile(m.Source)
		}
	}
	return raw
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

func unpinAll(pins []string) {
	for _, p := range pins {
		_ = beneath.Unpin(p)
	}
}

// mountStopped mounts c's root filesystem (init layer, image layers,
// upper) at <container>/cpfs.
func (e *Engine) mountStopped(c *ctr.Container) (string, error) {
	lowers, err := e.shared.Store.Layers(digest.Digest(c.Meta.Image))
	if err != nil {
		return "", mapErr(err)
	}
	initDir := filepath.Join(c.Dir, "init")
	if err := writeInitLayer(initDir); err != nil {
		return "", fmt.Errorf("init layer of %s: %w", c.Meta.ID, err)
	}
	target := filepath.Join(c.Dir, "cpfs")
	for _, d := range []string{target, c.UpperDir(), c.WorkDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	all := append([]string{initDir}, lowers...)
	if e.userns != nil {
		// Idmapped lowers, as in the container: the upper holds host ids
		// of the sandbox's range, and both must show the same.
		if err := e.shared.Runtime.MountOverlay(target, all, c.UpperDir(), c.WorkDir(), e.userns); err != nil {
			return "", err
		}
		return target, nil
	}
	if err := mountOverlay(target, all, c.UpperDir(), c.WorkDir()); err != nil {
		return "", err
	}
	return target, nil
}

// writeInitLayer is dockerd's init layer (the runtime writes the same one
// for a running container), so a stopped container's files are those a
// running one shows.
func writeInitLayer(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, ".dockerenv")); err == nil {
		return nil
	}
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range []string{"dev/pts", "dev/shm", "proc", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{"etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console", ".dockerenv"} {
		fh, err := os.OpenFile(filepath.Join(dir, f), os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		fh.Close()
	}
	if err := os.Symlink("/proc/mounts", filepath.Join(dir, "etc/mtab")); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// mountOverlay mounts an overlay; lowers are named by /proc/self/fd paths
// when their full paths would not fit in a page.
func mountOverlay(target string, lowers []string, upper, work string) error {
	esc := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`)
	data := func(ls []string) string {
		var q []string
		for _, l := range ls {
			q = append(q, esc.Replace(l))
		}
		return "lowerdir=" + strings.Join(q, ":") + ",upperdir=" + esc.Replace(upper) + ",workdir=" + esc.Replace(work)
	}
	d := data(lowers)
	if len(d) >= 4000 {
		short := make([]string, len(lowers))
		for i, l := range lowers {
			fd, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open lower %s: %w", l, err)
			}
			defer unix.Close(fd)
			short[i] = "/proc/self/fd/" + strconv.Itoa(fd)
		}
		d = data(short)
	}
	if err := unix.Mount("overlay", target, "overlay", 0, d); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

// locate maps an absolute container path to the root it lives under (the
// root filesystem, a mount's source, the bundle's /etc files) and the path
// inside that root.
func (r *ctrRoot) locate(p string) (root, rel string) {
	clean := filepath.Clean("/" + p)
	ms := append([]ctr.MountPoint(nil), r.mounts...)
	if r.bundle != "" {
		for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
			ms = append(ms, ctr.MountPoint{Type: "bind", Source: filepath.Join(r.bundle, f), Destination: "/etc/" + f})
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i].Destination) > len(ms[j].Destination) })
	for _, m := range ms {
		if m.Type == "tmpfs" {
			continue
		}
		d := filepath.Clean(m.Destination)
		if clean != d && !strings.HasPrefix(clean, d+"/") {
			continue
		}
		src := m.Source
		rest := strings.TrimPrefix(clean, d)
		if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
			// A file mount: its directory is the root, only the file itself
			// is reachable.
			if rest != "" {
				return src, "/nonexistent"
			}
			return filepath.Dir(src), "/" + filepath.Base(src) + trailing(p)
		}
		return src, "/" + strings.TrimPrefix(rest, "/") + trailing(p)
	}
	return r.root, p
}

// trailing keeps a path's trailing "/" or "/." (archive.PreserveTrailingDotOrSeparator).
func trailing(p string) string {
	switch {
	case strings.HasSuffix(p, "/."):
		return "/."
	case strings.HasSuffix(p, "/") && p != "/":
		return "/"
	}
	return ""
}

// resolvePath is dockerd's Container.ResolvePath: the directory resolved
// in the root's scope, the last element not followed.
func resolvePath(root, p string) (resolved, abs string, err error) {
	abs = archive.PreserveTrailingDotOrSeparator(filepath.Join("/", p), p)
	dir, base := filepath.Split(abs)
	rdir, err := securejoin.SecureJoin(root, dir)
	if err != nil {
		return "", "", err
	}
	return rdir + "/" + base, abs, nil
}

// statPath is dockerd's Container.StatPath; the lstat is done on a handle
// opened inside the root, so nothing outside it can be reached.
func statPath(root, resolved, abs string) (*container.PathStat, error) {
	i := strings.LastIndex(resolved, "/")
	rdir, base := resolved[:i], resolved[i+1:]
	rel, err := filepath.Rel(root, rdir)
	if err != nil {
		return nil, err
	}
	dh, err := pathrs.OpenInRoot(root, rel)
	if err != nil {
		return nil, err
	}
	defer dh.Close()
	var st unix.Stat_t
	if base == "" || base == "." {
		err = unix.Fstat(int(dh.Fd()), &st)
	} else {
		err = unix.Fstatat(int(dh.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return nil, &os.PathError{Op: "lstat", Path: abs, Err: err}
	}
	mode := fileMode(st.Mode)
	var link string
	if mode&os.ModeSymlink != 0 {
		host, err := securejoin.SecureJoin(root, abs)
		if err != nil {
			return nil, err
		}
		r, err := filepath.Rel(root, host)
		if err != nil {
			return nil, err
		}
		link = filepath.Join("/", r)
	}
	return &container.PathStat{Name: filepath.Base(abs), Size: st.Size, Mode: mode, Mtime: time.Unix(st.Mtim.Unix()), LinkTarget: link}, nil
}

func (e *Engine) statIn(r *ctrRoot, name, p string) (*container.PathStat, string, string, string, error) {
	root, inner := r.locate(p)
	resolved, abs, err := resolvePath(root, inner)
	if err != nil {
		return nil, "", "", "", err
	}
	st, err := statPath(root, resolved, abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil, "", "", "", containerFileNotFound{p, name}
		}
		return nil, "", "", "", err
	}
	if root != r.root {
		// Named as the client named it, not as the mount source's file.
		st.Name = filepath.Base(filepath.Join("/", p))
		if abs == "/" || st.Name == "/" {
			st.Name = filepath.Base(filepath.Clean(p))
		}
	}
	return st, root, resolved, abs, nil
}

// ContainerStatPath implements api.ArchiveBackend.
func (e *Engine) ContainerStatPath(ctx context.Context, name, p string) (*container.PathStat, error) {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return nil, err
	}
	r, err := e.rootOf(c)
	if err != nil {
		return nil, err
	}
	defer r.release()
	st, _, _, _, err := e.statIn(r, name, p)
	return st, err
}

// ContainerArchivePath implements api.ArchiveBackend (dockerd's
// containerArchivePath: entries rebased on the requested name).
func (e *Engine) ContainerArchivePath(ctx context.Context, name, p string) (io.ReadCloser, *container.PathStat, error) {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return nil, nil, err
	}
	r, err := e.rootOf(c)
	if err != nil {
		return nil, nil, err
	}
	st, root, resolved, abs, err := e.statIn(r, name, p)
	if err != nil {
		r.release()
		return nil, nil, err
	}
	resolved = filepath.Clean(resolved)
	if filepath.Base(resolved) == "." {
		resolved += "/."
	}
	srcDir, srcBase := resolved, "."
	if !st.Mode.IsDir() {
		srcDir, srcBase = filepath.Split(resolved)
	}
	opts := archive.TarResourceRebaseOpts(srcBase, filepath.Base(abs))
	opts.IDMap = r.idsFor(root)
	rc, err := chrootarchive.Tar(srcDir, opts, root)
	if err != nil {
		r.release()
		return nil, nil, err
	}
	c.Lock()
	e.ctrs.EventLocked(c, events.ActionArchivePath, nil)
	c.Unlock()
	return &releaseReader{ReadCloser: rc, release: r.release}, st, nil
}

type releaseReader struct {
	io.ReadCloser
	release func()
}

func (r *releaseReader) Close() error {
	err := r.ReadCloser.Close()
	r.release()
	return err
}

type extractNotDir struct{}

func (extractNotDir) Error() string     { return "extraction point is not a directory" }
func (extractNotDir) InvalidParameter() {}

// ContainerExtractToDir implements api.ArchiveBackend (dockerd's
// containerExtractToDir: the last element is followed, it must be a
// directory).
func (e *Engine) ContainerExtractToDir(ctx context.Context, name, p string, copyUIDGID, noOverwriteDirNonDir bool, body io.Reader) error {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return err
	}
	r, err := e.rootOf(c)
	if err != nil {
		return err
	}
	defer r.release()
	root, inner := r.locate(p)
	abs := archive.PreserveTrailingDotOrSeparator(filepath.Join("/", inner), inner)
	resolved, err := securejoin.SecureJoin(root, abs)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(root, resolved)
	if err != nil {
		return err
	}
	h, err := pathrs.OpenInRoot(root, rel)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return containerFileNotFound{p, name}
		}
		return err
	}
	var st unix.Stat_t
	err = unix.Fstat(int(h.Fd()), &st)
	h.Close()
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return extractNotDir{}
	}
	for _, m := range r.mounts {
		d := filepath.Clean(m.Destination)
		cp := filepath.Clean("/" + p)
		if !m.RW && (cp == d || strings.HasPrefix(cp, d+"/")) {
			return api.ForbiddenError(errors.New("mounted volume is marked read-only"))
		}
	}
	ids := r.idsFor(root)
	opts := &archive.TarOptions{NoOverwriteDirNonDir: noOverwriteDirNonDir, IDMap: ids}
	if copyUIDGID {
		// The files take the container user's IDs; root unless set
		// (dockerd resolves names in the container's /etc/passwd).
		c.Lock()
		user := c.Meta.Config.User
		c.Unlock()
		if uid, gid, ok := numericUser(user); ok {
			// go-archive applies ChownOpts as host ids, unmapped.
			if len(ids.UIDMaps) > 0 {
				uid += int(ids.UIDMaps[0].ParentID)
				gid += int(ids.GIDMaps[0].ParentID)
			}
			opts.ChownOpts = &archive.ChownOpts{UID: uid, GID: gid}
		}
	}
	if err := chrootarchive.UntarWithRoot(body, resolved, opts, root); err != nil {
		return err
	}
	c.Lock()
	e.ctrs.EventLocked(c, events.ActionExtractToDir, nil)
	c.Unlock()
	return nil
}

func numericUser(u string) (int, int, bool) {
	if u == "" {
		return 0, 0, true
	}
	us, gs, _ := strings.Cut(u, ":")
	uid, err := strconv.Atoi(us)
	if err != nil {
		return 0, 0, false
	}
	gid := uid
	if gs != "" {
		if gid, err = strconv.Atoi(gs); err != nil {
			return 0, 0, false
		}
	}
	return uid, gid, true
}

// ContainerExport implements api.ArchiveBackend: the root filesystem
// without volumes, as dockerd exports it.
func (e *Engine) ContainerExport(ctx context.Context, name string) (io.ReadCloser, error) {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return nil, err
	}
	r, err := e.rootOf(c)
	if err != nil {
		return nil, err
	}
	rc, err := chrootarchive.Tar(r.root, &archive.TarOptions{IDMap: r.ids}, r.root)
	if err != nil {
		r.release()
		return nil, err
	}
	c.Lock()
	e.ctrs.EventLocked(c, events.ActionExport, nil)
	c.Unlock()
	return &releaseReader{ReadCloser: rc, release: r.release}, nil
}

// fileMode is os.FileMode for a stat mode (as os.Lstat fills it).
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	}
	if m&unix.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&unix.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return mode
}
