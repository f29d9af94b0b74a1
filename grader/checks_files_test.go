package grader

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/labs"
	"golang.org/x/sys/unix"
)

// TestWorkspaceFileKinds: file and dockerfile checks on what a learner
// can leave in the workspace. Whatever is not a regular file fails the
// check at once, naming the file, and is never opened: a FIFO would block
// the grader, the host's /dev/zero would feed it without end.
func TestWorkspaceFileKinds(t *testing.T) {
	ws := t.TempDir()
	outside := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(ws, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("hello.txt", "Hello, shell\n")
	write("Dockerfile", "FROM busybox\nCOPY app.txt /app.txt\n")
	write("big.txt", strings.Repeat("x", maxFileRead)+"Hello")
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("Hello, secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"fifo.txt", "fifo-df/Dockerfile"} {
		os.MkdirAll(filepath.Dir(filepath.Join(ws, p)), 0o755)
		if err := unix.Mkfifo(filepath.Join(ws, p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("unix", filepath.Join(ws, "sock.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Mkdir(filepath.Join(ws, "folder"), 0o755)
	os.Mkdir(filepath.Join(ws, "big-df"), 0o755)
	if err := os.WriteFile(filepath.Join(ws, "big-df/Dockerfile"), []byte("FROM busybox\n"+strings.Repeat("# x\n", maxFileRead/4)), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"link-in.txt":   "hello.txt",
		"link-fifo.txt": "fifo.txt",
		"link-out.txt":  filepath.Join(outside, "secret"),
		"rel-out.txt":   "../" + filepath.Base(outside) + "/secret",
	} {
		if err := os.Symlink(target, filepath.Join(ws, link)); err != nil {
			t.Fatal(err)
		}
	}
	root := os.Geteuid() == 0
	if root {
		os.Mkdir(filepath.Join(ws, "zero-df"), 0o755)
		for _, p := range []string{"zero.txt", "zero-df/Dockerfile"} {
			if err := unix.Mknod(filepath.Join(ws, p), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))); err != nil {
				t.Fatal(err)
			}
		}
	}

	type spec = map[string]any
	const notRegular = "is not a regular file (it is a "
	for _, tc := range []struct {
		name     string
		kind     string
		spec     spec
		pass     bool
		msg      string // part of the failure message
		needRoot bool
	}{
		{"regular", "file", spec{"path": "hello.txt", "contains": "Hello, shell"}, true, "", false},
		{"regular exists", "file", spec{"path": "hello.txt"}, true, "", false},
		{"missing", "file", spec{"path": "nope.txt"}, false, "There is no file nope.txt", false},
		{"missing exists false", "file", spec{"path": "nope.txt", "exists": false}, true, "", false},
		{"below a file", "file", spec{"path": "hello.txt/x"}, false, "There is no file hello.txt/x", false},
		{"symlink inside", "file", spec{"path": "link-in.txt", "contains": "Hello"}, true, "", false},
		{"symlink out", "file", spec{"path": "link-out.txt", "contains": "Hello"}, false, "There is no file link-out.txt", false},
		{"relative symlink out", "file", spec{"path": "rel-out.txt", "contains": "Hello"}, false, "There is no file rel-out.txt", false},
		{"dotdot", "file", spec{"path": "../" + filepath.Base(outside) + "/secret"}, false, "There is no file", false},
		{"folder", "file", spec{"path": "folder"}, false, "folder is a folder, not a file", false},
		{"folder exists false", "file", spec{"path": "folder", "exists": false}, true, "", false},
		{"fifo contains", "file", spec{"path": "fifo.txt", "contains": "x"}, false, "fifo.txt " + notRegular + "FIFO)", false},
		{"fifo exists", "file", spec{"path": "fifo.txt"}, false, "fifo.txt " + notRegular + "FIFO)", false},
		{"fifo exists false", "file", spec{"path": "fifo.txt", "exists": false}, false, "fifo.txt should not exist", false},
		{"symlink to fifo", "file", spec{"path": "link-fifo.txt", "matches": "x"}, false, "link-fifo.txt " + notRegular + "FIFO)", false},
		{"socket", "file", spec{"path": "sock.txt", "contains": "x"}, false, "sock.txt " + notRegular + "socket)", false},
		{"device", "file", spec{"path": "zero.txt", "contains": "x"}, false, "zero.txt " + notRegular + "character device)", true},
		{"too large", "file", spec{"path": "big.txt", "contains": "Hello"}, false, "big.txt is larger than 1 MiB", false},
		{"too large exists", "file", spec{"path": "big.txt"}, true, "", false},
		{"dockerfile", "dockerfile", spec{"from": "busybox"}, true, "", false},
		{"dockerfile fifo", "dockerfile", spec{"path": "fifo-df/Dockerfile"}, false, "fifo-df/Dockerfile " + notRegular + "FIFO)", false},
		{"dockerfile device", "dockerfile", spec{"path": "zero-df/Dockerfile"}, false, "zero-df/Dockerfile " + notRegular + "character device)", true},
		{"dockerfile too large", "dockerfile", spec{"path": "big-df/Dockerfile"}, false, "big-df/Dockerfile is larger than 1 MiB", false},
		{"dockerfile missing", "dockerfile", spec{"path": "nope/Dockerfile"}, false, "There is no nope/Dockerfile", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needRoot && !root {
				testenv.Root(t, "mknod makes the device node")
			}
			type res struct {
				o   outcome
				err error
			}
			done := make(chan res, 1)
			fields := spec{"kind": tc.kind}
			for k, v := range tc.spec {
				fields[k] = v
			}
			c, err := labs.CheckOf(fields)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				o, _, err := run(context.Background(), &probe{env: &Env{Workspace: ws}}, c.Spec)
				done <- res{o, err}
			}()
			var r res
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the check blocked for 10 s")
			}
			if r.err != nil {
				t.Fatalf("could not check: %v", r.err)
			}
			if r.o.ok != tc.pass || !strings.Contains(r.o.msg, tc.msg) {
				t.Fatalf("= passed %v, %q; want passed %v with %q", r.o.ok, r.o.msg, tc.pass, tc.msg)
			}
		})
	}
}
