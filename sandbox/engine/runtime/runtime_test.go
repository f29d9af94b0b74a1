package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labd/labd/internal/testenv"
)

// run runs s and returns its stdout, stderr and exit code.
func run(t *testing.T, r *Runtime, s Spec) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb syncBuffer
	s.Stdout, s.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code, err := r.Run(ctx, s)
	if err != nil {
		t.Fatalf("Run(%q) = %d, %v (stderr %q)", s.Args, code, err, errb.String())
	}
	return out.String(), errb.String(), code
}

func TestRunOutputAndExitCode(t *testing.T) {
	r := newTestRuntime(t)
	out, errOut, code := run(t, r, baseSpec(t, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"))
	if out != "to-stdout\n" || errOut != "to-stderr\n" || code != 3 {
		t.Errorf("got stdout %q, stderr %q, code %d; want %q, %q, 3", out, errOut, code, "to-stdout\n", "to-stderr\n")
	}
}

func TestRunEnvironment(t *testing.T) {
	r := newTestRuntime(t)
	tests := []struct {
		name   string
		mod    func(*Spec)
		script string
		want   string
	}{
		{"env", func(s *Spec) { s.Env = append(s.Env, "FOO=bar baz") }, `echo "$FOO"`, "bar baz"},
		{"home from passwd", nil, `echo "$HOME"`, "/root"},
		{"home of user", func(s *Spec) { s.User = "user" }, `echo "$HOME"`, "/home/user"},
		{"cwd created", func(s *Spec) { s.Cwd = "/new/work dir" }, `pwd`, "/new/work dir"},
		{"cwd existing", func(s *Spec) { s.Cwd = "/tmp" }, `pwd`, "/tmp"},
		{"root user and groups", nil, `echo $(id -u) $(id -g) $(id -G)`, "0 0 0 10"},
		{"user by name", func(s *Spec) { s.User = "nobody" }, `echo $(id -u) $(id -g)`, "65534 65534"},
		{"user by name gets its groups", func(s *Spec) { s.User = "user" }, `echo $(id -u) $(id -g) $(id -G)`, "1000 1000 1000 50"},
		// An explicit group replaces the supplementary groups (Docker too).
		{"user uid:gid", func(s *Spec) { s.User = "1000:1000" }, `echo $(id -u) $(id -g) $(id -G)`, "1000 1000 1000"},
		{"numeric user not in passwd", func(s *Spec) { s.User = "4242" }, `echo $(id -u) $(id -g)`, "4242 0"},
		{"hostname", func(s *Spec) { s.Hostname = "builder" }, `hostname; cat /etc/hostname`, "builder\nbuilder"},
		{"default hostname", func(s *Spec) { s.ID = "0123456789abcdef" }, `hostname`, "0123456789ab"},
		{"pid 1", nil, `echo $$`, "1"},
		{"capabilities", nil, `grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status | cut -f2 | sort -u`, "00000000a80425fb"},
		{"no capabilities for a user", func(s *Spec) { s.User = "nobody" }, `grep CapEff /proc/self/status | cut -f2`, "0000000000000000"},
		{"no new privileges", nil, `grep NoNewPrivs /proc/self/status | cut -f2`, "1"},
		{"network has only lo", nil, `ls /sys/class/net`, "lo"},
		{"lo is up", nil, `ping -c1 -W2 127.0.0.1 >/dev/null && echo up`, "up"},
		{"masked keys", nil, `wc -c < /proc/keys`, "0"},
		{"read-only /proc/sys", nil, `echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo ro`, "ro"},
		{"read-only /sys", nil, `touch /sys/x 2>/dev/null || echo ro`, "ro"},
		{"hosts", nil, `grep -c localhost /etc/hosts`, "2"},
		{"dockerenv", nil, `test -f /.dockerenv && echo yes`, "yes"},
		{"mtab", nil, `readlink /etc/mtab`, "/proc/mounts"},
		{"dev", nil, `ls /dev | grep -v '^core$' | tr '\n' ' '`, "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero "},
		{"shm size", nil, `df -k /dev/shm | tail -1 | awk '{print $2}'`, "65536"},
		{"nofile inherited", nil, `ulimit -n`, nofile()},
		{"mknod of a denied device", nil, `mknod /tmp/sda b 8 0 && (head -c1 /tmp/sda >/dev/null 2>&1 || echo denied)`, "denied"},
		{"stdin", func(s *Spec) { s.Stdin = strings.NewReader("line one\nline two\n") }, `wc -l`, "2"},
		{"no stdin", nil, `cat; echo eof`, "eof"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec(t, "sh", "-c", tt.script)
			if tt.mod != nil {
				tt.mod(&s)
			}
			out, errOut, code := run(t, r, s)
			if got := strings.TrimRight(out, "\n"); got != tt.want || code != 0 {
				t.Errorf("%s: got %q (exit %d, stderr %q), want %q", tt.script, got, code, errOut, tt.want)
			}
		})
	}
}

func TestRunUnknownUser(t *testing.T) {
	r := newTestRuntime(t)
	s := baseSpec(t, "true")
	s.User = "xyz"
	_, err := r.Run(context.Background(), s)
	want := "unable to find user xyz: no matching entries in passwd file"
	if err == nil || err.Error() != want {
		t.Fatalf("Run with unknown user: err = %v, want %q", err, want)
	}
}

func TestRunCommandNotFound(t *testing.T) {
	r := newTestRuntime(t)
	code, err := r.Run(context.Background(), baseSpec(t, "no-such-command"))
	if err == nil || !strings.Contains(err.Error(), `"no-such-command": executable file not found in $PATH`) {
		t.Fatalf("Run(no-such-command) = %d, %v; want an executable-not-found error", code, err)
	}
}

func TestRunScratch(t *testing.T) {
	r := newTestRuntime(t)
	s := baseSpec(t, "/busybox", "true")
	s.Lowers = nil
	// An empty root filesystem plus a static binary bind-mounted in.
	s.Mounts = []Mount{{Source: filepath.Join(busyboxLower, "bin/busybox"), Destination: "/busybox", ReadOnly: true}}
	if _, _, code := run(t, r, s); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

func TestOverlayUpper(t *testing.T) {
	r := newTestRuntime(t)
	s := baseSpec(t, "sh", "-c", "echo new > /new.txt && rm /lower.txt && mkdir -p /root/d && echo x > /root/d/f && cat /etc/hosts >/dev/null")
	before, err := os.ReadFile(filepath.Join(busyboxLower, "lower.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(t, r, s); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(s.Upper, "new.txt")); err != nil || string(b) != "new\n" {
		t.Errorf("upper new.txt = %q, %v; want %q", b, err, "new\n")
	}
	if b, err := os.ReadFile(filepath.Join(s.Upper, "root/d/f")); err != nil || string(b) != "x\n" {
		t.Errorf("upper root/d/f = %q, %v", b, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(s.Upper, "lower.txt"), &st); err != nil {
		t.Fatalf("whiteout missing: %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper lower.txt: mode %o rdev %d, want a 0/0 character device (overlay whiteout)", st.Mode, st.Rdev)
	}
	after, err := os.ReadFile(filepath.Join(busyboxLower, "lower.txt"))
	if err != nil || string(after) != string(before) {
		t.Errorf("lower changed: %q, %v", after, err)
	}
	// What dockerd keeps out of a RUN layer: the init layer and bind mounts.
	for _, p := range []string{"etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerenv", "etc/mtab", "proc", "sys", "dev"} {
		if _, err := os.Lstat(filepath.Join(s.Upper, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("upper contains %s (err %v)", p, err)
		}
	}
}

func TestManyLowers(t *testing.T) {
	r := newTestRuntime(t)
	// Long directory names push the plain lowerdir option past a page.
	base := filepath.Join(t.TempDir(), strings.Repeat("long-layer-directory-name-", 3))
	const n = 45
	lowers := []string{}
	for i := n - 1; i >= 0; i-- { // top first
		d := filepath.Join(base, fmt.Sprintf("%064d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%02d", i)), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		// Each layer overrides /top: the topmost must win.
		if err := os.WriteFile(filepath.Join(d, "top"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, d)
	}
	if got := len(overlayData(append(lowers, busyboxLower), "/u", "/w", "")); got < maxMountData {
		t.Fatalf("test setup: options are only %d bytes", got)
	}
	s := baseSpec(t, "sh", "-c", "cat /top; echo; ls / | grep -c '^f[0-9]'")
	s.Lowers = append(lowers, busyboxLower)
	out, errOut, code := run(t, r, s)
	if want := fmt.Sprintf("%d\n%d\n", n-1, n); out != want || code != 0 {
		t.Errorf("got %q (exit %d, stderr %q), want %q", out, code, errOut, want)
	}
}

func TestCancelKills(t *testing.T) {
	r := newTestRuntime(t)
	var out syncBuffer
	s := baseSpec(t, "sh", "-c", "echo started; sleep 100")
	s.Stdout = &out
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := r.Run(ctx, s)
		done <- result{code, err}
	}()
	out.waitFor(t, "started")
	if l := countLeaks(r); l.Mounts == 0 || l.Cgroups == 0 || l.State == 0 {
		t.Errorf("while running: %+v, want a mount, cgroups and state", l)
	}
	cancel()
	select {
	case res := <-done:
		if !errors.Is(res.err, context.Canceled) || res.code != 137 {
			t.Errorf("Run after cancel = %d, %v; want 137, context.Canceled", res.code, res.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// newTestRuntime's cleanup counts mounts, cgroups, processes and state.
}

func TestMemoryLimitOOM(t *testing.T) {
	r := newTestRuntime(t)
	// dd allocates its block buffer and fills it: far past the limit.
	s := baseSpec(t, "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
	s.Memory = 32 << 20
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode != 137 || st.Signal != unix.SIGKILL || !st.OOMKilled {
		t.Errorf("Wait = %+v, want exit 137 by SIGKILL, OOMKilled", st)
	}
}

func TestNoOOMWithoutLimit(t *testing.T) {
	r := newTestRuntime(t)
	c, err := r.Start(context.Background(), baseSpec(t, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(context.Background())
	if err != nil || st != (Exit{}) {
		t.Errorf("Wait = %+v, %v; want a clean exit", st, err)
	}
}

func TestPidsLimit(t *testing.T) {
	r := newTestRuntime(t)
	// At most 50 forks. ash gives up at the first failed fork; PID 1
	// exiting then ends every process of the container.
	s := baseSpec(t, "sh", "-c", `i=0; while [ $i -lt 50 ]; do i=$((i+1)); echo $i; sleep 1000 & done; echo spawned`)
	s.PidsLimit = 10
	out, errOut, code := run(t, r, s)
	lines := strings.Fields(out)
	if code == 0 || len(lines) == 0 || len(lines) > 10 || strings.Contains(out, "spawned") {
		t.Errorf("fork loop under pids limit 10: exit %d, output %q; want a failure after at most 10 processes", code, out)
	}
	if !strings.Contains(errOut, "can't fork") {
		t.Errorf("stderr %q, want a fork failure", errOut)
	}
}

func TestKill(t *testing.T) {
	r := newTestRuntime(t)
	c, err := r.Start(context.Background(), baseSpec(t, "sleep", "1000"))
	if err != nil {
		t.Fatal(err)
	}
	pids, err := c.Processes()
	if err != nil || len(pids) != 1 || pids[0] != c.Pid() {
		t.Errorf("Processes() = %v, %v; want [%d]", pids, err, c.Pid())
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(context.Background())
	if err != nil || st.ExitCode != 137 || st.OOMKilled {
		t.Errorf("Wait after Kill = %+v, %v; want 137", st, err)
	}
	if err := c.Kill(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Kill after exit = %v, want ErrNotRunning", err)
	}
}

func TestStartSignalExec(t *testing.T) {
	r := newTestRuntime(t)
	var out syncBuffer
	// PID 1 ignores signals it has no handler for: trap SIGTERM.
	s := baseSpec(t, "sh", "-c", `trap "exit 143" TERM; echo ready; while :; do sleep 1; done`)
	s.Stdout = &out
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "ready")
	if c.Pid() <= 0 {
		t.Errorf("Pid() = %d", c.Pid())
	}

	// exec: output, exit code, user, shared filesystem and pid namespace.
	var eout, eerr syncBuffer
	p, err := c.Exec(ExecSpec{
		Args:   []string{"sh", "-c", "echo $(id -u) $(cat /proc/1/comm); echo e >&2; exit 7"},
		Env:    []string{"PATH=/bin:/usr/bin"},
		User:   "user",
		Stdout: &eout, Stderr: &eerr,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait(context.Background())
	if err != nil || st.ExitCode != 7 || eout.String() != "1000 sh\n" || eerr.String() != "e\n" {
		t.Errorf("exec = %+v, %v, stdout %q, stderr %q; want 7, %q, %q", st, err, eout.String(), eerr.String(), "1000 sh\n", "e\n")
	}

	// A non-init process killed by SIGTERM: 128+15.
	var sout syncBuffer
	sp, err := c.Exec(ExecSpec{Args: []string{"sh", "-c", "echo sleeping; exec sleep 100"}, Env: []string{"PATH=/bin"}, Stdout: &sout})
	if err != nil {
		t.Fatal(err)
	}
	sout.waitFor(t, "sleeping")
	if err := sp.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	st, err = sp.Wait(context.Background())
	if err != nil || st.ExitCode != 143 || st.Signal != unix.SIGTERM {
		t.Errorf("exec killed by SIGTERM: %+v, %v; want 143", st, err)
	}

	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err = c.Wait(ctx)
	if err != nil || st.ExitCode != 143 {
		t.Errorf("Wait after SIGTERM = %+v, %v; want 143", st, err)
	}
	if _, err := c.Exec(ExecSpec{Args: []string{"true"}}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Exec after exit: %v, want ErrNotRunning", err)
	}
}

func TestDuplicateID(t *testing.T) {
	r := newTestRuntime(t)
	s := baseSpec(t, "sleep", "100")
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	s2 := baseSpec(t, "true")
	s2.ID = s.ID
	if _, err := r.Start(context.Background(), s2); !errors.Is(err, ErrExists) {
		t.Errorf("second Start with the same ID: %v, want ErrExists", err)
	}
	_ = c.Kill()
	if _, err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The ID is free again once the container has ended.
	s2.Args = []string{"true"}
	if _, _, code := run(t, r, s2); code != 0 {
		t.Errorf("rerun exit %d", code)
	}
}

func TestTty(t *testing.T) {
	r := newTestRuntime(t)
	var out syncBuffer
	s := baseSpec(t, "sh", "-c", "stty size; test -t 0 && test -t 1 && echo tty")
	s.Tty, s.TtyWidth, s.TtyHeight = true, 100, 30
	s.Stdout = &out
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(context.Background())
	if err != nil || st.ExitCode != 0 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	if got := strings.ReplaceAll(out.String(), "\r\n", "\n"); got != "30 100\ntty\n" {
		t.Errorf("tty output %q, want %q", got, "30 100\ntty\n")
	}
}

func TestExecTtyResize(t *testing.T) {
	r := newTestRuntime(t)
	c, err := r.Start(context.Background(), baseSpec(t, "sleep", "100"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Kill(); _, _ = c.Wait(context.Background()) }()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	var out syncBuffer
	p, err := c.Exec(ExecSpec{Args: []string{"sh"}, Env: []string{"PATH=/bin"}, Tty: true, TtyWidth: 80, TtyHeight: 24, Stdin: stdinR, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdinW, "stty size")
	out.waitFor(t, "24 80")
	if err := p.Resize(132, 43); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdinW, "stty size; exit 5")
	out.waitFor(t, "43 132")
	st, err := p.Wait(context.Background())
	if err != nil || st.ExitCode != 5 {
		t.Errorf("exec Wait = %+v, %v; want 5", st, err)
	}
}

func TestJoinNetNS(t *testing.T) {
	r := newTestRuntime(t)
	// A network namespace held by a container that stays up.
	holder, err := r.Start(context.Background(), baseSpec(t, "sleep", "100"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Kill(); _, _ = holder.Wait(context.Background()) }()
	hostView, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", holder.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	s := baseSpec(t, "readlink", "/proc/self/ns/net")
	s.NetNS = fmt.Sprintf("/proc/%d/ns/net", holder.Pid())
	if out, errOut, code := run(t, r, s); out != hostView+"\n" || code != 0 {
		t.Errorf("joined netns: %q (exit %d, %q), want %q", out, code, errOut, hostView)
	}
	// Without NetNS, a new namespace.
	if out, _, _ := run(t, r, baseSpec(t, "readlink", "/proc/self/ns/net")); out == hostView+"\n" {
		t.Errorf("a container without NetNS shares %s", hostView)
	}
}

func TestSweepLeftovers(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	r, err := New(Options{Root: root, CgroupParent: testCgroupParent})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Start(context.Background(), baseSpec(t, "sleep", "100"))
	if err != nil {
		t.Fatal(err)
	}
	// A second runtime on the same root plays the restarted labd: it must
	// kill the container and release everything.
	r2, err := New(Options{Root: root, CgroupParent: testCgroupParent})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Wait(ctx); err != nil {
		t.Fatalf("container survived the sweep: %v", err)
	}
	assertNoLeaks(t, r2, leaks{})
}

func TestInvalidSpec(t *testing.T) {
	needRoot(t)
	r, err := New(Options{Root: t.TempDir(), CgroupParent: testCgroupParent})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]Spec{
		"bad id":     {ID: "../x", Args: []string{"true"}, Upper: "/u", Work: "/w"},
		"no command": {ID: "abc", Upper: t.TempDir(), Work: t.TempDir()},
		"no upper":   {ID: "abc", Args: []string{"true"}},
	} {
		if _, err := r.Run(context.Background(), s); err == nil {
			t.Errorf("%s: Run succeeded", name)
		}
	}
	assertNoLeaks(t, r, leaks{})
}

func BenchmarkRunTrue(b *testing.B) {
	r := newTestRuntime(b)
	ctx := context.Background()
	for b.Loop() {
		s := baseSpec(b, "true")
		code, err := r.Run(ctx, s)
		if err != nil || code != 0 {
			b.Fatalf("Run = %d, %v", code, err)
		}
	}
}

// nofile is this process's soft open-file limit, which containers inherit.
func nofile() string {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return "?"
	}
	return fmt.Sprint(l.Cur)
}

func TestSeccomp(t *testing.T) {
	profile, err := DefaultSeccompProfile()
	if err != nil {
		t.Fatal(err)
	}
	if profile.DefaultAction != "SCMP_ACT_ERRNO" || len(profile.Syscalls) == 0 {
		t.Fatalf("default profile: action %q, %d rules", profile.DefaultAction, len(profile.Syscalls))
	}
	if !SeccompSupported() {
		if _, err := New(Options{Root: t.TempDir(), Seccomp: profile}); err == nil {
			t.Error("New with a seccomp profile succeeded in a binary without seccomp support")
		}
		testenv.Missing(t, "built without -tags seccomp (make builds with it)")
	}
	needRoot(t)
	r, err := New(Options{Root: t.TempDir(), CgroupParent: testCgroupParent, Seccomp: profile})
	if err != nil {
		t.Fatal(err)
	}
	// What the profile refuses is mostly refused by the missing
	// capabilities too: check that a filter is installed.
	out, errOut, code := run(t, r, baseSpec(t, "sh", "-c", "grep Seccomp: /proc/self/status | cut -f2"))
	if out != "2\n" || code != 0 {
		t.Errorf("Seccomp mode %q (exit %d, %q), want 2 (filter)", out, code, errOut)
	}
}
