package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ContainerChanges implements api.ContainerBackend: `docker diff` from the
// container's upper directory, with the rules of dockerd 20.10's native
// overlay diff: whiteouts are deletions, a path the lowers have is a
// modification (directories only when size, mode or mtime differ; an
// opaque directory too, as dockerd reports a re-created directory),
// anything else an addition, and the parent of an addition or deletion is
// a modification. The walk is depth-first in readdir order, not sorted, as
// dockerd's: on the same filesystem both list changes in the same order.
func (e *Engine) ContainerChanges(ctx context.Context, name string) ([]container.FilesystemChange, error) {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return nil, err
	}
	c.Lock()
	img, upper := c.Meta.Image, c.UpperDir()
	c.Unlock()
	lowers, err := e.shared.Store.Layers(digest.Digest(img))
	if err != nil {
		return nil, mapErr(err)
	}
	return overlayChanges(lowers, upper)
}

func overlayChanges(lowers []string, upper string) ([]container.FilesystemChange, error) {
	out := []container.FilesystemChange{}
	changedDirs := map[string]bool{}
	err := walkUnsorted(upper, func(p string, fi os.FileInfo) error {
		rel, err := filepath.Rel(upper, p)
		if err != nil {
			return err
		}
		path := "/" + rel
		if rel == "." {
			return nil
		}
		ch := container.FilesystemChange{Path: path}
		if deleted(p, fi) {
			ch.Kind = container.ChangeDelete
		} else {
			ch.Kind = container.ChangeAdd
			for _, l := range lowers {
				st, err := os.Stat(filepath.Join(l, path))
				if err != nil {
					if os.IsNotExist(err) || isNotDir(err) {
						continue
					}
					return err
				}
				if st.IsDir() && fi.IsDir() && fi.Size() == st.Size() && fi.Mode() == st.Mode() && sameFsTime(fi.ModTime(), st.ModTime()) {
					return nil
				}
				ch.Kind = container.ChangeModify
				break
			}
		}
		if fi.IsDir() {
			changedDirs[path] = true
		}
		if ch.Kind == container.ChangeAdd || ch.Kind == container.ChangeDelete {
			parent := filepath.Dir(path)
			if !changedDirs[parent] && parent != "/" {
				out = append(out, container.FilesystemChange{Path: parent, Kind: container.ChangeModify})
				changedDirs[parent] = true
			}
		}
		out = append(out, ch)
		return nil
	})
	return out, err
}

func isNotDir(err error) bool {
	pe, ok := err.(*os.PathError)
	return ok && pe.Err == syscall.ENOTDIR
}

// deleted reports an overlay whiteout (0/0 character device).
func deleted(p string, fi os.FileInfo) bool {
	if fi.Mode()&os.ModeCharDevice != 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && unix.Major(uint64(st.Rdev)) == 0 && unix.Minor(uint64(st.Rdev)) == 0 {
			return true
		}
	}
	return false
}

// walkUnsorted visits root and everything below it, parents first,
// children in the order the directory lists them. A running container
// changes its upper directory while the walk goes: every directory is
// opened from its parent's descriptor without following a symlink, so a
// directory swapped for a link to / after it was listed is skipped, never
// followed onto the host.
func walkUnsorted(root string, fn func(p string, fi os.FileInfo) error) error {
	fi, err := os.Lstat(root)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var walk func(p string, fi os.FileInfo, open func() (int, error)) error
	walk = func(p string, fi os.FileInfo, open func() (int, error)) error {
		if err := fn(p, fi); err != nil {
			if err == errSkipDir {
				return nil
			}
			return err
		}
		if !fi.IsDir() {
			return nil
		}
		fd, err := open()
		if err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP {
			return nil // gone or replaced since it was listed
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: p, Err: err}
		}
		dir := os.NewFile(uintptr(fd), p)
		defer dir.Close()
		names, err := dir.Readdirnames(-1)
		if err != nil {
			return err
		}
		for _, n := range names {
			var ust unix.Stat_t
			if err := unix.Fstatat(fd, n, &ust, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if err == unix.ENOENT {
					continue
				}
				return &os.PathError{Op: "lstat", Path: filepath.Join(p, n), Err: err}
			}
			// As os.Lstat's Sys(): a *syscall.Stat_t.
			st := syscall.Stat_t{
				Dev: ust.Dev, Ino: ust.Ino, Nlink: ust.Nlink, Mode: ust.Mode, Uid: ust.Uid, Gid: ust.Gid,
				Rdev: ust.Rdev, Size: ust.Size, Blksize: ust.Blksize, Blocks: ust.Blocks,
				Atim: syscall.Timespec(ust.Atim), Mtim: syscall.Timespec(ust.Mtim), Ctim: syscall.Timespec(ust.Ctim),
			}
			child := func() (int, error) {
				return unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
			if err := walk(filepath.Join(p, n), statInfo{n, st}, child); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(root, fi, func() (int, error) {
		return unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
}

// statInfo is an os.FileInfo from an fstatat of a directory entry.
type statInfo struct {
	name string
	st   syscall.Stat_t
}

func (s statInfo) Name() string       { return s.name }
func (s statInfo) Size() int64        { return s.st.Size }
func (s statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s statInfo) IsDir() bool        { return s.Mode().IsDir() }
func (s statInfo) Sys() any           { return &s.st }

// Mode converts as os.Lstat does.
func (s statInfo) Mode() os.FileMode { return fileMode(s.st.Mode) }

var errSkipDir = errors.New("skip")

func sameFsTime(a, b time.Time) bool {
	return a.Unix() == b.Unix() && (a.Nanosecond() == 0 || b.Nanosecond() == 0 || a.Nanosecond() == b.Nanosecond())
}
