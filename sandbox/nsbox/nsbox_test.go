package nsbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/sandbox"
)

var _ sandbox.Provider = (*Provider)(nil)

func TestShellIsolation(t *testing.T) {
	b, scr := newBox(t, "lab-iso")
	scr.waitFor(t, prompt("lab-iso"))

	// printf's format never matches its own result, so the echoed
	// command line cannot satisfy the patterns.
	typeLine(t, b, `printf 'H=%s;PWD=%s;HOME=%s;PPID=%s;INIT=%s;NET=%s;\n' "$(hostname)" "$PWD" "$HOME" "$PPID" "$(tr '\0' ' ' </proc/1/cmdline)" "$(ls /sys/class/net | tr '\n' ' ')"`)
	// [^;%] keeps the echoed command line (with its %s) from matching.
	m := scr.waitFor(t, regexp.MustCompile(`H=([^;%]*);PWD=([^;%]*);HOME=([^;%]*);PPID=([^;%]*);INIT=([^;%]*);NET=([^;%]*);`))
	tests := []struct{ name, got, want string }{
		{"hostname", m[1], "lab-iso"},
		{"cwd", m[2], b.Workspace()},
		{"HOME", m[3], b.Workspace()},
		// A pid namespace of its own: pid 1 is the init, parent of the shell.
		{"shell's parent", m[4], "1"},
		{"pid 1", m[5], fmt.Sprintf("/proc/self/exe %s -hostname lab-iso -dir %s ", InitCommand, b.Workspace())},
		{"interfaces", m[6], "lo "},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}

	typeLine(t, b, `echo hello > made-in-shell.txt; echo "P""S=$(ps -e -o comm= | sort | tr '\n' ' ');"`)
	ps := scr.waitFor(t, regexp.MustCompile(`PS=([^;"]*);`))[1]
	// Only the sandbox's own processes: init, bash and the pipeline.
	for _, p := range strings.Fields(ps) {
		switch p {
		case "exe", "bash", "ps", "sort", "tr":
		default:
			t.Errorf("ps in sandbox shows %q (all: %s)", p, ps)
		}
	}
	data, err := os.ReadFile(filepath.Join(b.Workspace(), "made-in-shell.txt"))
	if err != nil || string(data) != "hello\n" {
		t.Errorf("workspace file = %q, %v; want %q", data, err, "hello\n")
	}

	for _, kind := range []string{"mnt", "pid", "uts", "ipc", "net"} {
		host, _ := os.Readlink("/proc/self/ns/" + kind)
		box, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", b.InitPID(), kind))
		if err != nil {
			t.Fatal(err)
		}
		if host == box {
			t.Errorf("sandbox shares the host's %s namespace %s", kind, host)
		}
	}
}

func TestLoopbackUp(t *testing.T) {
	b, _ := newBox(t, "lab-lo")
	var out bytes.Buffer
	code, err := b.Exec(context.Background(), sandbox.ExecSpec{Cmd: []string{"cat", "/sys/class/net/lo/flags"}, Stdout: &out})
	if err != nil || code != 0 {
		t.Fatalf("Exec(cat flags) = %d, %v", code, err)
	}
	flags, err := strconv.ParseUint(strings.TrimSpace(out.String()), 0, 32)
	if err != nil {
		t.Fatal(err)
	}
	if flags&1 == 0 { // IFF_UP
		t.Errorf("lo flags = %#x, want IFF_UP set", flags)
	}
	// Loopback traffic works: bash's /dev/tcp to a listener on lo.
	code, err = b.Exec(context.Background(), sandbox.ExecSpec{Cmd: []string{"bash", "-c",
		`python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1])' >/dev/null 2>&1 || true; ip -o link 2>/dev/null | grep -v ' lo:' | grep . && exit 9; exit 0`}})
	if err != nil || code != 0 {
		t.Errorf("interfaces other than lo in sandbox: code %d, err %v", code, err)
	}
}

func TestExec(t *testing.T) {
	b, scr := newBox(t, "lab-exec")
	scr.waitFor(t, prompt("lab-exec"))
	typeLine(t, b, `echo from-shell > /tmp/shell-file; echo WROTE$((1+1))`)
	scr.waitFor(t, regexp.MustCompile(`WROTE2`))
	if err := os.Mkdir(filepath.Join(b.Workspace(), "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name           string
		spec           sandbox.ExecSpec
		code           int
		stdout, stderr string
	}{
		{"exit 0", sandbox.ExecSpec{Cmd: []string{"true"}}, 0, "", ""},
		{"exit 3", sandbox.ExecSpec{Cmd: []string{"sh", "-c", "exit 3"}}, 3, "", ""},
		{"streams", sandbox.ExecSpec{Cmd: []string{"sh", "-c", "echo out; echo err >&2"}}, 0, "out\n", "err\n"},
		{"hostname", sandbox.ExecSpec{Cmd: []string{"hostname"}}, 0, "lab-exec\n", ""},
		{"private tmp", sandbox.ExecSpec{Cmd: []string{"cat", "/tmp/shell-file"}}, 0, "from-shell\n", ""},
		{"cwd", sandbox.ExecSpec{Cmd: []string{"pwd"}}, 0, b.Workspace() + "\n", ""},
		{"relative dir", sandbox.ExecSpec{Cmd: []string{"pwd"}, Dir: "sub"}, 0, filepath.Join(b.Workspace(), "sub") + "\n", ""},
		{"env", sandbox.ExecSpec{Cmd: []string{"sh", "-c", `echo "$HOME $FOO"`}, Env: []string{"FOO=bar"}}, 0, b.Workspace() + " bar\n", ""},
		{"stdin", sandbox.ExecSpec{Cmd: []string{"cat"}, Stdin: strings.NewReader("in")}, 0, "in", ""},
		// The shell, child of the sandbox's pid 1, is visible: same pid namespace.
		{"pid ns", sandbox.ExecSpec{Cmd: []string{"ps", "-o", "comm=", "--ppid", "1"}}, 0, "bash\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			tt.spec.Stdout, tt.spec.Stderr = &out, &errb
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			code, err := b.Exec(ctx, tt.spec)
			if err != nil {
				t.Fatalf("Exec() error = %v", err)
			}
			if code != tt.code || out.String() != tt.stdout || errb.String() != tt.stderr {
				t.Errorf("Exec() = %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}

	if _, err := os.Stat("/tmp/shell-file"); err == nil {
		t.Errorf("/tmp/shell-file written in the sandbox appeared on the host")
	}

	t.Run("timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := b.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"sleep", "1000"}})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Exec(sleep) error = %v, want DeadlineExceeded", err)
		}
		// The sleep was killed with its process group (poll: the kernel
		// finishes killing and the init reaps asynchronously).
		deadline := time.Now().Add(wait)
		for {
			var out bytes.Buffer
			if _, err := b.Exec(context.Background(), sandbox.ExecSpec{Cmd: []string{"sh", "-c", "ps -e -o comm= | grep -c '^sleep$' || true"}, Stdout: &out}); err != nil {
				t.Fatal(err)
			}
			got := strings.TrimSpace(out.String())
			if got == "0" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sleep processes left %v after timeout = %s, want 0", wait, got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestDestroyLeavesNothing(t *testing.T) {
	// Warm up so lazily opened runtime fds do not count as leaks.
	b0, scr0 := newBox(t, "lab-warm")
	scr0.waitFor(t, prompt("lab-warm"))
	if err := b0.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	fds := openFDs(t)

	b, scr := newBox(t, "lab-leak")
	scr.waitFor(t, prompt("lab-leak"))
	// Background work, including a process that ignores SIGHUP/SIGTERM and
	// one started by Exec outside the shell's tree.
	typeLine(t, b, `sleep 1000 & (trap '' HUP TERM; sleep 1000) & disown -a; echo STARTED$((2+2))`)
	scr.waitFor(t, regexp.MustCompile(`STARTED4`))
	execDone := make(chan struct{})
	go func() {
		defer close(execDone)
		_, _ = b.Exec(context.Background(), sandbox.ExecSpec{Cmd: []string{"sleep", "1000"}})
	}()

	pidNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", b.InitPID()))
	if err != nil {
		t.Fatal(err)
	}
	netNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", b.InitPID()))
	if err != nil {
		t.Fatal(err)
	}
	// init, bash, two sleeps from the shell and one from Exec.
	deadline := time.Now().Add(wait)
	for len(nsMembers(t, "pid", pidNS)) < 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(nsMembers(t, "pid", pidNS)); n < 5 {
		t.Fatalf("processes in sandbox pid namespace before Destroy = %d, want >= 5", n)
	}
	if n := len(nsMembers(t, "net", netNS)); n == 0 {
		t.Fatalf("no process in sandbox net namespace before Destroy")
	}

	if err := b.Destroy(context.Background()); err != nil {
		t.Fatalf("Destroy() error = %v", err)
	}
	select {
	case <-b.Done():
	default:
		t.Errorf("Done() not closed after Destroy")
	}
	if err := b.Destroy(context.Background()); err != nil {
		t.Errorf("second Destroy() error = %v", err)
	}
	select {
	case <-execDone:
	case <-time.After(wait):
		t.Fatalf("Exec did not return after Destroy")
	}
	// The kernel kills the namespace's processes asynchronously after
	// pid 1 is reaped; poll.
	deadline = time.Now().Add(wait)
	for time.Now().Before(deadline) && len(nsMembers(t, "pid", pidNS))+len(nsMembers(t, "net", netNS)) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if p := nsMembers(t, "pid", pidNS); len(p) > 0 {
		t.Errorf("processes left in pid namespace after Destroy: %v", p)
	}
	if p := nsMembers(t, "net", netNS); len(p) > 0 {
		t.Errorf("processes left in net namespace after Destroy: %v", p)
	}
	<-scr.done
	if got := openFDs(t); got != fds {
		t.Errorf("open fds after Destroy = %d, want %d (before Create)", got, fds)
	}
	if _, err := b.Exec(context.Background(), sandbox.ExecSpec{Cmd: []string{"true"}}); err == nil {
		t.Errorf("Exec after Destroy succeeded, want error")
	}
}

func TestShellExit(t *testing.T) {
	b, scr := newBox(t, "lab-exit")
	scr.waitFor(t, prompt("lab-exit"))
	typeLine(t, b, "exit 7")
	select {
	case <-b.Done():
	case <-time.After(wait):
		t.Fatalf("Done() not closed %v after exit; output:\n%s", wait, scr)
	}
	if got := b.cmd.ProcessState.ExitCode(); got != 7 {
		t.Errorf("init exit code = %d, want the shell's 7", got)
	}
	// The output is still readable until the terminal reports its end.
	select {
	case <-scr.done:
	case <-time.After(wait):
		t.Errorf("terminal reads did not end after the shell exited")
	}
}

func TestResize(t *testing.T) {
	b, scr := newBox(t, "lab-size")
	scr.waitFor(t, prompt("lab-size"))
	if err := b.Terminal().Resize(132, 43); err != nil {
		t.Fatalf("Resize() error = %v", err)
	}
	typeLine(t, b, `stty size | sed 's/ /x/;s/^/SIZE=/'`)
	if got := scr.waitFor(t, regexp.MustCompile(`SIZE=(\d+x\d+)`))[1]; got != "43x132" {
		t.Errorf("stty size = %s, want 43x132", got)
	}
}

func TestCreateErrors(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	if _, err := New(Options{}).Create(ctx, sandbox.Spec{ID: "x", Hostname: "h", Workspace: "relative"}); err == nil {
		t.Errorf("Create(relative workspace) succeeded")
	}
	// A workspace that does not exist fails in the init and is reported.
	if _, err := New(Options{}).Create(ctx, sandbox.Spec{ID: "x", Hostname: "h", Workspace: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Errorf("Create(missing workspace) succeeded")
	}
	if _, err := New(Options{Exe: "/nonexistent"}).Create(ctx, sandbox.Spec{ID: "x", Hostname: "h", Workspace: t.TempDir()}); err == nil {
		t.Errorf("Create(missing exe) succeeded")
	}
}

func BenchmarkCreate(b *testing.B) {
	requireRoot(b)
	p := New(Options{})
	ws := b.TempDir()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		sb, err := p.Create(ctx, sandbox.Spec{ID: "bench", Hostname: "lab-bench", Workspace: ws})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		watch(sb.Terminal()).waitFor(b, prompt("lab-bench"))
		b.StopTimer()
		if err := sb.Destroy(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}

// TestPromptMarkers: the login shell marks its prompts (OSC 133) for the
// page's Run buttons, in order around a command, and keeps a learner's
// own PS1 and $? working.
func TestPromptMarkers(t *testing.T) {
	b, scr := newBox(t, "lab-marks")
	const (
		prompt = "\x1b]133;A\a"
		start  = "\x1b]133;C\a"
		cont   = "\x1b]133;A;k=s\a"
	)
	scr.waitFor(t, regexp.MustCompile(regexp.QuoteMeta(prompt)+`[^\n]*lab-marks`))
	typeLine(t, b, `PS1='mine[$?]> '; (exit 3)`)
	scr.waitFor(t, regexp.MustCompile(regexp.QuoteMeta("\x1b]133;D;3\a"+prompt)+`[^\n]*mine\[3\]> `))
	typeLine(t, b, `echo "out-$((6*7))"; false`)
	// The command's output is between its start and its end.
	scr.waitFor(t, regexp.MustCompile(regexp.QuoteMeta(start)+`out-42\r?\n`+regexp.QuoteMeta("\x1b]133;D;1\a"+prompt)))
	// A heredoc's lines get the continuation marker, the command one C.
	typeLine(t, b, `cat <<EOF`)
	scr.waitFor(t, regexp.MustCompile(regexp.QuoteMeta(cont)+`> `))
	typeLine(t, b, `body-$((2+2))`)
	typeLine(t, b, `EOF`)
	scr.waitFor(t, regexp.MustCompile(regexp.QuoteMeta(start)+`body-4\r?\n`))
	if n := strings.Count(scr.String(), start); n != 3 {
		t.Errorf("%d command-start markers, want 3 (one per command); output:\n%q", n, scr)
	}
}
