package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/labd/labd/sandbox/engine/userns"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// openUserNS checks a spec's user namespace settings and opens the
// namespace (nil without Spec.UserNS).
func (r *Runtime) openUserNS(s *Spec) (*os.File, error) {
	if s.UserNS == nil {
		for _, m := range s.Mounts {
			if m.IDMap {
				return nil, fmt.Errorf("idmapped mount %s: the container has no user namespace", m.Destination)
			}
		}
		return nil, nil
	}
	for _, m := range s.Mounts {
		if m.IDMap && m.Type != "" && m.Type != "bind" {
			return nil, fmt.Errorf("idmapped mount %s: only bind mounts can be idmapped, not %q", m.Destination, m.Type)
		}
	}
	if err := s.UserNS.IDs.Validate(); err != nil {
		return nil, err
	}
	if s.UserNS.Path == "" {
		return nil, errors.New("user namespace: no path")
	}
	if err := r.checkReachable(); err != nil {
		return nil, err
	}
	ns, err := userns.Open(s.UserNS.Path)
	if err != nil {
		return nil, err
	}
	// A network namespace of another owner gives container root no
	// CAP_NET_ADMIN there: runc could not mount sysfs, ping would fail.
	if s.NetNS != "" {
		if err := userns.CheckOwner(s.NetNS, s.UserNS.Path); err != nil {
			ns.Close()
			return nil, fmt.Errorf("network namespace: %w", err)
		}
	}
	return ns, nil
}

// checkReachable makes sure container root of a user namespace (an
// unprivileged host uid, with no capability over host-owned directories)
// can search every directory down to the bundles: runc's init remounts
// the rootfs by path inside the container's user namespace.
func (r *Runtime) checkReachable() error {
	if r.reachable.Load() {
		return nil
	}
	for d := r.bundleDir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("runtime root: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("runtime root %s: %s (mode %04o) is not searchable by others, which containers in a user namespace need on every directory down to their root filesystem (chmod o+x)", r.root, d, fi.Mode().Perm())
		}
		if d == "/" {
			break
		}
	}
	r.reachable.Store(true)
	return nil
}

// joinUserNS makes the container join the pinned user namespace instead
// of creating one. specconv ran with the namespace's mappings as if for a
// new namespace, which gives libcontainer the host root id it chowns its
// files to; with the path set, runc joins and writes no maps (and specconv
// did not fork helpers to read them from the path).
func joinUserNS(cfg *configs.Config, path string) {
	for i := range cfg.Namespaces {
		if cfg.Namespaces[i].Type == configs.NEWUSER {
			cfg.Namespaces[i].Path = path
		}
	}
}

// idmappedTree returns a detached clone of the mount tree at dir whose
// owners show through the mapping of the user namespace ns.
func idmappedTree(dir string, ns *os.File) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("clone layer %s: %w", dir, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		if err == unix.EINVAL {
			return -1, fmt.Errorf("idmap layer %s: its filesystem does not support idmapped mounts (ext4, xfs, btrfs and tmpfs do; overlayfs and NFS do not): %w", dir, err)
		}
		return -1, fmt.Errorf("idmap layer %s: %w", dir, err)
	}
	return fd, nil
}

// MountOverlay mounts at target the overlay a container with these
// lowers (top first), upper and work directories and user namespace (nil:
// none) has as its root filesystem, for access from the host while the
// container is stopped (docker cp, export): with u, the lowers are
// idmapped as in the container, so that they show the same host ids as
// the upper. The caller unmounts target.
func (r *Runtime) MountOverlay(target string, lowers []string, upper, work string, u *UserNS) error {
	if len(lowers) == 0 {
		return errors.New("mount overlay: no lower directory")
	}
	if u == nil {
		return mountOverlay(target, lowers, upper, work, r.overlayOpts)
	}
	if err := u.IDs.Validate(); err != nil {
		return err
	}
	ns, err := userns.Open(u.Path)
	if err != nil {
		return err
	}
	defer ns.Close()
	scratch, err := os.MkdirTemp(r.bundleDir, ".mount-")
	if err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	defer removeBundle(scratch)
	return r.mountIDMappedOverlay(scratch, target, lowers, upper, work, u, ns)
}

// mountIDMappedOverlay mounts at target an overlay whose lowers (top
// first) are idmapped clones of the layer directories: on disk they keep
// their ids and stay shared by every sandbox. Upper and work are plain
// directories; overlay creates in upper with the container's host ids.
// The root of lowers[0] shows through the idmapping whether the namespace
// really maps container ids to u.IDs.
func (r *Runtime) mountIDMappedOverlay(bundle, target string, lowers []string, upper, work string, u *UserNS, ns *os.File) error {
	trees := make([]int, 0, len(lowers))
	// Every tree stays open until the overlay exists: closing a detached
	// tree's last descriptor unmounts it.
	defer func() {
		for _, fd := range trees {
			unix.Close(fd)
		}
	}()
	for _, l := range lowers {
		fd, err := idmappedTree(l, ns)
		if err != nil {
			return err
		}
		trees = append(trees, fd)
	}
	if err := checkMapping(lowers[0], trees[0], u); err != nil {
		return err
	}
	if r.overlayFDs {
		return mountOverlayFDs(target, trees, upper, work, r.overlayOpts)
	}
	return mountOverlayAttached(filepath.Join(bundle, "layers"), target, trees, upper, work, r.overlayOpts)
}

// checkMapping compares the owner of dir on disk with what the idmapped
// tree of dir shows.
func checkMapping(dir string, tree int, u *UserNS) error {
	var disk, mapped unix.Stat_t
	if err := unix.Stat(dir, &disk); err != nil {
		return fmt.Errorf("layer %s: %w", dir, err)
	}
	if err := unix.Fstat(tree, &mapped); err != nil {
		return fmt.Errorf("idmapped layer %s: %w", dir, err)
	}
	if disk.Uid >= u.IDs.Size || disk.Gid >= u.IDs.Size {
		return nil // shows as nobody's whatever the mapping
	}
	if mapped.Uid != u.IDs.Base+disk.Uid || mapped.Gid != u.IDs.Base+disk.Gid {
		return fmt.Errorf("user namespace %s does not map container root to host id %d (it maps %d:%d to %d:%d)",
			u.Path, u.IDs.Base, disk.Uid, disk.Gid, mapped.Uid, mapped.Gid)
	}
	return nil
}

// mountOverlayFDs builds the overlay from descriptors only (new mount API,
// Linux 6.13): nothing but the overlay is ever attached, and no option
// string limits the number of layers.
func mountOverlayFDs(target string, lowers []int, upper, work, extra string) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("mount overlay on %s: fsopen: %w", target, err)
	}
	defer unix.Close(fsfd)
	fail := func(what string, err error) error {
		return fmt.Errorf("mount overlay on %s: %s: %w%s", target, what, err, fsLog(fsfd))
	}
	for _, fd := range lowers {
		if err := unix.FsconfigSetFd(fsfd, "lowerdir+", fd); err != nil {
			return fail("lowerdir+", err)
		}
	}
	for _, d := range []struct{ key, path string }{{"upperdir", upper}, {"workdir", work}} {
		fd, err := unix.Open(d.path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("mount overlay on %s: %w", target, err)
		}
		err = unix.FsconfigSetFd(fsfd, d.key, fd)
		unix.Close(fd)
		if err != nil {
			return fail(d.key+" "+d.path, err)
		}
	}
	if extra != "" {
		for _, o := range strings.Split(extra, ",") {
			k, v, _ := strings.Cut(o, "=")
			if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
				return fail(o, err)
			}
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fail("create", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fail("fsmount", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

// fsLog drains the messages the kernel left in a filesystem context (what
// mount(2) would have put in the kernel log).
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 512)
	for range 16 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

// mountOverlayAttached is the fallback for kernels that take overlay
// layers only as paths (idmapped layers: Linux 5.19): each tree is attached
// at dir/<i>, the overlay mounted with those paths, and the attachments
// detached again. overlayfs holds private clones of its layers, so the
// rootfs does not need them.
func mountOverlayAttached(dir, target string, lowers []int, upper, work, extra string) (err error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	var attached []string
	defer func() {
		for _, p := range attached {
			if uerr := unix.Unmount(p, unix.MNT_DETACH); uerr != nil && err == nil {
				err = fmt.Errorf("detach layer %s: %w", p, uerr)
			}
		}
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	paths := make([]string, len(lowers))
	for i, fd := range lowers {
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(p, 0o700); err != nil {
			return fmt.Errorf("mount overlay on %s: %w", target, err)
		}
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("mount overlay on %s: attach layer %d: %w", target, i, err)
		}
		attached = append(attached, p)
		paths[i] = p
	}
	return mountOverlay(target, paths, upper, work, extra)
}

// probeOverlayFDs reports whether overlayfs takes its layers as
// descriptors (FSCONFIG_SET_FD for lowerdir+, upperdir and workdir), by
// creating (not attaching) a throwaway overlay under dir.
func probeOverlayFDs(dir, extra string) bool {
	tmp, err := os.MkdirTemp(dir, ".probe-fd-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(tmp)
	for _, d := range []string{"l", "u", "w"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return false
		}
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, filepath.Join(tmp, "l"), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(tree)
	target := filepath.Join(tmp, "m")
	if err := os.Mkdir(target, 0o755); err != nil {
		return false
	}
	if err := mountOverlayFDs(target, []int{tree}, filepath.Join(tmp, "u"), filepath.Join(tmp, "w"), extra); err != nil {
		return false
	}
	_ = unmount(target)
	return true
}
