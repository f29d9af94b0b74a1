package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/docker/docker/pkg/tarsum"
	"github.com/labd/labd/internal/safefile"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/sys/unix"
)

// buildContext is the client's tar, extracted, with the tarsum v1 hash of
// every entry (what dockerd's COPY cache keys are made of).
type buildContext struct {
	root string
	sums tarsum.FileInfoSums
}

// extractContext unpacks the context tar into root. Entries never land
// outside root: names are cleaned and parents resolved inside root, and
// symlinks are created as links, never followed.
func extractContext(r io.Reader, root string) (*buildContext, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	br := bufio.NewReader(r)
	in, err := decompress(br)
	if err != nil {
		return nil, err
	}
	ts, err := tarsum.NewTarSum(in, true, tarsum.Version1)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(ts)
	type dirTime struct {
		path  string
		mtime time.Time
	}
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read build context: %w", err)
		}
		name := path.Clean("/" + hdr.Name)
		if name == "/" {
			continue
		}
		parent, err := securejoin.SecureJoin(root, path.Dir(name))
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, err
		}
		target := filepath.Join(parent, path.Base(name))
		if err := writeEntry(tr, hdr, root, target); err != nil {
			return nil, fmt.Errorf("extract %s from build context: %w", hdr.Name, err)
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{target, hdr.ModTime})
		}
	}
	// The tarsum only completes once its reader has hit the end.
	if _, err := io.Copy(io.Discard, ts); err != nil {
		return nil, err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Chtimes(dirs[i].path, dirs[i].mtime, dirs[i].mtime)
	}
	return &buildContext{root: root, sums: ts.GetSums()}, nil
}

func decompress(br *bufio.Reader) (io.Reader, error) {
	magic, _ := br.Peek(10)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), nil
	}
	return br, nil
}

// writeEntry creates one tar entry at target, keeping mode, owner and
// times.
func writeEntry(tr io.Reader, hdr *tar.Header, root, target string) error {
	mode := os.FileMode(hdr.Mode).Perm() | os.FileMode(hdr.Mode)&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky)
	if fi, err := os.Lstat(target); err == nil {
		if !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(target); err != nil {
				return err
			}
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(target, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
	case tar.TypeReg, tar.TypeRegA:
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
	case tar.TypeLink:
		src, err := securejoin.SecureJoin(root, path.Clean("/"+hdr.Linkname))
		if err != nil {
			return err
		}
		if err := os.Link(src, target); err != nil {
			return err
		}
		return nil
	case tar.TypeFifo:
		if err := unix.Mkfifo(target, uint32(mode)); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock:
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		m := uint32(mode)
		if hdr.Typeflag == tar.TypeChar {
			m |= unix.S_IFCHR
		} else {
			m |= unix.S_IFBLK
		}
		if err := unix.Mknod(target, m, int(dev)); err != nil {
			return err
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := os.Chmod(target, mode); err != nil {
			return err
		}
	}
	return unix.Lutimes(target, []unix.Timeval{unix.NsecToTimeval(hdr.ModTime.UnixNano()), unix.NsecToTimeval(hdr.ModTime.UnixNano())})
}

// hash returns the tarsum of the entry at rel (a cleaned, relative path).
func (c *buildContext) hash(rel string) string {
	if s := c.sums.GetFile(filepath.ToSlash(rel)); s != nil {
		return s.Sum()
	}
	return rel
}

// maxDockerfile bounds the Dockerfile and the .dockerignore labd reads
// (dockerd sets none; docs/engine.md).
const maxDockerfile = 4 << 20

// readRegular reads the regular file rel of the context, resolved inside
// it as dockerd's FullPath does (symlinks followed, never out). A FIFO,
// device or socket the client sent is refused unopened: the Dockerfile
// that is /dev/zero's node would otherwise be read without end.
func (c *buildContext) readRegular(rel string, max int64) ([]byte, error) {
	return safefile.ReadFile(c.root, rel, safefile.InRoot, max)
}

// exists reports whether rel names anything in the context, resolved as
// readRegular does (a link out of it leads nowhere, not to the host).
func (c *buildContext) exists(rel string) bool {
	f, err := safefile.Open(c.root, rel, safefile.InRoot)
	if err == nil {
		f.Close()
	}
	return !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR)
}

// readDockerfile reads and parses the Dockerfile, as dockerd's
// withDockerfileFromContext does (falling back to "dockerfile"), then
// drops .dockerignore and the Dockerfile from the context if the
// .dockerignore lists them.
func (c *buildContext) readDockerfile(name string) (*parser.Result, error) {
	_, err := c.fullPath(name)
	var data []byte
	if err == nil {
		data, err = c.readRegular(name, maxDockerfile)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || isForbidden(err) {
			if name == "Dockerfile" {
				if c.exists("dockerfile") {
					return c.readDockerfile("dockerfile")
				}
			}
			// A plain error, so a 500 as dockerd 20.10 answers (an empty
			// Dockerfile, below, is its 400).
			return nil, fmt.Errorf("Cannot locate specified Dockerfile: %s", name)
		}
		// dockerd's wording for a Dockerfile it cannot read, a 500 too.
		return nil, fmt.Errorf("unexpected error reading Dockerfile: %w", err)
	}
	res, err := parseDockerfile(name, data)
	if err != nil {
		return nil, err
	}
	if err := c.removeIgnored(name); err != nil {
		return nil, err
	}
	return res, nil
}

// parseDockerfile parses the Dockerfile name holds; its errors are the
// learner's (400s).
func parseDockerfile(name string, data []byte) (*parser.Result, error) {
	if len(data) == 0 {
		return nil, invalidParam{fmt.Errorf("the Dockerfile (%s) cannot be empty", name)}
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, invalidParam{err}
	}
	return res, nil
}

func (c *buildContext) removeIgnored(dockerfile string) error {
	data, err := c.readRegular(".dockerignore", maxDockerfile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("Error reading .dockerignore: %w", err)
	}
	excludes, err := ignorefile.ReadAll(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("Error reading .dockerignore: %w", err)
	}
	pm, err := patternmatcher.New(excludes)
	if err != nil {
		return invalidParam{err}
	}
	for _, rm := range []string{".dockerignore", dockerfile} {
		if m, _ := pm.MatchesOrParentMatches(rm); m {
			if p, err := c.fullPath(rm); err == nil {
				_ = os.RemoveAll(p)
			}
		}
	}
	return nil
}

type forbiddenPath struct{ error }

func isForbidden(err error) bool {
	var f forbiddenPath
	return errors.As(err, &f)
}

// fullPath is dockerd's remotecontext.FullPath: the path inside the
// context with symlinks resolved in its scope; a path that leaves the
// context lexically is refused with dockerd's (odd) wording.
func (c *buildContext) fullPath(rel string) (string, error) {
	return scopedPath(c.root, rel)
}

func scopedPath(root, rel string) (string, error) {
	joined := filepath.Join(root, rel)
	if joined != root && !strings.HasPrefix(joined, root+string(filepath.Separator)) {
		return "", forbiddenPath{fmt.Errorf("forbidden path outside the build context: %s ()", rel)}
	}
	p, err := securejoin.SecureJoin(root, strings.TrimPrefix(joined, root))
	if err != nil {
		return "", err
	}
	return p, nil
}
