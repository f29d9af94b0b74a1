package build

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/go-archive/chrootarchive"
	"github.com/moby/sys/user"
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

// volumes makes a RUN container's anonymous volumes: one scratch
// directory per VOLUME path, filled with what the image has there
// (dockerd's populateVolumes: contents, then the directory's owner and
// mode), so RUN sees the image's files but its changes are discarded with
// the volume.
func (rw *rwLayer) volumes(paths map[string]struct{}) ([]VolumeMount, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	dests := make([]string, 0, len(paths))
	for p := range paths {
		dests = append(dests, path.Clean(p))
	}
	sort.Strings(dests)
	// The image's files are read through an overlay of the step's own
	// (still empty) upper directory; the runtime mounts its own later.
	if err := rw.mount(); err != nil {
		return nil, err
	}
	defer rw.unmount()
	var out []VolumeMount
	for i, dest := range dests {
		if !path.IsAbs(dest) {
			return nil, fmt.Errorf("volume %q: not an absolute path", dest)
		}
		src := filepath.Join(rw.dir, "volumes", strconv.Itoa(i))
		if err := os.MkdirAll(src, 0o755); err != nil {
			return nil, fmt.Errorf("volume %s: %w", dest, err)
		}
		inImage, err := securejoin.SecureJoin(rw.root, dest)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", dest, err)
		}
		fi, err := os.Stat(inImage)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("volume %s: %w", dest, err)
		case !fi.IsDir():
			return nil, fmt.Errorf("cannot mount volume over existing file, file exists %s", inImage)
		default:
			if err := chrootarchive.NewArchiver(user.IdentityMapping{}).CopyWithTar(inImage, src); err != nil {
				return nil, fmt.Errorf("volume %s: copy the image's contents: %w", dest, err)
			}
			var st unix.Stat_t
			if err := unix.Stat(inImage, &st); err != nil {
				return nil, fmt.Errorf("volume %s: %w", dest, err)
			}
			if err := os.Lchown(src, int(st.Uid), int(st.Gid)); err != nil {
				return nil, fmt.Errorf("volume %s: %w", dest, err)
			}
			if err := os.Chmod(src, fi.Mode()); err != nil {
				return nil, fmt.Errorf("volume %s: %w", dest, err)
			}
		}
		out = append(out, VolumeMount{Source: src, Destination: dest})
	}
	return out, nil
}
