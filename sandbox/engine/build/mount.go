package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// rwLayer is a step's writable layer: upper and work directories over the
// current image's layers, mounted at root when the builder itself writes
// (COPY, ADD, WORKDIR) and left to the runtime for RUN.
type rwLayer struct {
	dir         string
	lowers      []string // top first
	upper, work string
	root        string // mount point; "" when not mounted
	mounted     bool
}

func (st *stageState) newRWDirs() (*rwLayer, error) {
	var lowers []string
	if st.imageID != "" {
		var err error
		lowers, err = st.bs.b.cfg.Store.LayerDirs(st.bs.ctx, st.imageID)
		if err != nil {
			return nil, fmt.Errorf("layers of %s: %w", truncID(st.imageID), err)
		}
	}
	return newRW(st.bs.scratch, lowers)
}

func newRW(parent string, lowers []string) (*rwLayer, error) {
	dir, err := os.MkdirTemp(parent, "step-")
	if err != nil {
		return nil, err
	}
	rw := &rwLayer{dir: dir, lowers: lowers, upper: filepath.Join(dir, "upper"), work: filepath.Join(dir, "work")}
	for _, d := range []string{rw.upper, rw.work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	return rw, nil
}

func (st *stageState) newRWLayer() (*rwLayer, error) {
	rw, err := st.newRWDirs()
	if err != nil {
		return nil, err
	}
	if err := rw.mount(); err != nil {
		rw.release()
		return nil, err
	}
	return rw, nil
}

func (rw *rwLayer) mount() error {
	rw.root = filepath.Join(rw.dir, "merged")
	if err := os.Mkdir(rw.root, 0o755); err != nil {
		return err
	}
	lowers := append(make([]string, 0, len(rw.lowers)+1), rw.lowers...)
	if len(lowers) == 0 {
		// overlay needs a lower directory; scratch has none.
		empty := filepath.Join(rw.dir, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return err
		}
		lowers = append(lowers, empty)
	}
	base := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + rw.upper + ",workdir=" + rw.work
	// Like dockerd's overlay2: no index, redirects or metacopy, so the
	// upper directory is a plain diff that tars into a layer.
	err := unix.Mount("overlay", rw.root, "overlay", 0, base+",index=off,redirect_dir=off,metacopy=off")
	if errors.Is(err, unix.EINVAL) {
		err = unix.Mount("overlay", rw.root, "overlay", 0, base)
	}
	if err != nil {
		return fmt.Errorf("mount overlay for build step: %w", err)
	}
	rw.mounted = true
	return nil
}

func (rw *rwLayer) unmount() error {
	if !rw.mounted {
		return nil
	}
	if err := unix.Unmount(rw.root, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount build step: %w", err)
	}
	rw.mounted = false
	return nil
}

// release unmounts and removes everything of the step except what the
// store has already taken over.
func (rw *rwLayer) release() {
	_ = rw.unmount()
	_ = os.RemoveAll(rw.dir)
}

// mountImage mounts an image's filesystem (for COPY --from) and returns
// the root and a release function.
func (bs *buildState) mountImage(id string) (string, func(), error) {
	var lowers []string
	if id != "" {
		var err error
		lowers, err = bs.b.cfg.Store.LayerDirs(bs.ctx, id)
		if err != nil {
			return "", nil, err
		}
	}
	rw, err := newRW(bs.scratch, lowers)
	if err != nil {
		return "", nil, err
	}
	if err := rw.mount(); err != nil {
		rw.release()
		return "", nil, err
	}
	return rw.root, rw.release, nil
}
