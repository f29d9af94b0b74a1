package grader_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/sandbox"
)

// fooledShell is a learner's shell in which everything was replaced: every
// command "succeeds", and bash's /dev/tcp answers what the learner wants.
type fooledShell struct{ execs atomic.Int32 }

func (f *fooledShell) Exec(_ context.Context, e sandbox.ExecSpec) (int, error) {
	f.execs.Add(1)
	if e.Stdout != nil {
		io.WriteString(e.Stdout, "HTTP/1.0 200 OK\r\n\r\nhello world!")
	}
	return 0, nil
}

// trustedSandbox has the fooled shell, and runs script checks and reaches
// ports the way labd's engine sandboxes do: without it (here the scripts
// run on the host, the port is a real server's).
type trustedSandbox struct {
	fooledShell
	checks, dials atomic.Int32
	port          int // where DialPort's 127.0.0.1 lives
}

func (s *trustedSandbox) RunCheck(ctx context.Context, e sandbox.ExecSpec) (int, error) {
	s.checks.Add(1)
	cmd := exec.CommandContext(ctx, e.Cmd[0], e.Cmd[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = e.Env, e.Stdout, e.Stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok && ctx.Err() == nil {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

func (s *trustedSandbox) DialPort(ctx context.Context, port int) (net.Conn, error) {
	s.dials.Add(1)
	if port != 5001 {
		return nil, fmt.Errorf("dial 127.0.0.1:%d: connection refused", port)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(s.port))
}

// realApp is the learner's app as it really answers.
func realApp(t *testing.T) int {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") != "labd-grader" || r.Host != "localhost:5001" || r.URL.Path != "/" {
			http.Error(w, "unexpected request "+r.Host+r.URL.Path+" from "+r.Header.Get("User-Agent"), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "the app is not done yet")
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

var fooledChecks = []struct {
	name, yaml string
	fooled     grader.State // in the learner's shell
	msg        string       // where the sandbox runs checks itself
}{
	{"script", "kind: script\nrun: 'echo \"FAIL: not yet\"; exit 1'", grader.StatePassed, "not yet"},
	{"http", "kind: http\nport: 5001\ncontains: hello world!", grader.StatePassed, `answered "the app is not done yet", which does not contain "hello world!"`},
	{"http, nothing there", "kind: http\nport: 5002", grader.StatePassed, "Nothing answers on port 5002"},
}

// TestChecksNotRunInTheLearnersShell (adversarial): where the sandbox runs
// script checks itself (RunCheck) and dials its ports (DialPort), neither
// kind uses the learner's shell, so replaced programs there fool nothing;
// a sandbox without them still gets its checks run with Exec.
func TestChecksNotRunInTheLearnersShell(t *testing.T) {
	port := realApp(t)
	for _, c := range fooledChecks {
		t.Run(c.name, func(t *testing.T) {
			sb := &trustedSandbox{port: port}
			wantState(t, &grader.Env{Sandbox: sb}, "", c.yaml, grader.StateFailed, c.msg)
			if n := sb.execs.Load(); n != 0 {
				t.Errorf("%d commands ran in the learner's shell", n)
			}
			if sb.checks.Load()+sb.dials.Load() != 1 {
				t.Errorf("RunCheck %d, DialPort %d times; want one of them once", sb.checks.Load(), sb.dials.Load())
			}
			shell := &fooledShell{}
			wantState(t, &grader.Env{Sandbox: shell}, "plain Execer: ", c.yaml, c.fooled, "")
			if shell.execs.Load() != 1 {
				t.Errorf("a sandbox without RunCheck/DialPort: %d Execs, want 1", shell.execs.Load())
			}
		})
	}
}

// liveSandbox is a trustedSandbox as a whole sandbox.Sandbox.
type liveSandbox struct {
	trustedSandbox
	ws   string
	done chan struct{}
}

func (s *liveSandbox) ID() string                        { return "sb-fake" }
func (s *liveSandbox) Hostname() string                  { return "lab-fake" }
func (s *liveSandbox) Workspace() string                 { return s.ws }
func (s *liveSandbox) Terminal() sandbox.PTY             { return nil }
func (s *liveSandbox) Done() <-chan struct{}             { return s.done }
func (s *liveSandbox) Destroy(ctx context.Context) error { return nil }

// TestLiveChecksNotRunInTheLearnersShell: the live grader's own wrapper of
// the sandbox (which notes when the grader's commands run) keeps RunCheck
// and DialPort.
func TestLiveChecksNotRunInTheLearnersShell(t *testing.T) {
	sb := &liveSandbox{trustedSandbox: trustedSandbox{port: realApp(t)}, ws: t.TempDir(), done: make(chan struct{})}
	checks := map[string]map[string]any{}
	for i, c := range fooledChecks {
		var spec map[string]any
		switch {
		case strings.HasPrefix(c.yaml, "kind: script"):
			spec = map[string]any{"kind": "script", "run": `echo "FAIL: not yet"; exit 1`}
		case strings.Contains(c.yaml, "5002"):
			spec = map[string]any{"kind": "http", "port": 5002}
		default:
			spec = map[string]any{"kind": "http", "port": 5001, "contains": "hello world!"}
		}
		checks[fmt.Sprint(i)] = spec
	}
	lab := liveLab(t, checks)
	live := grader.NewLive(grader.LiveOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(live.Close)
	w := live.Watch(grader.Target{SandboxID: "sb-fake", Learner: "alice", Lab: lab, Sandbox: sb})
	updates, cancel := w.Subscribe()
	defer cancel()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case r := <-updates:
			evaluated := 0
			for _, c := range r.Steps[0].Checks {
				if c.State == grader.StatePassed {
					t.Fatalf("check %s passed in a fooled shell: %+v", c.ID, c)
				}
				if c.State != grader.StatePending {
					evaluated++
				}
			}
			if evaluated < len(fooledChecks) {
				continue
			}
			if n := sb.execs.Load(); n != 0 {
				t.Fatalf("%d commands ran in the learner's shell", n)
			}
			return
		case <-deadline:
			t.Fatalf("no evaluation: %+v", w.Latest())
		}
	}
}
