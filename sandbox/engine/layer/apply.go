package layer

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moby/go-archive"
)

// Apply extracts the uncompressed OCI layer tar r into dir, which should be
// empty, in overlay form: ".wh.<name>" becomes a 0/0 character device
// <name> and ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory.
// Owners, modes, xattrs, hard links and symlinks are kept. Entries that
// would land outside dir are refused, and symlinks in the tar are resolved
// inside dir, so a hostile tar cannot write outside it; on error dir holds
// a partial extraction the caller must remove.
//
// Apply reads r to EOF (so a hash teed from r covers every byte) and
// returns the layer's size as dockerd's overlay2 reports it: the sum of the
// sizes of the non-directory entries in dir, each hard-linked inode once.
func Apply(ctx context.Context, r io.Reader, dir string) (int64, error) {
	// A second reader of the same bytes notes the whiteouts' mtimes, which
	// Unpack does not apply to the devices it creates; with them the
	// directory tars back (Diff) to the same bytes.
	pr, pw := io.Pipe()
	whiteouts := make(chan map[string]time.Time, 1)
	go func() { whiteouts <- scanWhiteouts(pr) }()
	tee := io.TeeReader(&ctxReader{ctx: ctx, r: r}, pw)
	err := archive.Unpack(tee, dir, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat})
	if err == nil {
		_, err = io.Copy(io.Discard, tee)
	}
	pw.CloseWithError(err)
	times := <-whiteouts
	if err != nil {
		return 0, fmt.Errorf("apply layer: %w", err)
	}
	if err := setWhiteoutTimes(dir, times); err != nil {
		return 0, fmt.Errorf("apply layer: %w", err)
	}
	return DirSize(dir)
}

// scanWhiteouts reads a layer tar to the end and returns the mtime of
// each ".wh.<name>" entry, keyed by the device path it becomes.
func scanWhiteouts(r io.Reader) map[string]time.Time {
	defer io.Copy(io.Discard, r)
	out := map[string]time.Time{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return out
		}
		d, base := path.Split(path.Clean(strings.TrimLeft(hdr.Name, "/")))
		if strings.HasPrefix(base, WhiteoutPrefix) && base != WhiteoutOpaqueDir {
			out[d+strings.TrimPrefix(base, WhiteoutPrefix)] = hdr.ModTime
		}
	}
}

func setWhiteoutTimes(dir string, times map[string]time.Time) error {
	if len(times) == 0 {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for name, mtime := range times {
		fi, err := root.Lstat(filepath.FromSlash(name))
		if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			continue // replaced by a later entry
		}
		if err := root.Chtimes(filepath.FromSlash(name), mtime, mtime); err != nil {
			return err
		}
	}
	return nil
}

// DirSize is dockerd's layer size measure (pkg/directory.Size): sizes of
// everything but directories, hard-linked inodes counted once.
func DirSize(dir string) (int64, error) {
	var size int64
	seen := map[uint64]struct{}{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		s := fi.Size()
		if fi.IsDir() || s == 0 {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if _, dup := seen[st.Ino]; dup {
				return nil
			}
			seen[st.Ino] = struct{}{}
		}
		size += s
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("layer size of %s: %w", dir, err)
	}
	return size, nil
}

// ctxReader stops a long extraction when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
