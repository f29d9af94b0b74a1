package runtime

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
)

// testCgroupParent keeps this test binary's cgroups apart from labd's and
// from other test binaries running at the same time.
var testCgroupParent = fmt.Sprintf("labd-test-%d", os.Getpid())

// busyboxLower is a layer directory with /bin/busybox, its applet links and
// a small /etc, built once per test binary; busyboxErr says why it could
// not be built, and every test that needs it then fails with that reason.
var (
	busyboxLower string
	busyboxErr   error
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "runtime-busybox-")
			if err != nil {
				busyboxErr = err
			} else {
				defer os.RemoveAll(dir)
				if err := makeBusyboxLayer(dir); err != nil {
					busyboxErr = fmt.Errorf("busybox layer (Debian's busybox-static): %w", err)
				} else {
					busyboxLower = dir
				}
			}
		}
		return m.Run()
	}()
	removeOwnedLayer()
	removeCgroupParent(testCgroupParent)
	os.Exit(code)
}

func makeBusyboxLayer(dir string) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return err
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		return err
	}
	list, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return err
	}
	for _, l := range strings.Fields(string(list)) {
		p := filepath.Join(dir, l)
		if p == filepath.Join(dir, "bin/busybox") {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/bin/busybox", p); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/home:/bin/false\n" +
			"user:x:1000:1000::/home/user:/bin/sh\n",
		"etc/group": "root:x:0:\nwheel:x:10:root\nnogroup:x:65534:\nuser:x:1000:\nstaff:x:50:user\n",
		"lower.txt": "from the lower layer\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, d := range []string{"root", "tmp", "home/user"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	return os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
}

// needRoot stops tests that start real containers where they cannot run
// (testenv: a skip on a laptop, a failure in CI). A busybox layer that
// could not be built is a failure everywhere: the machine has root, so
// the tests could have run.
func needRoot(t testing.TB) {
	t.Helper()
	testenv.Root(t, "containers")
	if busyboxErr != nil {
		t.Fatal(busyboxErr)
	}
}

// newTestRuntime returns a runtime in a temp dir and checks, when the test
// ends, that nothing it started is left behind.
func newTestRuntime(t testing.TB) *Runtime {
	t.Helper()
	needRoot(t)
	r, err := New(Options{Root: t.TempDir(), CgroupParent: testCgroupParent})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	before := countLeaks(r)
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		assertNoLeaks(t, r, before)
	})
	return r
}

// leaks counts what a container holds while it runs.
type leaks struct {
	Mounts    int // mountinfo entries under the runtime's root
	Cgroups   int // cgroup directories under the test parent, all hierarchies
	Processes int // processes in the test parent's cgroups, plus our children
	State     int // entries in the state and bundle directories
}

func countLeaks(r *Runtime) leaks {
	var l leaks
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, r.root) {
				l.Mounts++
			}
		}
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + r.cgroupParent + "/*")
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			l.Cgroups++
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			l.Processes += len(strings.Fields(string(b)))
		}
	}
	l.Processes += len(children())
	for _, d := range []string{r.stateDir, r.bundleDir} {
		ents, _ := os.ReadDir(d)
		l.State += len(ents)
	}
	return l
}

// children returns the pids whose parent is this process.
func children() []int {
	var out []int
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(self) {
			out = append(out, pid)
		}
	}
	return out
}

func assertNoLeaks(t testing.TB, r *Runtime, before leaks) {
	t.Helper()
	var after leaks
	// Reaping by other tests' exec.Cmd is asynchronous: poll briefly.
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = countLeaks(r)
		if after == before || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if after != before {
		t.Errorf("leaked: before %+v, after %+v", before, after)
		b, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, r.root) {
				t.Logf("mount: %s", line)
			}
		}
	}
}

func removeCgroupParent(parent string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

// syncBuffer is an io.Writer safe for concurrent use that can wait for
// content.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until the buffer contains s.
func (b *syncBuffer) waitFor(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in output %q", s, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testID returns a fresh 64-hex container id.
func testID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// baseSpec is a busybox container with fresh upper and work directories.
func baseSpec(t testing.TB, args ...string) Spec {
	t.Helper()
	dir := t.TempDir()
	return Spec{
		ID:     testID(t),
		Lowers: []string{busyboxLower},
		Upper:  filepath.Join(dir, "upper"),
		Work:   filepath.Join(dir, "work"),
		Args:   args,
		Env:    []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}
}
