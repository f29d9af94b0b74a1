package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
	"github.com/labd/labd/web/terminal"
)

// nextNotice reads until a warning notice arrives.
func nextNotice(t *testing.T, ws *websocket.Conn, conn *terminal.Conn) terminal.Notice {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		m, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v, want a notice", err)
		}
		if n, ok := m.(terminal.Notice); ok && n.Kind == terminal.NoticeWarning {
			return n
		}
	}
}

func lifecycleServer(t *testing.T, opts sandbox.ManagerOptions) *testServer {
	t.Helper()
	opts.DataDir = t.TempDir()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr := sandbox.NewManager(nsbox.New(nsbox.Options{}), opts)
	t.Cleanup(func() { mgr.Close(context.Background()) })
	s := newTestServerIdle(t, "", 0, 100*time.Millisecond, func(o *Options) { o.Sandboxes = mgr })
	s.mgr = mgr
	return s
}

func post(t *testing.T, c *http.Client, url, origin string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, nil)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The idle warning reaches the learner's terminal (and a tab opened after
// it) with its end and the "I'm still here" action; that button (only the
// owner's, from labd's page) withdraws it and puts the end off; left
// alone, the sandbox ends with the idle close code.
func TestIdleWarningInPage(t *testing.T) {
	s := lifecycleServer(t, sandbox.ManagerOptions{IdleTimeout: 3 * time.Second, WarnBefore: 2 * time.Second})
	owner := s.client(t)
	sid := sandboxOf(t, owner, s.URL)
	ws, conn := dial(t, owner, s.URL, sid)
	defer ws.Close()
	n := nextNotice(t, ws, conn)
	if n.Action != "still-here" || !strings.Contains(n.Message, "idle") || n.Ends == 0 {
		t.Fatalf("idle warning %+v", n)
	}
	// A second tab, opened after the warning, gets it too.
	ws2, conn2 := dial(t, owner, s.URL, sid)
	if n2 := nextNotice(t, ws2, conn2); n2 != n {
		t.Errorf("late tab's notice %+v, want %+v", n2, n)
	}
	ws2.Close()

	other := s.client(t)
	sandboxOf(t, other, s.URL)
	for _, c := range []struct {
		name   string
		c      *http.Client
		origin string
		want   int
	}{
		{"another learner", other, s.URL, http.StatusForbidden},
		{"another site", owner, "https://evil.example", http.StatusForbidden},
		{"the owner", owner, s.URL, http.StatusNoContent},
	} {
		if got := post(t, c.c, s.URL+"/sandboxes/"+sid+"/touch", c.origin); got != c.want {
			t.Errorf("%s: touch answered %d, want %d", c.name, got, c.want)
		}
	}
	if w := nextNotice(t, ws, conn); w.Message != "" {
		t.Errorf("after the touch: %+v, want the warning withdrawn", w)
	}
	if n3 := nextNotice(t, ws, conn); n3.Ends <= n.Ends {
		t.Errorf("next warning ends %d, want after the first's %d", n3.Ends, n.Ends)
	}
	if code := readUntilClose(t, ws, conn); code != terminal.CloseIdle {
		t.Errorf("close code %d, want %d (idle)", code, terminal.CloseIdle)
	}
}

// The server's maximum lifetime ends a busy sandbox, after a warning
// without the idle button, with its own close code.
func TestLifetimeInPage(t *testing.T) {
	s := lifecycleServer(t, sandbox.ManagerOptions{IdleTimeout: time.Hour, MaxLifetime: 3 * time.Second, WarnBefore: 2 * time.Second})
	owner := s.client(t)
	sid := sandboxOf(t, owner, s.URL)
	ws, conn := dial(t, owner, s.URL, sid)
	defer ws.Close()
	n := nextNotice(t, ws, conn)
	if n.Action != "" || !strings.Contains(n.Message, "time limit") {
		t.Errorf("lifetime warning %+v", n)
	}
	if code := readUntilClose(t, ws, conn); code != terminal.CloseLifetime {
		t.Errorf("close code %d, want %d (lifetime)", code, terminal.CloseLifetime)
	}
}

// "Reset my sandbox": only the learner's own, from labd's page; it ends
// the sandbox (the terminal says so), keeps the files or deletes them as
// chosen, and the next page load starts a fresh one.
func TestResetSandbox(t *testing.T) {
	s := lifecycleServer(t, sandbox.ManagerOptions{IdleTimeout: time.Hour})
	owner := s.client(t)
	sid := sandboxOf(t, owner, s.URL)
	sb, _, ok := waitSandbox(t, s.mgr, sid)
	if !ok {
		t.Fatal("no sandbox")
	}
	if err := os.WriteFile(filepath.Join(sb.Workspace(), "mine.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ws, conn := dial(t, owner, s.URL, sid)
	defer ws.Close()
	reset := s.URL + "/labs/hello-shell/reset"
	for _, c := range []struct {
		name   string
		c      *http.Client
		origin string
		want   int
	}{
		{"no learner", &http.Client{CheckRedirect: owner.CheckRedirect}, s.URL, http.StatusForbidden},
		{"another site", owner, "https://evil.example", http.StatusForbidden},
	} {
		if got := postForm(t, c.c, reset, c.origin, "keep=no"); got != c.want {
			t.Errorf("%s: reset answered %d, want %d", c.name, got, c.want)
		}
	}
	if _, _, ok := s.mgr.Get(sid); !ok {
		t.Fatal("a refused reset ended the sandbox")
	}
	if got := postForm(t, owner, reset, s.URL, "keep=yes"); got != http.StatusSeeOther {
		t.Fatalf("reset keeping files: %d, want 303", got)
	}
	if code := readUntilClose(t, ws, conn); code != terminal.CloseDestroyed {
		t.Errorf("close code %d, want %d", code, terminal.CloseDestroyed)
	}
	if _, err := os.Stat(filepath.Join(s.mgr.WorkspaceDir(sid), "mine.txt")); err != nil {
		t.Errorf("reset keeping files lost them: %v", err)
	}
	sandboxOf(t, owner, s.URL)
	if _, _, ok := waitSandbox(t, s.mgr, sid); !ok {
		t.Fatal("no fresh sandbox after the reset")
	}
	if got := postForm(t, owner, reset, s.URL, "keep=no"); got != http.StatusSeeOther {
		t.Fatalf("reset deleting files: %d, want 303", got)
	}
	if _, err := os.Stat(filepath.Join(s.mgr.WorkspaceDir(sid), "mine.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reset deleting files kept them: %v", err)
	}
}

func postForm(t *testing.T, c *http.Client, u, origin, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
