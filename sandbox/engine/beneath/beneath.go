// Package beneath resolves paths a learner influences inside a root
// directory at the moment they are used, and pins what they named.
//
// A path checked once and used later by its string is a race a learner
// wins: swap a directory for a symlink to / between `docker create` and
// `docker start` and the mount lands on the host's root. Here every
// resolution is one openat2 call with RESOLVE_IN_ROOT (an absolute or ..
// symlink stays inside the root, as it would inside a container whose
// root is that directory) and no magic links; the result is an O_PATH
// descriptor, and Pin clones the mount tree it names (open_tree) onto a
// mount point the caller owns. What a container or a copy then uses is
// that pinned tree: a later swap of any path component changes nothing.
package beneath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// resolve is the openat2 resolution for a root: never out of it, never
// through /proc magic links, and (except for the host's own root, where
// mounts are ordinary) never onto another filesystem mounted below it.
func resolve(root string) uint64 {
	r := uint64(unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS)
	if filepath.Clean(root) != "/" {
		r |= unix.RESOLVE_NO_XDEV
	}
	return r
}

// Open resolves rel inside root and returns an O_PATH descriptor of what
// it names (the final component followed, as a bind mount follows it).
func Open(root, rel string) (*os.File, error) {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	fd, err := openat2(rootFD, cleanRel(rel), unix.O_PATH|unix.O_CLOEXEC, resolve(root))
	if err != nil {
		return nil, &os.PathError{Op: "resolve", Path: filepath.Join(root, cleanRel(rel)), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, cleanRel(rel))), nil
}

// openat2 retries where the kernel asks to (a rename raced the lookup).
func openat2(dirfd int, rel string, flags int, res uint64) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags), Resolve: res}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dirfd, rel, &how)
		if (err == unix.EAGAIN || err == unix.EINTR) && i < 64 {
			continue
		}
		return fd, err
	}
}

// cleanRel makes rel relative: "/a/b", "a/b" and "./a/b" all name a/b in
// the root; "" and "/" name the root itself.
func cleanRel(rel string) string {
	rel = strings.TrimLeft(filepath.Clean("/"+rel), "/")
	if rel == "" {
		return "."
	}
	return rel
}

// MkdirAll creates rel inside root as directories (mode 0755, owned by
// the caller) where missing, each step resolved beneath root: a symlink
// on the way is followed only inside it. It is what dockerd does for a
// missing `-v` source.
func MkdirAll(root, rel string) error {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open root %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	cur := "."
	for _, el := range strings.Split(cleanRel(rel), "/") {
		if el == "." {
			continue
		}
		next := filepath.Join(cur, el)
		fd, err := openat2(rootFD, next, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, resolve(root))
		if err == nil {
			unix.Close(fd)
			cur = next
			continue
		}
		if err != unix.ENOENT {
			return &os.PathError{Op: "mkdir", Path: filepath.Join(root, next), Err: err}
		}
		parent, err := openat2(rootFD, cur, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, resolve(root))
		if err != nil {
			return &os.PathError{Op: "mkdir", Path: filepath.Join(root, cur), Err: err}
		}
		err = unix.Mkdirat(parent, el, 0o755)
		unix.Close(parent)
		if err != nil && err != unix.EEXIST {
			return &os.PathError{Op: "mkdir", Path: filepath.Join(root, next), Err: err}
		}
		cur = next
	}
	return nil
}

// Pin resolves rel inside root and attaches a clone of what it names
// (with everything mounted below it, read-only if asked) at target, which
// Pin creates: a directory, or an empty file for a file. The caller owns
// target's parent and unmounts target with Unpin. Only directories and
// regular files can be pinned: a device node, FIFO or socket named by a
// learner is refused.
func Pin(root, rel, target string) error {
	return PinWith(root, rel, target, PinOptions{})
}

// PinOptions change what Pin attaches.
type PinOptions struct {
	// IDMap, a user namespace, makes the pinned tree an idmapped mount
	// with that namespace's mapping: a process in the namespace sees the
	// on-disk owners as its own ids (on-disk 0 is its root) and what it
	// creates is stored with its ids, so the files keep container ids on
	// disk whatever host range the namespace maps them to. The filesystem
	// must support idmapped mounts (ext4, xfs, btrfs, tmpfs do).
	IDMap *os.File
}

// PinWith is Pin with options.
func PinWith(root, rel, target string, o PinOptions) error {
	f, err := Open(root, rel)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR, unix.S_IFREG:
	default:
		return fmt.Errorf("%s is not a directory or a regular file", f.Name())
	}
	tree, err := unix.OpenTree(int(f.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("clone mount of %s: %w", f.Name(), err)
	}
	defer unix.Close(tree)
	if o.IDMap != nil {
		// Only a detached tree can get an idmapping: before move_mount.
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(o.IDMap.Fd())}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			if err == unix.EINVAL {
				return fmt.Errorf("idmap %s: the filesystem (or one mounted below it) does not support idmapped mounts: %w", f.Name(), err)
			}
			return fmt.Errorf("idmap %s: %w", f.Name(), err)
		}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	} else {
		tf, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		tf.Close()
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach clone of %s at %s: %w", f.Name(), target, err)
	}
	return nil
}

// Unpin detaches what Pin attached at target (lazily: a copy may still
// hold it) and removes target. A target that was never pinned is just
// removed.
func Unpin(target string) error {
	err := unix.Unmount(target, unix.MNT_DETACH)
	if err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
