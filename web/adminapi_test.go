package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labd/labd/grader"
	"github.com/labd/labd/grader/progress"
	"github.com/labd/labd/web/terminal"
)

// adminServer is a learner-facing server and the admin API over the same
// Manager, progress store and registry accounts, as labd serve wires them.
type adminServer struct {
	*testServer
	api   *httptest.Server
	store *progress.Store
}

func newAdminServer(t *testing.T) *adminServer {
	t.Helper()
	store, err := progress.Open(context.Background(), filepath.Join(t.TempDir(), "labd.db"))
	if err != nil {
		t.Fatal(err)
	}
	live := grader.NewLive(grader.LiveOptions{Store: store})
	accts := openAccounts(t)
	// After the Manager's close (cleanups run last first): its sandboxes'
	// ends still reach the grader.
	t.Cleanup(func() {
		live.Close()
		store.Close()
	})
	var opts Options
	s := newTestServerIdle(t, "", 0, 0, func(o *Options) {
		o.Grader, o.InstructorToken, o.Accounts = live, "s3cret", accts
		opts = *o
	})
	api := httptest.NewServer(NewGradeAPI(opts))
	t.Cleanup(api.Close)
	return &adminServer{testServer: s, api: api, store: store}
}

// call sends method path to the admin API and decodes the answer into out
// (a GradeError for errors); it returns the status.
func (a *adminServer) call(t *testing.T, method, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, a.api.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		var e GradeError
		if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
			t.Fatalf("%s %s: %s, not a JSON error: %s", method, path, resp.Status, b)
		}
		if p, ok := out.(*GradeError); ok {
			*p = e
		}
		return resp.StatusCode
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, b)
	}
	return resp.StatusCode
}

// TestAdminAPI: the running sandboxes with their lab, learner and disk
// use; inspect; stop (the learner's terminal closes saying an instructor
// stopped it, the files stay); remove (the files go); unknown ids are 404
// with a message.
func TestAdminAPI(t *testing.T) {
	a := newAdminServer(t)
	alice := a.client(t)
	sid := sandboxOf(t, alice, a.URL)
	sb, _, ok := waitSandbox(t, a.mgr, sid)
	if !ok {
		t.Fatal("alice's sandbox did not start")
	}
	ws, conn := dial(t, alice, a.URL, sid)
	defer ws.Close()
	if err := os.WriteFile(filepath.Join(sb.Workspace(), "work.bin"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	bob := a.client(t)
	bobSid := sandboxOf(t, bob, a.URL)
	if _, _, ok := waitSandbox(t, a.mgr, bobSid); !ok {
		t.Fatal("bob's sandbox did not start")
	}

	var list []SandboxInfo
	if code := a.call(t, "GET", SandboxesPath, &list); code != 200 || len(list) != 2 {
		t.Fatalf("GET %s = %d, %d sandboxes, want 2: %+v", SandboxesPath, code, len(list), list)
	}
	var got SandboxInfo
	for _, si := range list {
		if si.ID == sid {
			got = si
		}
	}
	k := deriveKeys(testSecret)
	learner := learnerOf(t, alice, a.URL)
	if got.Lab != "hello-shell" || got.Learner != learner || got.Handle != k.handle(learner) || got.State != StateRunning {
		t.Errorf("alice's sandbox = %+v, want lab hello-shell, learner %s (%s), running", got, learner, k.handle(learner))
	}
	// nsbox has no cgroup: its workspace's size is what is known.
	if u := got.Usage; u == nil || u.Cgroup || !u.DiskWalked || u.Disk < 1<<20 || u.Disk > 2<<20 {
		t.Errorf("alice's usage = %+v, want about 1 MiB of disk, walked, no cgroup", u)
	}
	cells := got.Cells(time.Now())
	if len(cells) != len(SandboxColumns) || cells[0] != sid || cells[1] != "hello-shell" || cells[3] != StateRunning || cells[6] != "-" || !strings.HasPrefix(cells[8], "1MiB") {
		t.Errorf("cells = %q", cells)
	}

	var one SandboxInfo
	if code := a.call(t, "GET", SandboxesPath+"/"+sid, &one); code != 200 || one.ID != sid || one.Lab != "hello-shell" {
		t.Errorf("GET one = %d %+v", code, one)
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", SandboxesPath + "/sb-0000000000000000"},
		{"POST", SandboxesPath + "/sb-0000000000000000/stop"},
		{"DELETE", SandboxesPath + "/sb-0000000000000000"},
		{"DELETE", SandboxesPath + "/" + url.PathEscape("..")},
	} {
		var e GradeError
		if code := a.call(t, tc.method, tc.path, &e); code != http.StatusNotFound || !strings.Contains(e.Error, "sandbox") {
			t.Errorf("%s %s = %d %q, want 404 naming the sandbox", tc.method, tc.path, code, e.Error)
		}
	}

	// Stop: the terminal says who stopped it; the files stay.
	var stopped SandboxInfo
	if code := a.call(t, "POST", SandboxesPath+"/"+sid+"/stop", &stopped); code != 200 || stopped.State != StateStopped {
		t.Fatalf("stop = %d %+v", code, stopped)
	}
	if code, text := readUntilCloseText(t, ws, conn); code != terminal.CloseStopped || !strings.Contains(text, "instructor") {
		t.Errorf("terminal closed with %d %q, want %d saying an instructor stopped it", code, text, terminal.CloseStopped)
	}
	if stopped.Lab != "hello-shell" || stopped.Learner != learner || stopped.Usage == nil || stopped.Usage.Disk < 1<<20 {
		t.Errorf("stopped sandbox = %+v, want its lab, learner and files", stopped)
	}
	if code := a.call(t, "GET", SandboxesPath, &list); code != 200 || len(list) != 1 || list[0].ID != bobSid {
		t.Errorf("after stop: %d %+v, want bob's alone", code, list)
	}
	var e GradeError
	if code := a.call(t, "POST", SandboxesPath+"/"+sid+"/stop", &e); code != http.StatusNotFound || !strings.Contains(e.Error, "not running") {
		t.Errorf("second stop = %d %q, want 404 not running", code, e.Error)
	}

	// Remove: the stopped one's files, then bob's running one.
	var rm SandboxRemoved
	if code := a.call(t, "DELETE", SandboxesPath+"/"+sid, &rm); code != 200 || rm.Stopped || len(rm.Removed) != 1 {
		t.Errorf("remove stopped = %d %+v", code, rm)
	}
	if _, err := os.Stat(a.mgr.WorkspaceDir(sid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("alice's workspace after remove: %v", err)
	}
	if code := a.call(t, "DELETE", SandboxesPath+"/"+bobSid, &rm); code != 200 || !rm.Stopped {
		t.Errorf("remove running = %d %+v", code, rm)
	}
	if _, err := os.Stat(a.mgr.WorkspaceDir(bobSid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bob's workspace after remove: %v", err)
	}
	if code := a.call(t, "GET", SandboxesPath+"/"+sid, &e); code != http.StatusNotFound {
		t.Errorf("inspect after remove = %d, want 404", code)
	}
	// The learner comes back: a fresh sandbox, an empty workspace.
	again := sandboxOf(t, alice, a.URL)
	sb, _, ok = waitSandbox(t, a.mgr, again)
	if !ok || again != sid {
		t.Fatalf("alice's sandbox after remove: %s %v", again, ok)
	}
	if _, err := os.Stat(filepath.Join(sb.Workspace(), "work.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the removed file is back: %v", err)
	}
}

// readUntilCloseText reads until the server closes: the code and reason.
func readUntilCloseText(t *testing.T, ws *websocket.Conn, conn *terminal.Conn) (int, string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		_, err := conn.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		if err != nil {
			t.Fatalf("read: %v, want a close frame", err)
		}
	}
}

// TestInstructorSandboxes: the instructor page lists the running
// sandboxes with Stop and Remove forms; a form from another origin, a
// learner, and a Remove without its box ticked are refused; Stop and
// Remove work from the page.
func TestInstructorSandboxes(t *testing.T) {
	a := newAdminServer(t)
	alice := a.client(t)
	sid := sandboxOf(t, alice, a.URL)
	if _, _, ok := waitSandbox(t, a.mgr, sid); !ok {
		t.Fatal("sandbox did not start")
	}
	instr := a.client(t)
	if resp, _ := get(t, instr, a.URL+"/instructor?token=s3cret"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("instructor login = %d", resp.StatusCode)
	}
	_, page := get(t, instr, a.URL+"/instructor")
	for _, want := range []string{`id="sandboxes"`, `data-sandbox="` + sid + `"`, `action="/instructor/sandboxes/` + sid + `/stop"`,
		`action="/instructor/sandboxes/` + sid + `/remove"`, "<th>MEM</th>", "<td>hello-shell</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("instructor page lacks %s", want)
		}
	}

	post := func(c *http.Client, action, origin string, form url.Values) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", a.URL+"/instructor/sandboxes/"+sid+"/"+action, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	refused := []struct {
		name   string
		c      *http.Client
		action string
		origin string
		form   url.Values
		status int
	}{
		{"foreign origin", instr, "stop", "http://evil.example", nil, http.StatusForbidden},
		{"no origin", instr, "stop", "", nil, http.StatusForbidden},
		{"the learner", alice, "stop", a.URL, nil, http.StatusForbidden},
		{"remove unconfirmed", instr, "remove", a.URL, nil, http.StatusBadRequest},
		{"unknown action", instr, "reboot", a.URL, nil, http.StatusNotFound},
	}
	for _, tc := range refused {
		if resp, body := post(tc.c, tc.action, tc.origin, tc.form); resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d\n%s", tc.name, resp.StatusCode, tc.status, body)
		}
	}
	if _, _, live := a.mgr.Get(sid); !live {
		t.Fatal("a refused request stopped the sandbox")
	}
	if resp, body := post(instr, "stop", a.URL, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/instructor#sandboxes" {
		t.Fatalf("stop from the page = %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if _, _, live := a.mgr.Get(sid); live {
		t.Error("the sandbox runs after Stop")
	}
	if _, err := os.Stat(a.mgr.WorkspaceDir(sid)); err != nil {
		t.Errorf("Stop removed the workspace: %v", err)
	}
	if resp, body := post(instr, "remove", a.URL, url.Values{"confirm": {"yes"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("remove from the page = %d\n%s", resp.StatusCode, body)
	}
	if _, err := os.Stat(a.mgr.WorkspaceDir(sid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("workspace after Remove: %v", err)
	}
	if resp, _ := post(instr, "stop", a.URL, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("stop of a removed sandbox = %d, want 404", resp.StatusCode)
	}
}
