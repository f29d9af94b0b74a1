package enginebox_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/sandbox/nsbox"
)

// wait bounds every wait on a terminal; generous for a loaded machine.
const wait = 60 * time.Second

var (
	shellDataOnce sync.Once
	shellData     string
	shellDataErr  error
)

// sandboxImageData returns a data directory whose base view has busybox
// and the sandbox image (BootstrapSandbox takes about a minute: once per
// test binary). LABD_TEST_SANDBOX_DATA names a directory to reuse instead.
func sandboxImageData(t testing.TB) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("needs root (containers); CI runs as root")
	}
	shellDataOnce.Do(func() {
		shellData = os.Getenv("LABD_TEST_SANDBOX_DATA")
		if shellData == "" {
			shellData, shellDataErr = os.MkdirTemp("", "labd-shell-")
			if shellDataErr != nil {
				return
			}
		}
		st, err := image.Open(filepath.Join(shellData, "engine"))
		if err != nil {
			shellDataErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if _, err := image.BootstrapBusybox(ctx, st); err != nil {
			shellDataErr = err
			return
		}
		if _, err := image.BootstrapSandbox(ctx, st, image.BootstrapOptions{}); err != nil {
			shellDataErr = err
		}
	})
	if shellDataErr != nil {
		t.Fatalf("bootstrap the sandbox image: %v", shellDataErr)
	}
	return shellData
}

// removeShellData removes the data directory sandboxImageData made (not
// one named by LABD_TEST_SANDBOX_DATA).
func removeShellData() {
	if shellData == "" || os.Getenv("LABD_TEST_SANDBOX_DATA") != "" {
		return
	}
	mountinfo.UnmountUnder(shellData)
	_ = os.RemoveAll(shellData)
}

// screen collects what a terminal prints.
type screen struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{}
	done chan struct{}
}

func watch(p sandbox.PTY) *screen {
	s := &screen{more: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		b := make([]byte, 4096)
		for {
			n, err := p.Read(b)
			s.mu.Lock()
			s.buf.Write(b[:n])
			s.mu.Unlock()
			select {
			case s.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return s
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *screen) waitFor(t *testing.T, re *regexp.Regexp) {
	t.Helper()
	deadline := time.After(wait)
	for !re.MatchString(s.String()) {
		select {
		case <-s.more:
		case <-s.done:
			if re.MatchString(s.String()) {
				return
			}
			t.Fatalf("terminal ended without %q; output:\n%s", re, s)
		case <-deadline:
			t.Fatalf("no %q on the terminal after %v; output:\n%s", re, wait, s)
		}
	}
}

// leakCount is what sandboxes hold on the host while they live: mounts
// under the given directories, and the cgroups and processes of the named
// containers (the shells and the learners' containers). Scoped so that
// other tests running at the same time do not count.
type leakCount struct {
	mounts, cgroups, procs int
}

func countLeaks(t *testing.T, dirs []string, names []string) leakCount {
	t.Helper()
	var c leakCount
	for _, d := range dirs {
		c.mounts += len(mountinfo.Under(d))
	}
	// A name is a container's (directly under labd, or in its sandbox's
	// group labd/<sandbox>) or a sandbox's group.
	for _, root := range []string{"/sys/fs/cgroup/labd", "/sys/fs/cgroup/memory/labd", "/sys/fs/cgroup/pids/labd", "/sys/fs/cgroup/unified/labd"} {
		for _, n := range names {
			dirs, _ := filepath.Glob(filepath.Join(root, "*", n))
			if _, err := os.Stat(filepath.Join(root, n)); err == nil {
				dirs = append(dirs, filepath.Join(root, n))
			}
			c.cgroups += len(dirs)
		}
	}
	paths, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("/labd/")) {
			continue
		}
		for _, n := range names {
			if bytes.Contains(b, []byte("/"+n+"\n")) || bytes.Contains(b, []byte("/"+n+"/")) {
				c.procs++
				break
			}
		}
	}
	return c
}

// shellExec runs a script in the sandbox as a grader does.
func shellExec(t *testing.T, sb sandbox.Sandbox, script string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, err := sb.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"bash", "-c", script}, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return out.String(), code
}

const httpdDockerfile = `FROM busybox
ARG WHO
RUN mkdir /www && echo "hello from $WHO" > /www/index.html
CMD ["httpd", "-f", "-p", "5000", "-h", "/www"]
`

// curlLoop retries until httpd listens (docker run -d returns first).
const curlLoop = `for i in $(seq 100); do curl -sf localhost:5001 && break; sleep 0.1; done`

// TestShellContainerSandbox runs learners' shells as containers: the
// prompt, the hostname, docker build and run -p typed into the terminal
// with curl reaching the published port, two sandboxes on the same port,
// the workspace as /root, the bind-mount policy, and nothing left after
// Destroy.
func TestShellContainerSandbox(t *testing.T) {
	for _, userns := range []bool{false, true} {
		name := "host-root"
		if userns {
			name = "userns"
		}
		t.Run(name, func(t *testing.T) { testShellContainerSandbox(t, userns) })
	}
}

// testShellContainerSandbox is TestShellContainerSandbox without or with
// user namespaces (labd serve's default): the same learner's view either
// way, plus, with them, root in the shell is an unprivileged host uid and
// the workspace keeps container ids on disk.
func testShellContainerSandbox(t *testing.T, userns bool) {
	data := sandboxImageData(t)
	ctx := context.Background()
	opts := engine.SharedOptions{}
	if userns {
		opts.UserNS = &engine.UserNSOptions{}
	}
	shared, err := engine.OpenShared(data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close() // after mgr.Close below
	ws := t.TempDir()
	dirs := []string{data, ws}
	if userns {
		abs, _ := filepath.Abs(data)
		dirs = append(dirs, engine.RuntimeRoot(abs, true))
	}
	before := countLeaks(t, dirs, nil)
	mgr := sandbox.NewManager(&enginebox.Provider{Inner: nsbox.New(nsbox.Options{}), Shared: shared}, sandbox.ManagerOptions{DataDir: ws, IdleTimeout: -1})
	defer mgr.Close(ctx)

	a, err := mgr.GetOrCreate(ctx, "shell-a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if out, code := shellExec(t, a, "test -f /.dockerenv && grep CapEff /proc/self/status"); code != 0 || !strings.Contains(out, "00000000a80425fb") {
		t.Fatalf("sandbox a is not a container with Docker's capabilities: exit %d, %q", code, out)
	}
	scr := watch(a.Terminal())
	prompt := regexp.MustCompile(`root@` + regexp.QuoteMeta(a.Hostname()) + `:~# $`)
	scr.waitFor(t, prompt)

	if _, err := a.Terminal().Write([]byte("hostname; echo made-in-shell > /root/from-shell.txt\n")); err != nil {
		t.Fatal(err)
	}
	scr.waitFor(t, regexp.MustCompile(regexp.QuoteMeta(a.Hostname())+`\r\n`))
	deadline := time.Now().Add(wait)
	for {
		b, err := os.ReadFile(filepath.Join(a.Workspace(), "from-shell.txt"))
		if err == nil && string(b) == "made-in-shell\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("from-shell.txt in the workspace: %q, %v", b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if userns {
		// Container root is the sandbox's unprivileged base on the host;
		// what it writes in the workspace is owned by uid 0 on disk.
		out, _ := shellExec(t, a, "cat /proc/self/uid_map; stat -c %u /root/from-shell.txt")
		f := strings.Fields(out)
		if len(f) != 4 || f[0] != "0" || f[1] == "0" || f[2] != "65536" || f[3] != "0" {
			t.Errorf("uid_map and owner in the shell: %q, want 0 <base> 65536 and 0", out)
		}
		if fi, err := os.Stat(filepath.Join(a.Workspace(), "from-shell.txt")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("from-shell.txt on the host: %v, want owned by 0 (container ids on disk)", err)
		}
	}

	// docker build + run -p + curl, typed.
	if err := os.WriteFile(filepath.Join(a.Workspace(), "Dockerfile"), []byte(httpdDockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	// (docker rm: a reused LABD_TEST_SANDBOX_DATA keeps the view's
	// containers from an earlier run, as a learner's view does.)
	line := "docker rm -f web >/dev/null 2>&1; docker build -q --build-arg WHO=alice -t web . && docker run -d --name web -p 5001:5000 web && " + curlLoop + "; echo END-$?\n"
	if _, err := a.Terminal().Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	scr.waitFor(t, regexp.MustCompile(`hello from alice\r\nEND-0`))

	// A second learner publishes the same port.
	b, err := mgr.GetOrCreate(ctx, "shell-b", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.Workspace(), "Dockerfile"), []byte(httpdDockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := shellExec(t, b, "docker build -q --build-arg WHO=bob -t web . >/dev/null && docker run -d -p 5001:5000 web >/dev/null && "+curlLoop); code != 0 || out != "hello from bob\n" {
		t.Fatalf("sandbox b: exit %d, %q", code, out)
	}
	if out, _ := shellExec(t, a, "curl -s localhost:5001"); out != "hello from alice\n" {
		t.Errorf("sandbox a after b published 5001: %q", out)
	}
	// The shell is not one of the learner's containers.
	if out, _ := shellExec(t, a, "docker ps -a --format '{{.Names}}'"); strings.TrimSpace(out) != "web" {
		t.Errorf("docker ps in a lists %q, want only web", out)
	}
	// Grader-style exec: cwd /root, the learner's environment.
	if out, _ := shellExec(t, a, `echo "$PWD $HOME $DOCKER_BUILDKIT"; cat from-shell.txt`); out != "/root /root 0\nmade-in-shell\n" {
		t.Errorf("exec environment: %q", out)
	}

	// Bind mounts: only under /root, translated to the workspace.
	out, code := shellExec(t, a, "docker run --rm -v /etc:/x busybox true")
	if code == 0 || !strings.Contains(out, "-v") || !strings.Contains(out, "/root") {
		t.Errorf("-v /etc:/x: exit %d, %q (want a refusal naming -v)", code, out)
	}
	if err := os.Symlink("/etc", filepath.Join(a.Workspace(), "etc-link")); err != nil {
		t.Fatal(err)
	}
	if out, _ := shellExec(t, a, "docker run --rm -v /root/etc-link:/x busybox ls /x"); strings.Contains(out, "passwd") {
		t.Errorf("a symlink in the workspace reached the host's /etc: %q", out)
	}
	if out, code := shellExec(t, a, "mkdir -p sub && echo in-sub > sub/f && docker run --rm -v /root/sub:/x busybox cat /x/f"); code != 0 || out != "in-sub\n" {
		t.Errorf("-v /root/sub:/x: exit %d, %q", code, out)
	}

	// Destroy: the shell's terminal ends, nothing is left (the sandboxes'
	// groups shell-a and shell-b included).
	names := []string{"shell-shell-a", "shell-shell-b", "shell-a", "shell-b"}
	for _, sb := range []sandbox.Sandbox{a, b} {
		out, _ := shellExec(t, sb, "docker ps -q --no-trunc")
		names = append(names, strings.Fields(out)...)
	}
	if live := countLeaks(t, dirs, names); live.mounts <= before.mounts || live.cgroups == 0 || live.procs < 4 {
		t.Fatalf("sandboxes hold nothing countable? before %+v, live %+v (names %q)", before, live, names)
	}
	if err := mgr.Destroy(ctx, "shell-a", sandbox.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	select {
	case <-scr.done:
	case <-time.After(wait):
		t.Fatal("terminal of a destroyed sandbox still reads")
	}
	if _, err := a.Terminal().Write([]byte("x")); err == nil {
		t.Error("write to a destroyed sandbox's terminal succeeded")
	}
	if err := mgr.Destroy(ctx, "shell-b", sandbox.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	var after leakCount
	for deadline := time.Now().Add(wait); ; time.Sleep(100 * time.Millisecond) {
		if after = countLeaks(t, dirs, names); after == before || time.Now().After(deadline) {
			break
		}
	}
	if after != before {
		t.Errorf("leaks: before %+v, after %+v", before, after)
	}
	for _, id := range []string{"shell-a", "shell-b"} {
		for _, p := range []string{"engine/run/" + id, "engine/shells/" + id} {
			if _, err := os.Stat(filepath.Join(data, p)); err == nil {
				t.Errorf("%s is left after destroy", p)
			}
		}
	}
	dir, release, err := mgr.OpenWorkspace(ctx, "shell-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "from-shell.txt")); err != nil {
		t.Errorf("workspace lost after destroy: %v", err)
	}
	release()
}

// shellSandbox creates a container-shell sandbox over a fresh workspace
// (from sandboxImageData), destroyed when the test ends.
func shellSandbox(t *testing.T, id, hostname string) sandbox.Sandbox {
	t.Helper()
	shared, err := engine.OpenShared(sandboxImageData(t), engine.SharedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(t.TempDir(), "workspace")
	if err := os.Mkdir(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	sb, err := (&enginebox.Provider{Shared: shared}).Create(context.Background(), sandbox.Spec{ID: id, Hostname: hostname, Workspace: ws})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Destroy(context.Background()) })
	return sb
}

// TestShellContainerExit ends the sandbox when the learner types exit.
func TestShellContainerExit(t *testing.T) {
	ctx := context.Background()
	sb := shellSandbox(t, "shell-exit", "lab-exit")
	scr := watch(sb.Terminal())
	scr.waitFor(t, regexp.MustCompile(`root@lab-exit:~# $`))
	if err := sb.Terminal().Resize(100, 30); err != nil {
		t.Errorf("Resize: %v", err)
	}
	sb.Terminal().Write([]byte("stty size; exit 3\n"))
	scr.waitFor(t, regexp.MustCompile(`30 100\r\n`))
	select {
	case <-sb.Done():
	case <-time.After(wait):
		t.Fatal("Done not closed after exit")
	}
	select {
	case <-scr.done:
	case <-time.After(wait):
		t.Fatal("terminal still reads after the shell exited")
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Errorf("Destroy after exit: %v", err)
	}
}

// BenchmarkShellSandboxToPrompt times a container sandbox from Create to
// its first prompt (then Destroy, not timed), and reports what idle
// sandboxes cost: labd's RSS growth and the shell processes' RSS, per
// sandbox, over 5 live sandboxes.
func BenchmarkShellSandboxToPrompt(b *testing.B) {
	for _, userns := range []bool{false, true} {
		name := "host-root"
		if userns {
			name = "userns"
		}
		b.Run(name, func(b *testing.B) { benchShellSandboxToPrompt(b, userns) })
	}
}

func benchShellSandboxToPrompt(b *testing.B, userns bool) {
	data := sandboxImageData(b)
	ctx := context.Background()
	opts := engine.SharedOptions{}
	if userns {
		opts.UserNS = &engine.UserNSOptions{}
	}
	shared, err := engine.OpenShared(data, opts)
	if err != nil {
		b.Fatal(err)
	}
	p := &enginebox.Provider{Shared: shared}
	root := b.TempDir()
	create := func(i int) (sandbox.Sandbox, time.Duration) {
		ws := filepath.Join(root, fmt.Sprint(i), "workspace")
		os.MkdirAll(ws, 0o700)
		start := time.Now()
		sb, err := p.Create(ctx, sandbox.Spec{ID: fmt.Sprintf("bench-%d", i), Hostname: "lab-bench", Workspace: ws})
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 4096)
		var seen []byte
		for !bytes.Contains(seen, []byte("root@lab-bench:~# ")) {
			n, err := sb.Terminal().Read(buf)
			if err != nil {
				b.Fatalf("terminal: %v after %q", err, seen)
			}
			seen = append(seen, buf[:n]...)
		}
		d := time.Since(start)
		// Keep draining, as the terminal hub does.
		go io.Copy(io.Discard, sb.Terminal())
		return sb, d
	}
	for i := 0; i < b.N; i++ {
		sb, _ := create(i)
		b.StopTimer()
		sb.Destroy(ctx)
		b.StartTimer()
	}
	b.StopTimer()
	runtimeGC()
	rss0 := rssOf(os.Getpid())
	var live []sandbox.Sandbox
	var shellRSS int64
	const n = 5
	for i := 0; i < n; i++ {
		sb, _ := create(1000 + i)
		live = append(live, sb)
	}
	time.Sleep(time.Second)
	runtimeGC()
	rss1 := rssOf(os.Getpid())
	for _, sb := range live {
		// The idle shell container's only process: the login bash (pid 1).
		out, _ := execOut(sb, "awk '/^VmRSS/ {print $2}' /proc/1/status")
		var kb int64
		fmt.Sscan(out, &kb)
		shellRSS += kb << 10
	}
	for _, sb := range live {
		sb.Destroy(ctx)
	}
	shared.Close() // the ended sandboxes' parked disks, as labd stopping
	b.ReportMetric(float64(rss1-rss0)/n/(1<<20), "labd-MiB/sandbox")
	b.ReportMetric(float64(shellRSS)/n/(1<<20), "shell-MiB/sandbox")
}

func execOut(sb sandbox.Sandbox, script string) (string, error) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := sb.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"sh", "-c", script}, Stdout: &out})
	return out.String(), err
}

func runtimeGC() { goruntime.GC(); debug.FreeOSMemory() }

// rssOf returns a process's resident set size in bytes.
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}
