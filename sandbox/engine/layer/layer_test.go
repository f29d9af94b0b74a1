package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// capV2 is a valid VFS_CAP_REVISION_2 security.capability value
// (cap_net_bind_service, effective).
var capV2 = []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// makeUpper builds an overlay upper directory with every kind of entry a
// container step can leave behind.
func makeUpper(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(d, "a/b"), 0o755))
	must(os.WriteFile(filepath.Join(d, "a/b/c"), []byte("hi\n"), 0o640))
	must(os.Link(filepath.Join(d, "a/b/c"), filepath.Join(d, "a/b/hl")))
	must(os.Symlink("/a/b/c", filepath.Join(d, "a/sym")))
	must(os.Lchown(filepath.Join(d, "a/b/c"), 1000, 1001))
	must(os.WriteFile(filepath.Join(d, "a/tool"), []byte("#!/bin/sh\n"), 0o4755))
	must(unix.Lsetxattr(filepath.Join(d, "a/tool"), "security.capability", capV2, 0))
	must(unix.Chmod(filepath.Join(d, "a/tool"), 0o4755))
	must(os.MkdirAll(filepath.Join(d, "d1/sub"), 0o750))
	must(unix.Mknod(filepath.Join(d, "d1/gone"), unix.S_IFCHR, 0))
	must(unix.Lsetxattr(filepath.Join(d, "d1/sub"), opaqueXattr, []byte("y"), 0))
	must(os.WriteFile(filepath.Join(d, "d1/sub/new"), []byte("z\n"), 0o644))
	must(os.Mkdir(filepath.Join(d, "tmp"), 0o777))
	must(unix.Chmod(filepath.Join(d, "tmp"), 0o1777))
	return d
}

type entry struct {
	Name, Type, Link, Content string
	Mode                      fs.FileMode
	UID, GID                  uint32
	Rdev                      uint64
	Opaque, Cap               string
	Nlink                     uint64
}

// snapshot describes a tree for comparison (mtimes left out: the tar
// keeps whole seconds only).
func snapshot(t *testing.T, root string) []entry {
	t.Helper()
	var out []entry
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{Name: rel, Mode: fi.Mode(), UID: st.Uid, GID: st.Gid, Nlink: uint64(st.Nlink)}
		switch {
		case fi.Mode().IsRegular():
			e.Type = "file"
			b, _ := os.ReadFile(p)
			e.Content = string(b)
		case fi.IsDir():
			e.Type = "dir"
			e.Nlink = 0
			v, _ := lgetxattr(p, opaqueXattr)
			e.Opaque = string(v)
		case fi.Mode()&os.ModeSymlink != 0:
			e.Type = "symlink"
			e.Link, _ = os.Readlink(p)
		case fi.Mode()&os.ModeCharDevice != 0:
			e.Type = "char"
			e.Rdev = st.Rdev
		}
		if v, _ := lgetxattr(p, "security.capability"); v != nil {
			e.Cap = fmt.Sprintf("%x", v)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDiffApplyRoundTrip(t *testing.T) {
	ctx := context.Background()
	upper := makeUpper(t)
	var tarBuf bytes.Buffer
	diffID, n, err := Diff(ctx, upper, &tarBuf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(tarBuf.Len()) {
		t.Errorf("Diff size = %d, tar is %d bytes", n, tarBuf.Len())
	}
	dst := t.TempDir()
	size, err := Apply(ctx, bytes.NewReader(tarBuf.Bytes()), dst)
	if err != nil {
		t.Fatal(err)
	}
	// dockerd's measure: "hi\n" once (hard link), the symlink target
	// "/a/b/c", the tool script, "z\n".
	if want := int64(3 + 6 + 10 + 2); size != want {
		t.Errorf("Apply size = %d, want %d", size, want)
	}
	got, want := snapshot(t, dst), snapshot(t, upper)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("applied tree differs\n got: %v\nwant: %v", got, want)
	}
	// The extracted directory is the same upper directory again.
	diffID2, _, err := Diff(ctx, dst, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if diffID2 != diffID {
		t.Errorf("Diff(Apply(Diff(x))) = %s, want %s", diffID2, diffID)
	}
}

// TestDiffHeaders checks the fields dockerd 20.10 writes (observed in a
// docker save of a build on this kind of machine).
func TestDiffHeaders(t *testing.T) {
	upper := makeUpper(t)
	var buf bytes.Buffer
	if _, _, err := Diff(context.Background(), upper, &buf); err != nil {
		t.Fatal(err)
	}
	type h struct {
		typ  byte
		mode int64
		link string
		uid  int
	}
	got := map[string]h{}
	var order []string
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, hdr.Name)
		got[hdr.Name] = h{hdr.Typeflag, hdr.Mode, hdr.Linkname, hdr.Uid}
		if hdr.Name == "a/tool" && hdr.PAXRecords["SCHILY.xattr.security.capability"] != string(capV2) {
			t.Errorf("a/tool: capability xattr missing: %v", hdr.PAXRecords)
		}
		if hdr.Uid == 0 && hdr.Uname != "root" {
			t.Errorf("%s: uname %q, want root", hdr.Name, hdr.Uname)
		}
	}
	wantOrder := []string{"a/", "a/b/", "a/b/c", "a/b/hl", "a/sym", "a/tool", "d1/", "d1/.wh.gone", "d1/sub/", "d1/sub/.wh..wh..opq", "d1/sub/new", "tmp/"}
	if strings.Join(order, " ") != strings.Join(wantOrder, " ") {
		t.Errorf("entries = %v, want %v", order, wantOrder)
	}
	want := map[string]h{
		"a/":                  {tar.TypeDir, 0o40755, "", 0},
		"a/b/c":               {tar.TypeReg, 0o100640, "", 1000},
		"a/b/hl":              {tar.TypeLink, 0o100640, "a/b/c", 1000},
		"a/sym":               {tar.TypeSymlink, 0o120777, "/a/b/c", 0},
		"a/tool":              {tar.TypeReg, 0o104755, "", 0},
		"d1/.wh.gone":         {tar.TypeReg, 0o600, "", 0},
		"d1/sub/":             {tar.TypeDir, 0o40750, "", 0},
		"d1/sub/.wh..wh..opq": {tar.TypeReg, 0o750, "", 0},
		"tmp/":                {tar.TypeDir, 0o41777, "", 0},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: header %+v, want %+v", name, got[name], w)
		}
	}
}

func TestDiffEmpty(t *testing.T) {
	d, _, err := Diff(context.Background(), t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d != "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef" {
		t.Errorf("empty diff = %s, want the empty tar digest", d)
	}
}

type tentry struct {
	name, link, body string
	typ              byte
}

func buildTar(t *testing.T, entries []tentry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestApplyHostile(t *testing.T) {
	tests := []struct {
		name    string
		entries func(outside string) []tentry
	}{
		{"dotdot name", func(string) []tentry {
			return []tentry{{name: "../pwned", body: "x", typ: tar.TypeReg}}
		}},
		{"dotdot inside name", func(string) []tentry {
			return []tentry{{name: "a/../../pwned", body: "x", typ: tar.TypeReg}}
		}},
		{"absolute symlink then write through it", func(outside string) []tentry {
			return []tentry{{name: "evil", link: outside, typ: tar.TypeSymlink}, {name: "evil/pwned", body: "x", typ: tar.TypeReg}}
		}},
		{"relative symlink escaping then write", func(string) []tentry {
			return []tentry{{name: "evil", link: "../../../../../../..", typ: tar.TypeSymlink}, {name: "evil/pwned", body: "x", typ: tar.TypeReg}}
		}},
		{"hardlink outside", func(outside string) []tentry {
			return []tentry{{name: "h", link: "../outside/target", typ: tar.TypeLink}}
		}},
		{"symlinked dir then whiteout through it", func(outside string) []tentry {
			return []tentry{{name: "evil", link: outside, typ: tar.TypeSymlink}, {name: "evil/.wh.target", typ: tar.TypeReg}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			dst := filepath.Join(parent, "layer")
			for _, d := range []string{outside, dst} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "target"), []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Apply(context.Background(), bytes.NewReader(buildTar(t, tc.entries(outside))), dst)
			// Refusing or confining are both fine; writing outside is not.
			names, _ := os.ReadDir(parent)
			if len(names) != 2 {
				t.Errorf("Apply wrote beside the layer dir: %v (err %v)", names, err)
			}
			out, _ := os.ReadDir(outside)
			if len(out) != 1 || out[0].Name() != "target" || out[0].Type() != 0 {
				t.Errorf("Apply changed the outside dir: %v (err %v)", out, err)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "target")); string(b) != "keep" {
				t.Errorf("outside target = %q", b)
			}
			if _, statErr := os.Stat("/pwned"); statErr == nil || !errors.Is(statErr, fs.ErrNotExist) {
				t.Errorf("/pwned exists")
			}
		})
	}
}

func TestApplyWhiteoutsToOverlayForm(t *testing.T) {
	data := buildTar(t, []tentry{
		{name: "d/", typ: tar.TypeDir},
		{name: "d/.wh..wh..opq", typ: tar.TypeReg},
		{name: "d/.wh.old", typ: tar.TypeReg},
		{name: "d/new", body: "n", typ: tar.TypeReg},
	})
	dst := t.TempDir()
	if _, err := Apply(context.Background(), bytes.NewReader(data), dst); err != nil {
		t.Fatal(err)
	}
	var names []string
	ents, _ := os.ReadDir(filepath.Join(dst, "d"))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "new,old" {
		t.Errorf("d holds %v, want new,old", names)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "d/old"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("d/old is not a 0/0 char device: mode %o rdev %d err %v", st.Mode, st.Rdev, err)
	}
	if v, _ := lgetxattr(filepath.Join(dst, "d"), opaqueXattr); string(v) != "y" {
		t.Errorf("d opaque xattr = %q, want y", v)
	}
}
