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
	c, err := e.ctrs.get(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	img, upper := c.meta.Image, c.upperDir()
	c.mu.Unlock()
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
// children in the order the directory lists them.
func walkUnsorted(root string, fn func(p string, fi os.FileInfo) error) error {
	fi, err := os.Lstat(root)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var walk func(p string, fi os.FileInfo) error
	walk = func(p string, fi os.FileInfo) error {
		if err := fn(p, fi); err != nil {
			if err == errSkipDir {
				return nil
			}
			return err
		}
		if !fi.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return err
		}
		for _, n := range names {
			cp := filepath.Join(p, n)
			cfi, err := os.Lstat(cp)
			if err != nil {
				if os.IsNotExist(err) {
					continue
				}
				return err
			}
			if err := walk(cp, cfi); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(root, fi)
}

var errSkipDir = errors.New("skip")

func sameFsTime(a, b time.Time) bool {
	return a.Unix() == b.Unix() && (a.Nanosecond() == 0 || b.Nanosecond() == 0 || a.Nanosecond() == b.Nanosecond())
}
