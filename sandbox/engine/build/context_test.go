package build

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"golang.org/x/sys/unix"
)

// entry is one context tar entry: kind "file", "dir", "chr" (/dev/zero's
// 1,5), "fifo" or "link" (body is the target).
type entry struct{ name, kind, body string }

func contextTar(t *testing.T, entries []entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, ModTime: time.Unix(1e9, 0)}
		switch e.kind {
		case "file":
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case "dir":
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case "chr":
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 5
		case "fifo":
			h.Typeflag = tar.TypeFifo
		case "link":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.body
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.kind == "file" {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return &buf
}

// within runs f and fails the test if it has not returned in 10 s (a
// read of a FIFO or of /dev/zero does not return).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocked for 10 s", what)
	}
}

// TestDockerfileNotRegular: a Dockerfile or .dockerignore that is not a
// regular file is refused without being opened, in dockerd's wording for
// a Dockerfile it cannot read; links resolve inside the context only.
func TestDockerfileNotRegular(t *testing.T) {
	const df = "FROM busybox\n"
	big := strings.Repeat("# comment\n", maxDockerfile/10+1)
	for _, tc := range []struct {
		name     string
		entries  []entry
		dfName   string
		want     string // the error; "" for success
		needRoot bool
	}{
		{"regular", []entry{{"Dockerfile", "file", df}}, "", "", false},
		{"link inside", []entry{{"real", "file", df}, {"Dockerfile", "link", "real"}}, "", "", false},
		{"absolute link inside", []entry{{"sub/real", "file", df}, {"Dockerfile", "link", "/sub/real"}}, "", "", false},
		{"device", []entry{{"Dockerfile", "chr", ""}}, "",
			"unexpected error reading Dockerfile: open Dockerfile: not a regular file (character device)", true},
		{"fifo", []entry{{"Dockerfile", "fifo", ""}}, "",
			"unexpected error reading Dockerfile: open Dockerfile: not a regular file (FIFO)", false},
		{"fifo by -f", []entry{{"sub/Dockerfile.dev", "fifo", ""}}, "sub/Dockerfile.dev",
			"unexpected error reading Dockerfile: open sub/Dockerfile.dev: not a regular file (FIFO)", false},
		{"link to fifo", []entry{{"f", "fifo", ""}, {"Dockerfile", "link", "f"}}, "",
			"unexpected error reading Dockerfile: open Dockerfile: not a regular file (FIFO)", false},
		{"lowercase fallback fifo", []entry{{"dockerfile", "fifo", ""}}, "",
			"unexpected error reading Dockerfile: open dockerfile: not a regular file (FIFO)", false},
		{"directory", []entry{{"Dockerfile", "dir", ""}}, "",
			"unexpected error reading Dockerfile: open Dockerfile: not a regular file (directory)", false},
		{"too large", []entry{{"Dockerfile", "file", big}}, "",
			"unexpected error reading Dockerfile: read Dockerfile: file exceeds 4 MiB", false},
		{"empty", []entry{{"Dockerfile", "file", ""}}, "", "the Dockerfile (Dockerfile) cannot be empty", false},
		// A link out of the context reads nothing of the host's, and
		// whether its host target exists changes nothing.
		{"link to host file", []entry{{"Dockerfile", "link", "/etc/hostname"}}, "", "Cannot locate specified Dockerfile: Dockerfile", false},
		{"link up to host file", []entry{{"Dockerfile", "link", "../../../../../../etc/hostname"}}, "", "Cannot locate specified Dockerfile: Dockerfile", false},
		{"fallback link to host file", []entry{{"dockerfile", "link", "/etc/hostname"}}, "", "Cannot locate specified Dockerfile: Dockerfile", false},
		{"fallback link to missing host file", []entry{{"dockerfile", "link", "/no/such/file"}}, "", "Cannot locate specified Dockerfile: Dockerfile", false},

		{"dockerignore device", []entry{{"Dockerfile", "file", df}, {".dockerignore", "chr", ""}}, "",
			"Error reading .dockerignore: open .dockerignore: not a regular file (character device)", true},
		{"dockerignore fifo", []entry{{"Dockerfile", "file", df}, {".dockerignore", "fifo", ""}}, "",
			"Error reading .dockerignore: open .dockerignore: not a regular file (FIFO)", false},
		{"dockerignore too large", []entry{{"Dockerfile", "file", df}, {".dockerignore", "file", big}}, "",
			"Error reading .dockerignore: read .dockerignore: file exceeds 4 MiB", false},
		{"dockerignore link to host file", []entry{{"Dockerfile", "file", df}, {".dockerignore", "link", "/etc/hostname"}}, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needRoot {
				testenv.Root(t, "the context's device node is made with mknod")
			}
			c, err := extractContext(contextTar(t, tc.entries), filepath.Join(t.TempDir(), "ctx"))
			if err != nil {
				t.Fatal(err)
			}
			name := tc.dfName
			if name == "" {
				name = "Dockerfile"
			}
			within(t, "readDockerfile", func() { _, err = c.readDockerfile(name) })
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("readDockerfile = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCopySpecialFiles: COPY and ADD copy a FIFO or device node of the
// context as such (mknod), never reading it; dockerd reads a single one
// (blocking on a FIFO), docs/engine.md.
func TestCopySpecialFiles(t *testing.T) {
	entries := []entry{{"fifo", "fifo", ""}, {"d/fifo", "fifo", ""}, {"d/f", "file", "x"}}
	if os.Geteuid() == 0 {
		entries = append(entries, entry{"dev", "chr", ""}, entry{"d/dev", "chr", ""})
	}
	c, err := extractContext(contextTar(t, entries), filepath.Join(t.TempDir(), "ctx"))
	if err != nil {
		t.Fatal(err)
	}
	src := &copySource{root: c.root, ctx: c}
	for _, tc := range []struct {
		path, dest string
		add        bool
		check      map[string]uint32 // path in the destination: file type
		needRoot   bool
	}{
		{"fifo", "/fifo-copy", false, map[string]uint32{"fifo-copy": unix.S_IFIFO}, false},
		{"fifo", "/fifo-add", true, map[string]uint32{"fifo-add": unix.S_IFIFO}, false},
		{"d", "/d", true, map[string]uint32{"d/fifo": unix.S_IFIFO, "d/f": unix.S_IFREG}, false},
		{"dev", "/dev-copy", false, map[string]uint32{"dev-copy": unix.S_IFCHR}, true},
		{"dev", "/dev-add", true, map[string]uint32{"dev-add": unix.S_IFCHR}, true},
		{"d", "/d2", false, map[string]uint32{"d2/dev": unix.S_IFCHR, "d2/fifo": unix.S_IFIFO}, true},
	} {
		name := "COPY " + tc.path + " " + tc.dest
		if tc.add {
			name = "ADD " + tc.path + " " + tc.dest
		}
		t.Run(name, func(t *testing.T) {
			if tc.needRoot {
				testenv.Root(t, "the context's device node is made with mknod")
			}
			rootfs := t.TempDir()
			var err error
			within(t, name, func() { err = copyOne(rootfs, tc.dest, copyInfo{src: src, path: tc.path}, tc.add, &identity{0, 0}) })
			if err != nil {
				t.Fatal(err)
			}
			for p, typ := range tc.check {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(rootfs, p), &st); err != nil {
					t.Fatal(err)
				}
				if st.Mode&unix.S_IFMT != typ {
					t.Errorf("%s: mode %o, want type %o", p, st.Mode, typ)
				}
				if typ == unix.S_IFCHR && st.Rdev != unix.Mkdev(1, 5) {
					t.Errorf("%s: device %d:%d, want 1:5", p, unix.Major(st.Rdev), unix.Minor(st.Rdev))
				}
			}
		})
	}
}

// TestChownLooksUpRegularFilesOnly: COPY --chown reads the image's
// /etc/passwd and /etc/group only when a name needs it, and only a
// regular file.
func TestChownLooksUpRegularFilesOnly(t *testing.T) {
	rootfs := t.TempDir()
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	if err := unix.Mkfifo(filepath.Join(rootfs, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte("staff:x:50:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		chown, want string // want: "uid:gid" or the error
	}{
		{"1:2", "1:2"},
		{"7:staff", "7:50"},
		{"nobody", "can't find uid for user nobody: open /etc/passwd: not a regular file (FIFO)"},
		{"1:nogroup", "can't find gid for group nogroup: no such group: nogroup"},
	} {
		var id *identity
		var err error
		within(t, "parseChown "+tc.chown, func() { id, err = parseChown(tc.chown, rootfs) })
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = fmt.Sprintf("%d:%d", id.uid, id.gid)
		}
		if got != tc.want {
			t.Errorf("parseChown(%q) = %q, want %q", tc.chown, got, tc.want)
		}
	}
}
