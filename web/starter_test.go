package web

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// "Start from this step" runs the solution of the earlier steps in the
// learner's sandbox; a setup that fails says so plainly and leaves the
// workspace as it was.
func TestStartFromStep(t *testing.T) {
	s := newTestServerIdle(t, "testdata/starter-content", 0, 0)
	c := s.client(t)
	resp, body := get(t, c, s.URL+"/labs/setup-lab")
	if resp.StatusCode != 200 {
		t.Fatalf("lab page = %d", resp.StatusCode)
	}
	for _, want := range []string{`action="/labs/setup-lab/steps/2/start"`, `action="/labs/setup-lab/steps/3/start"`, "Start from this step"} {
		if !strings.Contains(body, want) {
			t.Errorf("lab page lacks %q", want)
		}
	}
	if strings.Contains(body, `action="/labs/setup-lab/steps/1/start"`) {
		t.Error("the first step offers a setup")
	}
	sid := sandboxAttrOf(t, body)
	if _, _, ok := waitSandbox(t, s.mgr, sid); !ok {
		t.Fatal("no sandbox")
	}
	ws := s.mgr.WorkspaceDir(sid)
	os.WriteFile(filepath.Join(ws, "mine.txt"), []byte("mine\n"), 0o644)

	start := s.URL + "/labs/setup-lab/steps/2/start"
	if got := postForm(t, c, start, "https://evil.example", ""); got != http.StatusForbidden {
		t.Errorf("another site's start = %d, want 403", got)
	}
	if got := postForm(t, c, s.URL+"/labs/setup-lab/steps/9/start", s.URL, ""); got != http.StatusNotFound {
		t.Errorf("a step that does not exist = %d, want 404", got)
	}
	if got := postForm(t, c, start, s.URL, ""); got != http.StatusSeeOther {
		t.Fatalf("start from step 2 = %d, want 303", got)
	}
	b, _ := os.ReadFile(filepath.Join(ws, "one.txt"))
	if string(b) != "one\n" {
		t.Errorf("after the setup of step 2, one.txt = %q", b)
	}
	// Step 3's setup block fails half way: what it wrote is gone again.
	req, _ := http.NewRequest("POST", s.URL+"/labs/setup-lab/steps/3/start", strings.NewReader(""))
	req.Header.Set("Origin", s.URL)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r3, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(r3.Body)
	r3.Body.Close()
	if r3.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(page), "Could not set up step 3") || !strings.Contains(string(page), "it last printed: no network here") || !strings.Contains(string(page), "Your files are as they were before") {
		t.Errorf("failed setup = %d:\n%s", r3.StatusCode, page)
	}
	if _, err := os.Stat(filepath.Join(ws, "half.txt")); !os.IsNotExist(err) {
		t.Errorf("the failed setup's file stayed: %v", err)
	}
	for name, want := range map[string]string{"mine.txt": "mine\n", "one.txt": "one\n"} {
		if b, _ := os.ReadFile(filepath.Join(ws, name)); string(b) != want {
			t.Errorf("after the failed setup %s = %q, want %q", name, b, want)
		}
	}

	// Attack: a second setup while one runs (a learner's double click, or
	// a flood) is refused; the first finishes.
	first := make(chan int, 1)
	go func() { first <- postForm(t, c, s.URL+"/labs/setup-lab/steps/4/start", s.URL, "") }()
	deadline := time.Now().Add(waitTimeout)
	for {
		if _, err := os.Stat(filepath.Join(ws, "started.txt")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow setup did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range []string{"2", "4"} {
		if got := postForm(t, c, s.URL+"/labs/setup-lab/steps/"+n+"/start", s.URL, ""); got != http.StatusConflict {
			t.Errorf("a setup of step %s during another = %d, want 409", n, got)
		}
	}
	if got := <-first; got != http.StatusSeeOther {
		t.Errorf("the slow setup = %d, want 303", got)
	}
}
