package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/sandbox/nsbox"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/grade")

func TestMain(m *testing.M) {
	nsbox.Reexec() // sandboxes re-execute this test binary as their init
	os.Exit(m.Run())
}

// waitTimeout bounds every wait; generous for a loaded 2-core machine.
const waitTimeout = 60 * time.Second

// syncBuffer collects a log written from several goroutines (labd
// serve's) while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	servingRE = regexp.MustCompile(`msg="labd serving" addr=(http://\S+)`)
	sandboxRE = regexp.MustCompile(`data-sandbox="(sb-[0-9a-f]+)"`)
	timeRE    = regexp.MustCompile(`"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)"`)
)

// grade runs `labd grade` in-process and returns stdout, stderr and the
// exit code.
func grade(t *testing.T, data, content, sid, format string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	err := runGrade(ctx, []string{"--sandbox", sid, "--lab", "grade-demo", "--data", data, "--content", content, "--format", format}, &out, &errb)
	code := 0
	var ee exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case err != nil:
		t.Fatalf("labd grade --format %s: %v\n%s", format, err, errb.String())
	}
	return out.String(), errb.String(), code
}

func gradeJSON(t *testing.T, data, content, sid string) (grader.LabResult, string) {
	t.Helper()
	out, stderr, _ := grade(t, data, content, sid, "json")
	var res grader.LabResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("labd grade --format json: %v\n%s\n%s", err, out, stderr)
	}
	return res, stderr
}

func checkState(res grader.LabResult, id string) grader.CheckResult {
	for _, st := range res.Steps {
		for _, c := range st.Checks {
			if c.ID == id {
				return c
			}
		}
	}
	return grader.CheckResult{}
}

// golden compares got with testdata/grade/name (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", "grade", name)
	if *update {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGradeThroughServe -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestGradeThroughServe: labd grade asks a running labd serve (same data
// directory) to grade a live sandbox, so a script check and an http check
// run inside the sandbox, in all three formats; with serve stopped, it
// grades alone and says which checks it could not run.
func TestGradeThroughServe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: sandboxes run in new namespaces, containers in the runtime (CI runs as root)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("the docker CLI is missing: apt-get install docker.io (deploy/deps.sh test)")
	}
	content, err := filepath.Abs("testdata/content")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.MkdirTemp("", "labd-grade-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	if err := runImages(context.Background(), []string{"bootstrap", "busybox", "--data", data}, io.Discard, io.Discard); err != nil {
		t.Fatalf("labd images bootstrap busybox: %v", err)
	}

	// labd serve, in-process: the same wiring as the binary.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logb syncBuffer
	served := make(chan error, 1)
	go func() {
		served <- runServe(ctx, []string{"--addr", "127.0.0.1:0", "--content", content, "--data", data,
			"--idle-timeout", "0", "--registry-addr", "off", "--bootstrap", "none", "--instructor-token", "t0ken",
			// The simple shell stands in for the sandbox image this test has not made.
			"--trusted-learners"}, io.Discard, &logb)
	}()
	stopServe := func() {
		stop()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("labd serve: %v\n%s", err, logb.String())
			}
		case <-time.After(waitTimeout):
			t.Fatalf("labd serve did not stop:\n%s", logb.String())
		}
	}
	defer func() {
		if ctx.Err() == nil {
			stopServe()
		}
	}()
	var base string
	for deadline := time.Now().Add(waitTimeout); base == ""; time.Sleep(50 * time.Millisecond) {
		if m := servingRE.FindStringSubmatch(logb.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("labd serve did not start:\n%s", logb.String())
		}
	}
	sock := filepath.Join(data, gradeSocketName)
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("grade socket %s: %v %v; want a 0600 socket", sock, err, st.Mode())
	}

	// A learner opens the lab: serve starts the sandbox.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: waitTimeout}
	resp, err := hc.Get(base + "/labs/grade-demo")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := sandboxRE.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("lab page: %s\n%s\n%s", resp.Status, page, logb.String())
	}
	sid := string(m[1])
	ws := filepath.Join(data, "sandboxes", sid, "workspace")

	// Nothing done yet: both sandbox checks run and fail.
	res, stderr := gradeJSON(t, data, content, sid)
	if c := checkState(res, "done-file"); c.State != grader.StateFailed || c.Message != "there is no done.txt in your home directory" {
		t.Fatalf("script check on a fresh sandbox = %s %q\n%s", c.State, c.Message, stderr)
	}
	if c := checkState(res, "web-answers"); c.State != grader.StateFailed || !strings.Contains(c.Message, "Nothing answers on port 5001") {
		t.Fatalf("http check on a fresh sandbox = %s %q\n%s", c.State, c.Message, stderr)
	}
	if !strings.Contains(stderr, "graded by labd serve") {
		t.Fatalf("stderr does not say serve graded: %q", stderr)
	}

	// The learner does the steps: a file in the workspace, and a web
	// server in a container publishing 5001 in the sandbox.
	if err := os.WriteFile(filepath.Join(ws, "done.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(ws, "site"), 0o755)
	os.WriteFile(filepath.Join(ws, "site", "index.html"), []byte("hello from labd\n"), 0o644)
	os.WriteFile(filepath.Join(ws, "Dockerfile"), []byte("FROM busybox\nCOPY site /www\nCMD [\"httpd\", \"-f\", \"-p\", \"5000\", \"-h\", \"/www\"]\n"), 0o644)
	docker := func(args ...string) {
		t.Helper()
		cmd := exec.Command("docker", args...)
		cmd.Dir = ws
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+filepath.Join(data, "sandboxes", sid, enginebox.SocketName), "DOCKER_BUILDKIT=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	docker("build", "-t", "web", ".")
	docker("run", "-d", "-p", "5001:5000", "web")
	// httpd may need a moment to listen.
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(200 * time.Millisecond) {
		res, stderr = gradeJSON(t, data, content, sid)
		if checkState(res, "web-answers").State == grader.StatePassed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("http check never passed: %+v\n%s", checkState(res, "web-answers"), stderr)
		}
	}
	if c := checkState(res, "done-file"); c.State != grader.StatePassed {
		t.Fatalf("script check after touch done.txt = %s %q", c.State, c.Message)
	}

	text, _, code := grade(t, data, content, sid, "text")
	if code != 1 {
		t.Fatalf("labd grade exit %d with notes.txt missing, want 1", code)
	}
	golden(t, "serve.txt", text)
	js, _, _ := grade(t, data, content, sid, "json")
	golden(t, "serve.json", timeRE.ReplaceAllString(js, `"<time>"`))
	junit, _, _ := grade(t, data, content, sid, "junit")
	golden(t, "serve.junit.xml", junit)

	// Serve stopped: labd grade grades alone and says what it could not run.
	stopServe()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("grade socket left after serve stopped: %v", err)
	}
	out, stderr, code := grade(t, data, content, sid, "json")
	if code != 1 || !strings.Contains(stderr, "graded without labd serve") || !strings.Contains(stderr, "could not run 2 check(s) that need the live sandbox: done-file (script), web-answers (http)") {
		t.Fatalf("labd grade without serve: exit %d, stderr:\n%s", code, stderr)
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"done-file", "web-answers"} {
		if c := checkState(res, id); c.State != grader.StateError || !strings.Contains(c.Message, "no labd serve runs on "+data) {
			t.Errorf("%s without serve = %s %q, want error naming the missing labd serve", id, c.State, c.Message)
		}
	}
	golden(t, "alone.json", strings.ReplaceAll(timeRE.ReplaceAllString(out, `"<time>"`), data, "<data>"))

	// A socket left by a killed labd serve: nobody answers, labd grade
	// still grades alone; a new labd serve replaces the socket.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, stderr, _ := grade(t, data, content, sid, "text"); !strings.Contains(stderr, "no labd serve answers on "+sock) {
		t.Fatalf("labd grade with a stale socket, stderr:\n%s", stderr)
	}
	l2, err := listenGradeSocket(sock)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	defer l2.Close()
	if _, err := listenGradeSocket(sock); err == nil || !strings.Contains(err.Error(), "another labd serve") {
		t.Fatalf("second listener on a live socket: %v, want 'another labd serve'", err)
	}
}
