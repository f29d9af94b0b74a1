package layer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Whiteout names of the OCI/AUFS layer format.
const (
	WhiteoutPrefix    = ".wh."
	WhiteoutOpaqueDir = ".wh..wh..opq"
	opaqueXattr       = "trusted.overlay.opaque"
)

// File type bits that dockerd 20.10 keeps in tar header modes
// (pkg/archive fillGo18FileTypeBits); Go's archive/tar drops them.
const (
	modeISDIR  = 0o40000
	modeISFIFO = 0o10000
	modeISREG  = 0o100000
	modeISBLK  = 0o60000
	modeISCHR  = 0o20000
	modeISLNK  = 0o120000
	modeISSOCK = 0o140000
)

// Diff writes the overlay upper directory upperDir to w as an OCI layer
// tar and returns its diffID (sha256 of the tar bytes) and the number of
// tar bytes written.
//
// The tar is what dockerd 20.10's overlay2 driver writes for the same
// directory: lexical walk order, PAX headers (USTAR when nothing needs
// PAX), mtimes truncated to seconds, file-type bits in the mode, user and
// group names looked up on the host, only the security.capability xattr,
// hard links as TypeLink to the first name seen, whiteout devices as
// ".wh.<name>" (mode 0600) and opaque directories followed by a
// ".wh..wh..opq" entry.
func Diff(ctx context.Context, upperDir string, w io.Writer) (digest.Digest, int64, error) {
	return diff(ctx, upperDir, w, nil)
}

// IDShift describes an upper directory written by a container in a user
// namespace: container uid (and gid) i is stored as host id Base+i, for
// i < Size (runtime.Spec.UserNS).
type IDShift struct {
	Base, Size uint32
}

// DiffShifted is Diff for an upper directory whose owners are shifted:
// the tar is the one the same change makes without a user namespace
// (same bytes, same diffID), so layers stay shared between sandboxes.
//
// Owners in the range become container ids (and user and group names are
// looked up from those); whiteouts that overlay made with its mounter's
// credentials (host root) stay root's; a file capability stored by the
// kernel as version 3 with the range's base as its root id becomes the
// version 2 capability the container saw (another root id in the range is
// shifted back). Any other owner or capability root id (something written
// from the host without the shift) is an error naming the file: the layer
// would carry host ids.
func DiffShifted(ctx context.Context, upperDir string, w io.Writer, shift IDShift) (digest.Digest, int64, error) {
	if shift.Size == 0 || uint64(shift.Base)+uint64(shift.Size) > 1<<32 {
		return "", 0, fmt.Errorf("diff %s: invalid id shift %d+%d", upperDir, shift.Base, shift.Size)
	}
	return diff(ctx, upperDir, w, &shift)
}

func diff(ctx context.Context, upperDir string, w io.Writer, shift *IDShift) (digest.Digest, int64, error) {
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, h)}
	tw := tar.NewWriter(cw)
	seen := map[uint64]string{}
	err := filepath.Walk(upperDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(upperDir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		return addFile(tw, p, filepath.ToSlash(rel), fi, seen, shift)
	})
	if err != nil {
		return "", 0, fmt.Errorf("diff %s: %w", upperDir, err)
	}
	if err := tw.Close(); err != nil {
		return "", 0, fmt.Errorf("diff %s: %w", upperDir, err)
	}
	return digest.NewDigest(digest.SHA256, h), cw.n, nil
}

func addFile(tw *tar.Writer, src, name string, fi os.FileInfo, seen map[uint64]string, shift *IDShift) error {
	var capability []byte
	if shift != nil {
		var err error
		if fi, err = shift.fileInfo(fi); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if capability, err = lgetxattr(src, "security.capability"); err != nil {
			return err
		}
		if capability, err = shift.capability(capability); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	var link string
	if fi.Mode()&os.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(src); err != nil {
			return err
		}
	}
	if fi.Mode()&os.ModeSocket != 0 {
		// dockerd logs and skips sockets (archive/tar cannot represent them).
		return nil
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	hdr.Format = tar.FormatPAX
	hdr.ModTime = hdr.ModTime.Truncate(time.Second)
	hdr.AccessTime = time.Time{}
	hdr.ChangeTime = time.Time{}
	hdr.Mode = typeBits(hdr.Mode, fi)
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	if shift == nil {
		capability, _ = lgetxattr(src, "security.capability")
	}
	if capability != nil {
		hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(capability)}
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() && st != nil && st.Nlink > 1 {
		if first, ok := seen[st.Ino]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			hdr.Size = 0
		} else {
			seen[st.Ino] = hdr.Name
		}
	}

	var wo *tar.Header
	if fi.Mode()&os.ModeCharDevice != 0 && hdr.Devmajor == 0 && hdr.Devminor == 0 {
		dir, base := path.Split(hdr.Name)
		hdr.Name = dir + WhiteoutPrefix + base
		hdr.Mode = 0o600
		hdr.Typeflag = tar.TypeReg
		hdr.Size = 0
	}
	if fi.IsDir() {
		if v, err := lgetxattr(src, opaqueXattr); err == nil && string(v) == "y" {
			wo = &tar.Header{
				Typeflag: tar.TypeReg,
				Mode:     hdr.Mode & int64(os.ModePerm),
				Name:     path.Join(hdr.Name, WhiteoutOpaqueDir),
				Uid:      hdr.Uid,
				Uname:    hdr.Uname,
				Gid:      hdr.Gid,
				Gname:    hdr.Gname,
			}
		}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if wo != nil {
		return tw.WriteHeader(wo)
	}
	return nil
}

func typeBits(mode int64, fi os.FileInfo) int64 {
	m := fi.Mode()
	switch {
	case m.IsRegular():
		mode |= modeISREG
	case m.IsDir():
		mode |= modeISDIR
	case m&fs.ModeSymlink != 0:
		mode |= modeISLNK
	case m&fs.ModeDevice != 0:
		if m&fs.ModeCharDevice != 0 {
			mode |= modeISCHR
		} else {
			mode |= modeISBLK
		}
	case m&fs.ModeNamedPipe != 0:
		mode |= modeISFIFO
	case m&fs.ModeSocket != 0:
		mode |= modeISSOCK
	}
	return mode
}

// lgetxattr returns nil, nil when the attribute is absent.
func lgetxattr(p, attr string) ([]byte, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(p, attr, buf)
		switch {
		case err == unix.ERANGE:
			buf = make([]byte, len(buf)*4)
			continue
		case err == unix.ENODATA || err == unix.ENOTSUP:
			return nil, nil
		case err != nil:
			return nil, err
		}
		return buf[:n], nil
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
