package web

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// A lab's workspace/ starts a learner's new workspace; a kept workspace
// is the learner's and stays as they left it; a fresh one starts again.
func TestStarterFiles(t *testing.T) {
	s := newTestServerIdle(t, "testdata/starter-content", 0, 0)
	c := s.client(t)
	open := func() string {
		t.Helper()
		resp, body := get(t, c, s.URL+"/labs/starter-lab")
		if resp.StatusCode != 200 {
			t.Fatalf("lab page = %d", resp.StatusCode)
		}
		sid := sandboxAttrOf(t, body)
		if _, _, ok := waitSandbox(t, s.mgr, sid); !ok {
			t.Fatal("no sandbox")
		}
		return sid
	}
	read := func(sid, name string) string {
		b, err := os.ReadFile(filepath.Join(s.mgr.WorkspaceDir(sid), name))
		if err != nil {
			return "missing"
		}
		return string(b)
	}
	sid := open()
	if got := read(sid, "app.py"); got != "print(\"hello\")\n" {
		t.Fatalf("app.py = %q, want the starter file", got)
	}
	if got := read(sid, "data/notes.txt"); got != "notes\n" {
		t.Fatalf("data/notes.txt = %q, want the starter file", got)
	}
	ws := s.mgr.WorkspaceDir(sid)
	if err := os.WriteFile(filepath.Join(ws, "app.py"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(ws, "data/notes.txt")); err != nil {
		t.Fatal(err)
	}

	reset := s.URL + "/labs/starter-lab/reset"
	if got := postForm(t, c, reset, s.URL, "keep=yes"); got != http.StatusSeeOther {
		t.Fatalf("reset keeping files: %d", got)
	}
	sid = open()
	if got := read(sid, "app.py"); got != "mine\n" {
		t.Errorf("a kept workspace's app.py = %q, want the learner's", got)
	}
	if got := read(sid, "data/notes.txt"); got != "missing" {
		t.Errorf("a file the learner removed came back: %q", got)
	}

	if got := postForm(t, c, reset, s.URL, "keep=no"); got != http.StatusSeeOther {
		t.Fatalf("reset deleting files: %d", got)
	}
	sid = open()
	if got := read(sid, "app.py"); got != "print(\"hello\")\n" {
		t.Errorf("a fresh workspace's app.py = %q, want the starter file", got)
	}
}
