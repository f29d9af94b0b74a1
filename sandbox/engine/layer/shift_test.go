package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/labd/labd/internal/testenv"
)

var testShift = IDShift{Base: 100196608, Size: 65536}

// capV3 is capV2 as the kernel stores it when root of a user namespace
// whose root is host id root sets it.
func capV3(root uint32, effective bool) []byte {
	v := make([]byte, capSizeV3)
	copy(v, capV2)
	magic := uint32(capRevision3)
	if effective {
		magic |= capEffective
	}
	binary.LittleEndian.PutUint32(v, magic)
	binary.LittleEndian.PutUint32(v[capSizeV2:], root)
	return v
}

func TestShiftCapability(t *testing.T) {
	noEff := append([]byte(nil), capV2...)
	binary.LittleEndian.PutUint32(noEff, capRevision2)
	nested := capV3(5, true)
	for _, tc := range []struct {
		name    string
		in, out []byte
		err     string
	}{
		{"v2 kept", capV2, capV2, ""},
		{"v3 of container root is v2", capV3(testShift.Base, true), capV2, ""},
		{"v3 without effective", capV3(testShift.Base, false), noEff, ""},
		{"v3 of a nested namespace's root", capV3(testShift.Base+5, true), nested, ""},
		{"v3 of host root", capV3(0, true), nil, "file capability for root id 0, outside the container's host ids 100196608-100262143"},
		{"v3 past the range", capV3(testShift.Base+testShift.Size, true), nil, "root id 100262144, outside"},
		{"unknown layout kept", []byte{1, 2, 3}, []byte{1, 2, 3}, ""},
	} {
		got, err := testShift.capability(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.out) {
			t.Errorf("%s: %x, %v; want %x", tc.name, got, err, tc.out)
		}
	}
}

func TestShiftOwner(t *testing.T) {
	for _, tc := range []struct {
		id       uint32
		whiteout bool
		want     uint32
		err      bool
	}{
		{testShift.Base, false, 0, false},
		{testShift.Base + 1000, false, 1000, false},
		{testShift.Base + testShift.Size - 1, false, 65535, false},
		{testShift.Base + testShift.Size, false, 0, true},
		{testShift.Base - 1, false, 0, true},
		{0, false, 0, true},
		{0, true, 0, false},                  // overlay's own whiteout
		{testShift.Base + 7, true, 7, false}, // one the container made
		{65534, true, 0, true},
	} {
		got, err := testShift.toContainer(tc.id, tc.whiteout)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("toContainer(%d, whiteout %v) = %d, %v; want %d (error %v)", tc.id, tc.whiteout, got, err, tc.want, tc.err)
		}
	}
}

// shiftInPlace turns an upper directory into the one a container in a
// user namespace with shift would have left: every owner moved by the
// base (overlay's own whiteouts excepted), file capabilities as the
// kernel stores them there; modes and mtimes kept.
func shiftInPlace(t *testing.T, root string, s IDShift) {
	t.Helper()
	done := map[uint64]bool{} // hard links: shift each inode once
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0 || done[st.Ino] {
			return nil
		}
		done[st.Ino] = true
		capability, _ := lgetxattr(p, "security.capability")
		if err := os.Lchown(p, int(s.Base+st.Uid), int(s.Base+st.Gid)); err != nil {
			return err
		}
		// chown drops capabilities and set-id bits.
		if capability != nil {
			if err := unix.Lsetxattr(p, "security.capability", capV3(s.Base, true), 0); err != nil {
				return err
			}
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return unix.Chmod(p, uint32(st.Mode&0o7777))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDiffShiftedSameBytes: the tar of a shifted upper is byte for byte
// the tar of the same change without a user namespace.
func TestDiffShiftedSameBytes(t *testing.T) {
	testenv.Root(t, "chown, trusted xattrs")
	ctx := context.Background()
	upper := makeUpper(t)
	var plain bytes.Buffer
	wantID, _, err := Diff(ctx, upper, &plain)
	if err != nil {
		t.Fatal(err)
	}
	shiftInPlace(t, upper, testShift)
	if v, _ := lgetxattr(filepath.Join(upper, "a/tool"), "security.capability"); !bytes.Equal(v, capV3(testShift.Base, true)) {
		t.Fatalf("test setup: a/tool capability on disk is %x", v)
	}
	var shifted bytes.Buffer
	gotID, n, err := DiffShifted(ctx, upper, &shifted, testShift)
	if err != nil {
		t.Fatal(err)
	}
	if gotID != wantID || n != int64(shifted.Len()) || !bytes.Equal(shifted.Bytes(), plain.Bytes()) {
		t.Errorf("DiffShifted = %s (%d bytes), want %s: tars differ\n got: %s\nwant: %s", gotID, n, wantID, headers(t, shifted.Bytes()), headers(t, plain.Bytes()))
	}
	// The plain Diff of the shifted directory carries the host ids: what
	// DiffShifted exists to avoid.
	if id, _, err := Diff(ctx, upper, io.Discard); err != nil || id == wantID {
		t.Errorf("Diff of the shifted upper = %s, %v; want another digest", id, err)
	}
}

func headers(t *testing.T, b []byte) string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		out = append(out, fmt.Sprintf("%s %d:%d %s:%s %x", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.PAXRecords["SCHILY.xattr.security.capability"]))
	}
	return strings.Join(out, ", ")
}

func TestDiffShiftedRefusals(t *testing.T) {
	testenv.Root(t, "chown")
	b := int(testShift.Base)
	for _, tc := range []struct {
		name string
		make func(t *testing.T, d string) error
		want string
	}{
		{"file from the host", func(t *testing.T, d string) error {
			return os.WriteFile(filepath.Join(d, "f"), nil, 0o644)
		}, "f: owner 0 is outside the container's host ids 100196608-100262143"},
		{"owner past the range", func(t *testing.T, d string) error {
			p := filepath.Join(d, "f")
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return err
			}
			return os.Lchown(p, b+65536, b)
		}, "f: owner 100262144 is outside"},
		{"group outside", func(t *testing.T, d string) error {
			p := filepath.Join(d, "f")
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return err
			}
			return os.Lchown(p, b, 50)
		}, "f: group owner 50 is outside"},
		{"capability for another root", func(t *testing.T, d string) error {
			p := filepath.Join(d, "f")
			if err := os.WriteFile(p, nil, 0o755); err != nil {
				return err
			}
			if err := os.Lchown(p, b, b); err != nil {
				return err
			}
			return unix.Lsetxattr(p, "security.capability", capV3(testShift.Base+testShift.Size, true), 0)
		}, "f: file capability for root id 100262144"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if err := tc.make(t, d); err != nil {
				t.Fatal(err)
			}
			_, _, err := DiffShifted(context.Background(), d, io.Discard, testShift)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DiffShifted = %v, want %q", err, tc.want)
			}
		})
	}
	for _, s := range []IDShift{{Base: 1, Size: 0}, {Base: 1<<32 - 1, Size: 2}} {
		if _, _, err := DiffShifted(context.Background(), t.TempDir(), io.Discard, s); err == nil || !strings.Contains(err.Error(), "invalid id shift") {
			t.Errorf("DiffShifted with %+v = %v", s, err)
		}
	}
}
