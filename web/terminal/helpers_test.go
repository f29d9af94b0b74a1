package terminal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

const waitTimeout = 20 * time.Second

// shellPTY is a real bash on a real pty, as the sandbox would provide.
type shellPTY struct {
	f   *os.File
	cmd *exec.Cmd
}

func (s *shellPTY) Read(p []byte) (int, error)     { return s.f.Read(p) }
func (s *shellPTY) Write(p []byte) (int, error)    { return s.f.Write(p) }
func (s *shellPTY) Resize(cols, rows uint16) error { return setSize(s.f, cols, rows) }

// pollable returns a non-blocking, poller-backed copy of f and closes f.
// pty.Open leaves the master in blocking mode (its ioctls call f.Fd()), and
// a blocking read or write is not interrupted by Close.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("dup pty: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty nonblock: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// setSize sets the window size without f.Fd(), which would switch the fd
// to blocking mode; a blocking pty master cannot be unblocked by Close,
// and the hub's goroutines would outlive the shell.
func setSize(f *os.File, cols, rows uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	})
	return errors.Join(err, ierr)
}

// startShell starts an interactive bash with prompt "labd$ " on a pty.
func startShell(tb testing.TB, args ...string) *shellPTY {
	tb.Helper()
	if len(args) == 0 {
		args = []string{"bash", "--norc", "--noprofile", "-i"}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + tb.TempDir(),
		"TERM=xterm-256color",
		"PS1=labd$ ",
		"HISTFILE=/dev/null",
		"LANG=C.UTF-8",
	}
	blocking, tty, err := pty.Open()
	if err != nil {
		tb.Fatalf("open pty: %v", err)
	}
	defer tty.Close()
	f, err := pollable(blocking)
	if err != nil {
		tb.Fatalf("pty: %v", err)
	}
	if err := setSize(f, 80, 24); err != nil {
		tb.Fatalf("set pty size: %v", err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		tb.Fatalf("start shell: %v", err)
	}
	s := &shellPTY{f: f, cmd: cmd}
	tb.Cleanup(s.kill)
	return s
}

// kill ends the shell the way a sandbox does: close the pty, kill, reap.
func (s *shellPTY) kill() {
	s.f.Close()
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// testServer serves one hub over a real websocket on 127.0.0.1.
type testServer struct {
	*httptest.Server
	hub     *Hub
	results chan error // Attach's return values
}

func newTestServer(tb testing.TB, hub *Hub, uo UpgradeOptions) *testServer {
	tb.Helper()
	ts := &testServer{hub: hub, results: make(chan error, 100)}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := Upgrade(w, r, uo)
		if err != nil {
			return
		}
		ts.results <- hub.Attach(r.Context(), conn)
	}))
	tb.Cleanup(ts.Close)
	return ts
}

func (ts *testServer) wsURL() string { return "ws" + strings.TrimPrefix(ts.URL, "http") }

// testClient is a browser tab: it reads every message in the background.
type testClient struct {
	tb testing.TB
	ws *websocket.Conn
	c  *Conn

	mu      sync.Mutex
	hello   *Hello
	tail    []byte // last maxTail bytes of output
	maxTail int
	total   int64
	notices []Notice
	pongs   [][]byte
	err     error // why reading stopped
	done    chan struct{}
}

func dialRaw(tb testing.TB, url string, h http.Header) (*websocket.Conn, *http.Response, error) {
	tb.Helper()
	d := websocket.Dialer{Subprotocols: []string{Subprotocol}, HandshakeTimeout: waitTimeout}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return d.DialContext(ctx, url, h)
}

func dial(tb testing.TB, ts *testServer) *testClient {
	tb.Helper()
	return dialTail(tb, ts, 1<<20)
}

// dialTail dials a client that keeps the last maxTail bytes of output.
func dialTail(tb testing.TB, ts *testServer, maxTail int) *testClient {
	tb.Helper()
	ws, _, err := dialRaw(tb, ts.wsURL(), nil)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tc := &testClient{tb: tb, ws: ws, c: NewConn(ws), maxTail: maxTail, done: make(chan struct{})}
	tb.Cleanup(func() { ws.Close(); <-tc.done })
	go tc.readLoop()
	return tc
}

func (tc *testClient) readLoop() {
	defer close(tc.done)
	for {
		m, err := tc.c.ReadMessage()
		tc.mu.Lock()
		if err != nil {
			tc.err = err
			tc.mu.Unlock()
			return
		}
		switch m := m.(type) {
		case Hello:
			tc.hello = &m
		case Output:
			tc.total += int64(len(m))
			tc.tail = append(tc.tail, m...)
			if over := len(tc.tail) - tc.maxTail; over > 0 {
				tc.tail = append(tc.tail[:0], tc.tail[over:]...)
			}
		case Notice:
			tc.notices = append(tc.notices, m)
		case Pong:
			tc.pongs = append(tc.pongs, bytes.Clone(m))
		}
		tc.mu.Unlock()
	}
}

func (tc *testClient) send(m Message) {
	tc.tb.Helper()
	if err := tc.c.WriteMessage(m); err != nil {
		tc.tb.Fatalf("send %v: %v", m.Type(), err)
	}
}

func (tc *testClient) typeLine(s string) { tc.tb.Helper(); tc.send(Input(s + "\r")) }

// waitFor polls until cond holds on the client's state.
func (tc *testClient) waitFor(what string, cond func(tc *testClient) bool) {
	tc.tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		tc.mu.Lock()
		ok := cond(tc)
		tc.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tc.mu.Lock()
			defer tc.mu.Unlock()
			tc.tb.Fatalf("timed out waiting for %s; err=%v; output tail:\n%q", what, tc.err, lastN(tc.tail, 2000))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (tc *testClient) waitOutput(s string) {
	tc.tb.Helper()
	tc.waitFor("output "+s, func(tc *testClient) bool { return bytes.Contains(tc.tail, []byte(s)) })
}

// output returns a copy of the output kept so far.
func (tc *testClient) output() string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return string(tc.tail)
}

// closeCode waits for the connection to end and returns the close code.
func (tc *testClient) closeCode() int {
	tc.tb.Helper()
	select {
	case <-tc.done:
	case <-time.After(waitTimeout):
		tc.tb.Fatalf("connection not closed")
	}
	var ce *websocket.CloseError
	if !errors.As(tc.err, &ce) {
		tc.tb.Fatalf("read error = %v, want a close frame", tc.err)
	}
	return ce.Code
}

func lastN(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// checkLeaks fails the test if goroutines started during it outlive it.
// Call it first, so its cleanup runs last.
func checkLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(waitTimeout)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// recvResult waits for one Attach return value.
func (ts *testServer) recvResult(tb testing.TB) error {
	tb.Helper()
	select {
	case err := <-ts.results:
		return err
	case <-time.After(waitTimeout):
		tb.Fatalf("Attach did not return")
		return nil
	}
}
