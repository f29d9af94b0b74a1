package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/sandbox/engine/image"
)

func TestParseBootstrapList(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"all", []string{"busybox", "python", "sandbox"}, ""},
		{"none", nil, ""},
		{"sandbox,busybox", []string{"busybox", "sandbox"}, ""},
		{" python ", []string{"python"}, ""},
		{"python,nginx", nil, `--bootstrap: unknown image "nginx" (known: busybox, python, sandbox, or all, none)`},
		{"python,", nil, `unknown image ""`},
	}
	for _, tt := range tests {
		got, err := parseBootstrapList(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseBootstrapList(%q) error = %v; want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("parseBootstrapList(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestPhaseOf(t *testing.T) {
	for line, want := range map[string]string{
		"python:3.11-slim: I: downloading packages with apt...":                           "downloading packages with apt",
		"python:3.11-slim: I: using /tmp/labd-bootstrap-1/mmdebstrap.x as tempdir":        "",
		"python:3.11-slim: W: Download is performed unsandboxed":                          "",
		"python:3.11-slim: building from Debian bookworm packages with mmdebstrap: a b c": "building from Debian bookworm packages with mmdebstrap: a b c",
		"busybox:latest: done: 0123456789ab":                                              "done: 0123456789ab",
	} {
		if got := phaseOf(line); got != want {
			t.Errorf("phaseOf(%q) = %q; want %q", line, got, want)
		}
	}
}

var bootServingRE = regexp.MustCompile(`msg="labd serving" addr=(http://\S+)`)

// bootServe runs `labd serve` in this process over a content folder
// with one lab needing the python stand-in, and returns its URL, its log
// and a stop function returning runServe's error.
func bootServe(t *testing.T, data string, args ...string) (string, *syncBuffer, func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("labd serve's engine needs root (namespaces, overlay mounts)")
	}
	content := t.TempDir()
	lab := filepath.Join(content, "flask")
	if err := os.Mkdir(lab, 0o755); err != nil {
		t.Fatal(err)
	}
	md := "---\ntitle: Flask\nsummary: S\nduration: 5 min\nlevel: beginner\nimages: [python:3.11-slim]\n---\nIntro.\n\n## Build\n\nText.\n"
	if err := os.WriteFile(filepath.Join(lab, "lab.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	args = append([]string{"--addr", "127.0.0.1:0", "--content", content, "--data", data, "--registry-addr", "off"}, args...)
	go func() { done <- runServe(ctx, args, io.Discard, logs) }()
	var url string
	deadline := time.Now().Add(60 * time.Second)
	for url == "" {
		if m := bootServingRE.FindStringSubmatch(logs.String()); m != nil {
			url = m[1]
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("labd serve ended before serving: %v\n%s", err, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("labd serve did not serve within 60 s:\n%s", logs)
		}
	}
	stopped := false
	var stopErr error
	stop := func() error {
		if stopped {
			return stopErr
		}
		stopped = true
		cancel()
		select {
		case stopErr = <-done:
		case <-time.After(90 * time.Second):
			t.Fatalf("labd serve did not stop within 90 s of the cancel:\n%s", logs)
		}
		return stopErr
	}
	t.Cleanup(func() { stop() })
	return url, logs, stop
}

type bootStatusJSON struct {
	State   string   `json:"state"`
	Message string   `json:"message"`
	Phase   string   `json:"phase"`
	Errors  []string `json:"errors"`
	Notes   []string `json:"notes"`
	Poll    bool     `json:"poll"`
}

func bootStatus(t *testing.T, url string) bootStatusJSON {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st bootStatusJSON
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return st
}

func bootPage(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// labd serve on an empty data dir with the Debian mirror out of reach:
// it serves at once, makes busybox, says on the page and in the log that
// python could not be made and how to import it instead; meanwhile a
// `labd images bootstrap` on the same data dir is refused; after serve
// stops, it runs.
func TestServeBootstrapOffline(t *testing.T) {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Fatalf("mmdebstrap missing: apt-get install mmdebstrap (%v)", err)
	}
	debianSources = []string{"deb [trusted=yes] http://127.0.0.1:9/debian bookworm main"}
	t.Cleanup(func() { debianSources = nil })
	data := t.TempDir()
	url, logs, stop := bootServe(t, data, "--bootstrap", "busybox,python")

	// Served before the bootstrap is done: the banner says what it does.
	if page := bootPage(t, url+"/"); !strings.Contains(page, `id="bootstrap-banner"`) || !strings.Contains(page, "bootstrap.js") {
		t.Errorf("no banner on the first page:\n%s", page)
	}

	// The store is serve's while it runs.
	var out, errOut bytes.Buffer
	err := runImages(context.Background(), []string{"bootstrap", "busybox", "--data", data}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "in use by pid") || !strings.Contains(err.Error(), "labd serve") || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("labd images bootstrap beside labd serve: %v", err)
	}

	var st bootStatusJSON
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st = bootStatus(t, url+"/bootstrap/status?lab=flask")
		if !st.Poll {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bootstrap still running after 3 minutes: %+v\n%s", st, logs)
		}
		time.Sleep(time.Second)
	}
	if st.State != "failed" || !strings.Contains(st.Message, "Base image python could not be prepared") {
		t.Errorf("status = %+v", st)
	}
	if len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "not reachable") || !strings.Contains(st.Errors[0], "127.0.0.1:9") ||
		!strings.Contains(st.Errors[0], "labd images import") {
		t.Errorf("errors = %q", st.Errors)
	}
	if len(st.Notes) != 1 || !strings.Contains(st.Notes[0], "This lab needs the image python:3.11-slim, which could not be prepared") {
		t.Errorf("notes = %q", st.Notes)
	}
	if page := bootPage(t, url+"/"); !strings.Contains(page, `data-state="failed"`) || !strings.Contains(page, "labd images import") {
		t.Errorf("the page does not show the failure:\n%s", page)
	}

	if err := stop(); err != nil {
		t.Errorf("labd serve: %v", err)
	}
	log := logs.String()
	for _, re := range []string{
		`msg="base image: preparing" image=busybox`,
		`msg="base image: ready" image=busybox id=[0-9a-f]{12} elapsed=\S+ size=[0-9.]+MB`,
		`msg="base image: preparing" image=python tags=python:3.11-slim,python:3`,
		`msg="base image: phase" image=python phase="building from Debian bookworm`,
		`msg="base image: failed" image=python elapsed=\S+ err="bootstrap python:3.11-slim: the Debian package mirror is not reachable`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("log lacks %s", re)
		}
	}

	// Serve has let go of the store: the CLI works, and finds busybox.
	out.Reset()
	if err := runImages(context.Background(), []string{"bootstrap", "busybox", "--data", data}, &out, &errOut); err != nil || !strings.Contains(out.String(), "busybox:latest: present") {
		t.Errorf("labd images bootstrap after serve: %v\n%s", err, out.String())
	}
}

// Stopping labd serve while it builds an image cancels mmdebstrap,
// leaves no partial image and releases the store.
func TestServeBootstrapCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an mmdebstrap build; skipped with -short")
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Fatalf("mmdebstrap missing: apt-get install mmdebstrap (%v)", err)
	}
	data := t.TempDir()
	url, logs, stop := bootServe(t, data, "--bootstrap", "python")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := bootStatus(t, url+"/bootstrap/status")
		// apt at work inside the chroot.
		if strings.HasPrefix(st.Phase, "running apt-get update") || strings.HasPrefix(st.Phase, "downloading") ||
			strings.HasPrefix(st.Phase, "extracting") || strings.HasPrefix(st.Phase, "installing") {
			break
		}
		if !st.Poll || time.Now().After(deadline) {
			t.Fatalf("no apt phase seen: %+v\n%s", st, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	start := time.Now()
	if err := stop(); err != nil {
		t.Errorf("labd serve: %v", err)
	}
	t.Logf("stopped %s after the cancel", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(logs.String(), `msg="base image: cancelled" image=python`) {
		t.Errorf("log lacks the cancel:\n%s", logs)
	}
	s, err := image.Open(filepath.Join(data, "engine"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.View(image.BaseView)
	if err != nil {
		t.Fatal(err)
	}
	if tags := base.Tags(); len(tags) != 0 {
		t.Errorf("tags after a cancelled bootstrap: %v", tags)
	}
	// No mmdebstrap (nor apt, dpkg) left behind.
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			if fields := strings.Fields(string(b[i+1:])); len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) {
				t.Errorf("child process left after the cancel: %s", b[:i+1])
			}
		}
	}
	for _, d := range []string{"tmp", "layers", "blobs/sha256"} {
		if ents, _ := os.ReadDir(filepath.Join(data, "engine", d)); len(ents) != 0 {
			t.Errorf("engine/%s after a cancelled bootstrap: %v", d, ents)
		}
	}
	release, err := image.LockStore(filepath.Join(data, "engine"), "test")
	if err != nil {
		t.Errorf("store still locked after serve stopped: %v", err)
	} else {
		release()
	}
}
