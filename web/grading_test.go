package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labd/labd/grader"
	"github.com/labd/labd/grader/progress"
	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
	"net/http/httptest"
)

type gradingServer struct {
	*httptest.Server
	mgr   *sandbox.Manager
	store *progress.Store
	live  *grader.Live
}

func newGradingServer(t *testing.T) *gradingServer {
	t.Helper()
	return newGradingServerWith(t, "testdata/content")
}

func newGradingServerWith(t *testing.T, content string) *gradingServer {
	t.Helper()
	testenv.Root(t, "sandboxes (namespaces)")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	data := t.TempDir()
	store, err := progress.Open(context.Background(), filepath.Join(data, "labd.db"))
	if err != nil {
		t.Fatal(err)
	}
	live := grader.NewLive(grader.LiveOptions{Store: store, Logger: quiet})
	mgr := sandbox.NewManager(nsbox.New(nsbox.Options{}), sandbox.ManagerOptions{DataDir: data, Logger: quiet, IdleTimeout: -1})
	srv := httptest.NewServer(New(Options{
		Logger: quiet, Catalog: labs.NewCatalog(content), Sandboxes: mgr,
		Secret: []byte("0123456789abcdef0123456789abcdef"), Grader: live, InstructorToken: "s3cret",
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		mgr.Close(ctx)
		live.Close()
		srv.Close()
		store.Close()
	})
	return &gradingServer{Server: srv, mgr: mgr, store: store, live: live}
}

func dialStatus(t *testing.T, c *http.Client, base, sid string, origin string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{Jar: c.Jar, Subprotocols: []string{StatusSubprotocol}, HandshakeTimeout: waitTimeout}
	return d.Dial("ws"+strings.TrimPrefix(base, "http")+"/sandboxes/"+sid+"/status", http.Header{"Origin": {origin}})
}

type statusMsg struct {
	Type   string           `json:"type"`
	Result grader.LabResult `json:"result"`
	Asked  []int            `json:"asked"`
}

// TestStatusWebsocket: a file written in the workspace turns the check
// green on the page's websocket; other learners and foreign origins are
// refused; the pass survives in the progress store and shows on the
// catalogue and in the instructor view.
func TestStatusWebsocket(t *testing.T) {
	s := newGradingServer(t)
	alice := (&testServer{Server: s.Server}).client(t)
	sid := sandboxOf(t, alice, s.URL)

	if _, resp, err := dialStatus(t, (&testServer{Server: s.Server}).client(t), s.URL, sid, s.URL); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another learner's status dial: err %v, resp %v; want 403", err, resp)
	}
	if _, resp, err := dialStatus(t, alice, s.URL, sid, "http://evil.example"); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin status dial: err %v, resp %v; want 403", err, resp)
	}
	ws, _, err := dialStatus(t, alice, s.URL, sid, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	read := func(want grader.State) statusMsg {
		t.Helper()
		ws.SetReadDeadline(time.Now().Add(waitTimeout))
		for {
			var m statusMsg
			if err := ws.ReadJSON(&m); err != nil {
				t.Fatalf("read status: %v", err)
			}
			if len(m.Result.Steps) > 0 && len(m.Result.Steps[0].Checks) > 0 && m.Result.Steps[0].Checks[0].State == want {
				return m
			}
		}
	}
	m := read(grader.StateFailed)
	if c := m.Result.Steps[0].Checks[0]; !strings.Contains(c.Message, "greeting.txt") {
		t.Fatalf("failed check message = %q, want it to name greeting.txt", c.Message)
	}
	// Nobody pressed Check: the page shows the failing check as "to do".
	if m.Asked == nil || len(m.Asked) != 0 {
		t.Fatalf("asked before any Check = %v, want []", m.Asked)
	}
	// Check on step 1: the answer is a result evaluated after the click,
	// listing step 1 in asked (the page then shows "not yet" in red).
	if err := ws.WriteJSON(map[string]any{"type": "check", "step": 1}); err != nil {
		t.Fatal(err)
	}
	for ws.SetReadDeadline(time.Now().Add(waitTimeout)); ; {
		var am statusMsg
		if err := ws.ReadJSON(&am); err != nil {
			t.Fatalf("read status after Check: %v", err)
		}
		if len(am.Asked) > 0 {
			if len(am.Asked) != 1 || am.Asked[0] != 1 || am.Result.Steps[0].Checks[0].State != grader.StateFailed {
				t.Fatalf("after Check on step 1: asked %v, check %+v", am.Asked, am.Result.Steps[0].Checks[0])
			}
			break
		}
	}
	sb, _, _ := waitSandbox(t, s.mgr, sid)
	start := time.Now()
	if err := os.WriteFile(filepath.Join(sb.Workspace(), "greeting.txt"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m = read(grader.StatePassed)
	t.Logf("file change → status on the websocket: %s", time.Since(start))
	if m.Result.Passed != 1 || m.Result.Steps[0].State != grader.StatePassed {
		t.Fatalf("after writing the file: %+v", m.Result)
	}
	// Sticky: removing the file does not undo the pass; Check re-evaluates.
	os.Remove(filepath.Join(sb.Workspace(), "greeting.txt"))
	if err := ws.WriteJSON(map[string]string{"type": "check"}); err != nil {
		t.Fatal(err)
	}
	m = read(grader.StatePassed)

	deadline := time.Now().Add(waitTimeout)
	for {
		p, err := s.store.Passed(context.Background(), learnerOf(t, alice, s.URL), "hello-shell")
		if err != nil {
			t.Fatal(err)
		}
		if len(p) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress store = %v, want one pass", p)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, body := get(t, alice, s.URL+"/"); !strings.Contains(body, `data-passed="1" data-total="1"`) {
		t.Fatalf("catalogue does not show the progress:\n%s", body)
	}

	// Instructor view: token required; CSV and JSON exports.
	ic := (&testServer{Server: s.Server}).client(t)
	if resp, _ := get(t, ic, s.URL+"/instructor"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/instructor without token = %d, want 401", resp.StatusCode)
	}
	if resp, _ := get(t, ic, s.URL+"/instructor?token=wrong"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("/instructor with a wrong token = %d, want 403", resp.StatusCode)
	}
	if resp, _ := get(t, ic, s.URL+"/instructor?token=s3cret"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("/instructor?token= = %d, want 303 to drop the token from the URL", resp.StatusCode)
	}
	if resp, body := get(t, ic, s.URL+"/instructor"); resp.StatusCode != 200 || !strings.Contains(body, "✓") || !strings.Contains(body, `<td class="score">3/3</td>`) {
		t.Fatalf("/instructor = %d:\n%s", resp.StatusCode, body)
	}
	if _, body := get(t, ic, s.URL+"/instructor.csv"); !strings.Contains(body, "hello-shell,1,") || !strings.Contains(body, ",1,1,3,3,") || !strings.HasPrefix(body, "learner,lab,step,title,checks_passed,checks_total,score,max_score,passed_at") {
		t.Fatalf("CSV export:\n%s", body)
	}
	if _, body := get(t, ic, s.URL+"/instructor.xml"); !strings.Contains(body, `<property name="score" value="3"></property>`) || !strings.Contains(body, `<testsuite name="hello-shell/`) || !strings.Contains(body, `tests="1" failures="0"`) {
		t.Fatalf("JUnit export:\n%s", body)
	}
	_, body := get(t, ic, s.URL+"/instructor.json")
	var rows []InstructorRow
	if err := json.Unmarshal([]byte(body), &rows); err != nil || len(rows) != 1 || rows[0].Passed != 1 || rows[0].Steps[0].PassedAt == nil || rows[0].Score != 3 || rows[0].MaxScore != 3 {
		t.Fatalf("JSON export (%v):\n%s", err, body)
	}
	// The learner's sandbox is running: the instructor can open its port
	// and files.
	if rows[0].Sandbox == "" {
		t.Fatalf("JSON export has no running sandbox:\n%s", body)
	}
	if _, page := get(t, ic, s.URL+"/instructor"); !strings.Contains(page, `href="/sandboxes/`+rows[0].Sandbox+`/ports?port=5001"`) {
		t.Errorf("/instructor has no port link to %s:\n%s", rows[0].Sandbox, page)
	}
}

func learnerOf(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", base, nil)
	for _, ck := range c.Jar.Cookies(req.URL) {
		if ck.Name == cookieName {
			id, _, _ := strings.Cut(ck.Value, ".")
			return id
		}
	}
	t.Fatal("no learner cookie")
	return ""
}
