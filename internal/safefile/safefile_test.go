package safefile

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"golang.org/x/sys/unix"
)

const (
	inside = "inside\n"
	secret = "outside-secret\n"
)

// tree makes root (a file, a directory, FIFO, socket, links every way
// out) beside an outside directory holding a secret. With root, it also
// makes device nodes: /dev/zero's (1,5) and a loop device's (7,0).
func tree(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root + "/dir", outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		root + "/plain":     inside,
		root + "/dir/file":  inside,
		root + "/empty":     "",
		root + "/exact":     strings.Repeat("x", 64),
		root + "/big":       strings.Repeat("x", 65),
		outside + "/secret": secret,
	}
	for p, body := range files {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"link-in":  "dir/file",
		"abs-in":   "/dir/file",
		"out-abs":  outside + "/secret",
		"out-rel":  "../outside/secret",
		"out-dir":  outside,
		"dotdot":   "../../../../../..",
		"magic":    "/proc/self/root" + outside + "/secret",
		"loop":     "loop",
		"link-dir": "dir",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("fifo", filepath.Join(root, "link-fifo")); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(root, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if os.Geteuid() == 0 {
		mknod(t, filepath.Join(root, "zero"), unix.S_IFCHR, 1, 5)
		mknod(t, filepath.Join(root, "loopdev"), unix.S_IFBLK, 7, 0)
		if err := os.Symlink("zero", filepath.Join(root, "link-zero")); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func mknod(t *testing.T, p string, kind uint32, major, minor uint32) {
	t.Helper()
	if err := unix.Mknod(p, kind|0o644, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatal(err)
	}
}

// readFile is ReadFile that fails the test instead of blocking.
func readFile(t *testing.T, root, name string, scope Scope, max int64) ([]byte, error) {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		b, err := ReadFile(root, name, scope, max)
		done <- res{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("ReadFile(%q) blocked for 10 s", name)
		return nil, nil
	}
}

func TestReadFile(t *testing.T) {
	root, _ := tree(t)
	const max = 64
	notRegular := func(typ string) error { return &NotRegularError{Type: typ} }
	for _, tc := range []struct {
		name     string
		scope    Scope
		want     string // content when err is nil
		err      error  // matched with errors.Is, or by message for *NotRegularError
		needRoot bool   // a device node (mknod)
	}{
		{name: "plain", want: inside},
		{name: "dir/file", want: inside},
		{name: "dir/../plain", want: inside},
		{name: "link-in", want: inside},
		{name: "link-dir/file", want: inside},
		{name: "empty", want: ""},
		{name: "exact", want: strings.Repeat("x", 64)},
		{name: "big", err: ErrTooLarge},
		{name: "missing", err: fs.ErrNotExist},
		{name: "plain/below", err: unix.ENOTDIR},
		{name: "loop", err: unix.ELOOP},

		// Ways out: refused Beneath, kept inside InRoot.
		{name: "abs-in", err: ErrOutside},
		{name: "abs-in", scope: InRoot, want: inside},
		{name: "/plain", err: ErrOutside},
		{name: "/plain", scope: InRoot, want: inside},
		{name: "../outside/secret", err: ErrOutside},
		{name: "../outside/secret", scope: InRoot, err: fs.ErrNotExist},
		{name: "out-abs", err: ErrOutside},
		{name: "out-abs", scope: InRoot, err: fs.ErrNotExist},
		{name: "out-rel", err: ErrOutside},
		{name: "out-rel", scope: InRoot, err: fs.ErrNotExist},
		{name: "out-dir/secret", err: ErrOutside},
		{name: "dotdot/plain", err: ErrOutside},
		{name: "dotdot/plain", scope: InRoot, want: inside},
		{name: "magic", err: ErrOutside},
		{name: "magic", scope: InRoot, err: fs.ErrNotExist},

		// What is not a regular file is refused before it is opened.
		{name: "dir", err: notRegular("directory")},
		{name: "fifo", err: notRegular("FIFO")},
		{name: "link-fifo", err: notRegular("FIFO")},
		{name: "fifo", scope: InRoot, err: notRegular("FIFO")},
		{name: "sock", err: notRegular("socket")},
		{name: "zero", err: notRegular("character device"), needRoot: true},
		{name: "link-zero", scope: InRoot, err: notRegular("character device"), needRoot: true},
		{name: "loopdev", err: notRegular("block device"), needRoot: true},

		{name: "", err: fs.ErrInvalid},
		{name: "a\x00b", err: fs.ErrInvalid},
	} {
		scope := map[Scope]string{Beneath: "beneath", InRoot: "in-root"}[tc.scope]
		t.Run(scope+"/"+tc.name, func(t *testing.T) {
			if tc.needRoot {
				testenv.Root(t, "mknod makes the device nodes")
			}
			b, err := readFile(t, root, tc.name, tc.scope, max)
			var nr *NotRegularError
			switch {
			case tc.err == nil:
				if err != nil || string(b) != tc.want {
					t.Fatalf("= %q, %v; want %q", b, err, tc.want)
				}
			case errors.As(tc.err, &nr):
				if !errors.Is(err, ErrNotRegular) || !strings.HasSuffix(err.Error(), ": "+tc.err.Error()) {
					t.Fatalf("= %q, %v; want ...: %v", b, err, tc.err)
				}
			default:
				if !errors.Is(err, tc.err) {
					t.Fatalf("= %q, %v; want %v", b, err, tc.err)
				}
			}
			if err != nil {
				var pe *fs.PathError
				if !errors.As(err, &pe) || pe.Path != tc.name {
					t.Errorf("error %q does not name %q", err, tc.name)
				}
				if b != nil {
					t.Errorf("bytes %q returned with the error", b)
				}
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	root, _ := tree(t)
	for _, tc := range []struct {
		name string
		want string
	}{
		{"fifo", "open fifo: not a regular file (FIFO)"},
		{"big", "read big: file exceeds 64 bytes"},
		{"missing", "open missing: file does not exist"},
	} {
		if _, err := ReadFile(root, tc.name, Beneath, 64); err == nil || err.Error() != tc.want {
			t.Errorf("ReadFile(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
	if got := (&TooLargeError{Limit: 1 << 20}).Error(); got != "file exceeds 1 MiB" {
		t.Errorf("TooLargeError = %q", got)
	}
}

// TestMagicLinks: with the host's / as the root, /proc/self/root (a
// magic link, and another mount) is no way through.
func TestMagicLinks(t *testing.T) {
	_, outside := tree(t)
	for _, scope := range []Scope{Beneath, InRoot} {
		for _, c := range [][2]string{{"/", "proc/self/root" + outside + "/secret"}, {"/proc/self", "root" + outside + "/secret"}} {
			if b, err := readFile(t, c[0], c[1], scope, 1<<10); err == nil {
				t.Errorf("scope %d: read %q through %s/%s", scope, b, c[0], c[1])
			}
		}
	}
}

// TestGrowsWhileRead: a file whose size says nothing (a /proc file says
// 0) is still cut at the bound while it is read.
func TestGrowsWhileRead(t *testing.T) {
	b, err := readFile(t, "/proc/self", "status", InRoot, 16)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("= %q, %v; want %v", b, err, ErrTooLarge)
	}
	b, err = readFile(t, "/proc/self", "status", InRoot, 1<<20)
	if err != nil || !bytes.Contains(b, []byte("Pid:")) {
		t.Fatalf("= %q, %v", b, err)
	}
}

// TestSwapRace: while another goroutine keeps replacing the name with a
// regular file, a FIFO, a symlink out of the root and (as root) the
// host's /dev/zero, every read returns the regular file's bytes or a
// refusal: never the secret, never zeros, never a block.
func TestSwapRace(t *testing.T) {
	root, outside := tree(t)
	target := filepath.Join(root, "target")
	if err := os.WriteFile(target, []byte(inside), 0o644); err != nil {
		t.Fatal(err)
	}
	makers := []func(p string) error{
		func(p string) error { return os.WriteFile(p, []byte(inside), 0o644) },
		func(p string) error { return unix.Mkfifo(p, 0o644) },
		func(p string) error { return os.Symlink(outside+"/secret", p) },
		func(p string) error { return os.Symlink("../outside/secret", p) },
	}
	if os.Geteuid() == 0 {
		makers = append(makers, func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))) })
	}
	var stop atomic.Bool
	var swaps atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tmp := filepath.Join(root, ".swap")
		for i := 0; !stop.Load(); i++ {
			os.Remove(tmp)
			if err := makers[i%len(makers)](tmp); err != nil {
				t.Errorf("make: %v", err)
				return
			}
			if err := os.Rename(tmp, target); err != nil {
				t.Errorf("rename: %v", err)
				return
			}
			swaps.Add(1)
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()

	seen := map[string]int{}
	deadline := time.Now().Add(3 * time.Second)
	for n := 0; n < 200 || time.Now().Before(deadline); n++ {
		for _, scope := range []Scope{Beneath, InRoot} {
			b, err := readFile(t, root, "target", scope, 1<<10)
			switch {
			case err == nil && string(b) == inside:
				seen["regular"]++
			case err == nil:
				t.Fatalf("read %q", b)
			case errors.Is(err, ErrNotRegular):
				seen["not regular"]++
			case errors.Is(err, ErrOutside), errors.Is(err, fs.ErrNotExist):
				seen["refused link"]++
			default:
				t.Fatalf("unexpected error: %v", err)
			}
		}
		if n > 10000 {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d swaps; reads: %v", swaps.Load(), seen)
	if seen["regular"] == 0 || seen["not regular"] == 0 || seen["refused link"] == 0 {
		t.Errorf("the race did not show every kind of answer (%v): it tested less than it claims", seen)
	}
}

// TestOpenAt: the descriptor form resolves in the same root.
func TestOpenAt(t *testing.T) {
	root, _ := tree(t)
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	f, err := OpenAt(fd, "link-in", Beneath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := ReadAll(f, "link-in", 1<<10)
	if err != nil || string(b) != inside || f.Name() != "link-in" {
		t.Fatalf("= %q, %v (file %q)", b, err, f.Name())
	}
	if _, err := OpenAt(fd, "fifo", Beneath); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("fifo: %v", err)
	}
}

func TestOpenNoFollow(t *testing.T) {
	root, _ := tree(t)
	for _, tc := range []struct {
		name string
		want string // content, or the error's suffix
	}{
		{"plain", inside},
		{"dir/file", inside},
		{"link-in", "open " + root + "/link-in: not a regular file (symbolic link)"},
		{"out-abs", "open " + root + "/out-abs: not a regular file (symbolic link)"},
		{"fifo", "open " + root + "/fifo: not a regular file (FIFO)"},
		{"sock", "open " + root + "/sock: not a regular file (socket)"},
		{"dir", "open " + root + "/dir: not a regular file (directory)"},
		{"missing", "open " + root + "/missing: no such file or directory"},
	} {
		f, err := OpenNoFollow(filepath.Join(root, tc.name))
		if err != nil {
			if err.Error() != tc.want {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
			}
			continue
		}
		b, err := ReadAll(f, tc.name, 1<<10)
		f.Close()
		if err != nil || string(b) != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, b, err, tc.want)
		}
	}
	if os.Geteuid() == 0 {
		if _, err := OpenNoFollow(filepath.Join(root, "zero")); !errors.Is(err, ErrNotRegular) {
			t.Errorf("zero: %v", err)
		}
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{1 << 20: "1 MiB", 10 << 20: "10 MiB", 512 << 10: "512 KiB", 1000: "1000 bytes", 1<<20 + 1: "1048577 bytes"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
