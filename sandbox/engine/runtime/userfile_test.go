package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"golang.org/x/sys/unix"
)

// within runs f and fails the test if it has not returned in 10 s: a
// user lookup must never wait for a FIFO's writer.
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

// TestLookupUserFiles: --user resolved against an image's /etc/passwd and
// /etc/group that a learner made into something else. dockerd 20.10
// reads a device node until its scanner gives up ("unable to find user
// nobody: bufio.Scanner: token too long") and waits forever on a FIFO;
// labd refuses both unread, in the same "unable to find user" form.
func TestLookupUserFiles(t *testing.T) {
	const passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
	const group = "root:x:0:\nnogroup:x:65534:\n"
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("nobody:x:4242:4242::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type file struct{ kind, body string } // kind: file, fifo, chr (1,5), link
	for _, tc := range []struct {
		name          string
		passwd, group file
		user          string
		want          string // "uid:gid" or the error
		needRoot      bool
	}{
		{"regular", file{"file", passwd}, file{"file", group}, "nobody", "65534:65534", false},
		{"regular group", file{"file", passwd}, file{"file", group}, "0:nogroup", "0:65534", false},
		{"missing", file{}, file{}, "nobody", "unable to find user nobody: no matching entries in passwd file", false},
		{"missing numeric", file{}, file{}, "", "0:0", false},
		{"fifo passwd", file{"fifo", ""}, file{"file", group}, "nobody",
			"unable to find user nobody: open /etc/passwd: not a regular file (FIFO)", false},
		{"fifo passwd default user", file{"fifo", ""}, file{"file", group}, "",
			"unable to find user 0: open /etc/passwd: not a regular file (FIFO)", false},
		{"device passwd", file{"chr", ""}, file{"file", group}, "nobody",
			"unable to find user nobody: open /etc/passwd: not a regular file (character device)", true},
		{"fifo group", file{"file", passwd}, file{"fifo", ""}, "0:nogroup",
			"unable to find groups for spec root: open /etc/group: not a regular file (FIFO)", false},
		{"fifo group unused", file{"file", passwd}, file{"fifo", ""}, "4321", "4321:0", false},
		{"device group", file{"file", passwd}, file{"chr", ""}, "nobody",
			"unable to find groups for spec nobody: open /etc/group: not a regular file (character device)", true},
		{"too large", file{"file", passwd + strings.Repeat("#\n", maxUserFile/2)}, file{"file", group}, "nobody",
			"unable to find user nobody: read /etc/passwd: file exceeds 10 MiB", false},
		{"link inside", file{"link", "/lib/passwd"}, file{"file", group}, "nobody", "65534:65534", false},
		{"link to host file", file{"link", filepath.Join(outside, "passwd")}, file{"file", group}, "nobody",
			"unable to find user nobody: no matching entries in passwd file", false},
		{"link up and out", file{"link", "../../../../../../../.." + filepath.Join(outside, "passwd")}, file{"file", group}, "nobody",
			"unable to find user nobody: no matching entries in passwd file", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needRoot {
				testenv.Root(t, "mknod makes the device node")
			}
			rootfs := t.TempDir()
			for _, d := range []string{"etc", "lib"} {
				os.Mkdir(filepath.Join(rootfs, d), 0o755)
			}
			os.WriteFile(filepath.Join(rootfs, "lib/passwd"), []byte(passwd), 0o644)
			for name, f := range map[string]file{"etc/passwd": tc.passwd, "etc/group": tc.group} {
				p := filepath.Join(rootfs, name)
				var err error
				switch f.kind {
				case "file":
					err = os.WriteFile(p, []byte(f.body), 0o644)
				case "fifo":
					err = unix.Mkfifo(p, 0o644)
				case "chr":
					err = unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5)))
				case "link":
					err = os.Symlink(f.body, p)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			var u execUser
			var err error
			within(t, "lookupUser", func() { u, err = lookupUser(rootfs, tc.user) })
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = fmt.Sprintf("%d:%d", u.uid, u.gid)
			}
			if got != tc.want {
				t.Fatalf("lookupUser(%q) = %q, want %q", tc.user, got, tc.want)
			}
		})
	}
}

// TestRunUserFileFIFO: a container whose image has a FIFO for
// /etc/passwd does not start, and says why, at once.
func TestRunUserFileFIFO(t *testing.T) {
	needRoot(t)
	r := newTestRuntime(t)
	layer := t.TempDir()
	os.Mkdir(filepath.Join(layer, "etc"), 0o755)
	if err := unix.Mkfifo(filepath.Join(layer, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := baseSpec(t, "true")
	s.Lowers = append([]string{layer}, s.Lowers...)
	s.User = "nobody"
	var err error
	within(t, "Run", func() { _, err = r.Run(context.Background(), s) })
	want := "unable to find user nobody: open /etc/passwd: not a regular file (FIFO)"
	if err == nil || err.Error() != want {
		t.Fatalf("Run = %v, want %q", err, want)
	}
}
