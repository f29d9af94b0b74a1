package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/web"
)

// admin runs `labd admin sandboxes ARGS` in-process: stdout, stderr and
// the error.
func admin(t *testing.T, data string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	err := runAdmin(ctx, append([]string{"sandboxes"}, append(args, "--data", data)...), &out, &errb)
	return out.String(), errb.String(), err
}

func adminList(t *testing.T, data string) []web.SandboxInfo {
	t.Helper()
	out, stderr, err := admin(t, data, "ls", "--json")
	if err != nil {
		t.Fatalf("ls --json: %v\n%s", err, stderr)
	}
	var list []web.SandboxInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	return list
}

// TestAdminSandboxes: `labd admin sandboxes` against a real labd serve on
// a temporary data dir: ls (table and JSON) with the sandbox's lab and
// its cgroup and disk, inspect, stop, rm (refused without --yes; then its
// workspace and its disk's mount are gone), unknown ids, and a clear
// error once serve has stopped.
func TestAdminSandboxes(t *testing.T) {
	testenv.Root(t, "sandboxes run in new namespaces, containers in the runtime")
	content, err := filepath.Abs("testdata/content")
	if err != nil {
		t.Fatal(err)
	}
	// Short: engine sockets live under it (107 bytes at most).
	data, err := os.MkdirTemp("", "labd-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })

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

	if list := adminList(t, data); len(list) != 0 {
		t.Fatalf("ls before any learner: %+v", list)
	}
	out, _, err := admin(t, data, "ls")
	if err != nil || strings.TrimSpace(out) != strings.Join(web.SandboxColumns, "  ") {
		t.Errorf("ls with no sandbox = %q, %v; want the header alone", out, err)
	}

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
	// The page answers before the sandbox runs.
	var si web.SandboxInfo
	for deadline := time.Now().Add(waitTimeout); si.State != web.StateRunning; time.Sleep(100 * time.Millisecond) {
		out, stderr, err := admin(t, data, "inspect", sid)
		if err != nil {
			t.Fatalf("inspect %s: %v\n%s", sid, err, stderr)
		}
		si = web.SandboxInfo{}
		if err := json.Unmarshal([]byte(out), &si); err != nil {
			t.Fatalf("inspect: %v\n%s", err, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s: %+v, not running\n%s", sid, si, logb.String())
		}
	}
	ws := filepath.Join(data, "sandboxes", sid, "workspace")
	if err := os.WriteFile(filepath.Join(ws, "work.bin"), bytes.Repeat([]byte{1}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	list := adminList(t, data)
	if len(list) != 1 || list[0].ID != sid || list[0].Lab != "grade-demo" || list[0].State != web.StateRunning || list[0].Learner == "" {
		t.Fatalf("ls --json = %+v", list)
	}
	u := list[0].Usage
	// The engine's sandbox: a cgroup (the simple shell itself runs
	// outside it, so its memory may be nothing yet) with the server's
	// limits, and a disk of its own holding the file.
	if u == nil || !u.Cgroup || u.MemoryLimit <= 0 || u.PidsLimit <= 0 || u.Disk < 1<<20 {
		t.Fatalf("usage = %+v, want the cgroup's limits and at least 1 MiB of disk\n%s", u, logb.String())
	}
	t.Logf("usage of a fresh sandbox with a 1 MiB file: %+v", *u)
	out, _, err = admin(t, data, "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.HasPrefix(lines[1], sid+" ") ||
		!strings.Contains(lines[1], " grade-demo ") || !strings.Contains(lines[1], " running ") {
		t.Errorf("ls = %v\n%s", err, out)
	}
	t.Logf("labd admin sandboxes ls:\n%s", out)

	if out, _, err := admin(t, data, "stop", sid); err != nil || !strings.Contains(out, sid+" stopped") {
		t.Fatalf("stop: %q, %v", out, err)
	}
	if list := adminList(t, data); len(list) != 0 {
		t.Errorf("ls after stop: %+v", list)
	}
	// Stopped, the workspace is kept in the sandbox's disk image
	// (unmounted with the sandbox: the Files view mounts it to read).
	disk := filepath.Join(filepath.Dir(ws), "disk.ext4")
	if _, err := os.Stat(disk); err != nil {
		t.Errorf("stop lost the workspace's disk: %v", err)
	}
	if _, _, err := admin(t, data, "rm", sid); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("rm without --yes = %v, want a refusal naming --yes", err)
	}
	if _, err := os.Stat(disk); err != nil {
		t.Errorf("a refused rm removed the workspace's disk: %v", err)
	}
	if out, stderr, err := admin(t, data, "rm", "-f", sid); err != nil || !strings.Contains(out, sid+" removed") {
		t.Fatalf("rm -f: %q, %v\n%s", out, err, stderr)
	}
	if _, err := os.Lstat(filepath.Join(data, "sandboxes", sid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sandbox directory after rm: %v", err)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mi), filepath.Join(data, "sandboxes")) {
		t.Errorf("mounts under the sandboxes' directory after rm (%v):\n%s", err, mi)
	}
	for _, args := range [][]string{{"rm", "--yes", sid}, {"stop", sid}, {"inspect", sid}} {
		_, stderr, err := admin(t, data, args...)
		if err == nil || !strings.Contains(stderr+err.Error(), sid) {
			t.Errorf("%s of a removed sandbox = %v, %q; want an error naming it", args[0], err, stderr)
		}
	}

	stopServe()
	_, _, err = admin(t, data, "ls")
	if err == nil || !strings.Contains(err.Error(), "no labd serve runs on "+data) {
		t.Errorf("ls without labd serve = %v, want it to say no labd serve runs", err)
	}
}

// TestAdminWithoutServe: the errors without a labd serve answering, and
// bad usage, need no sandbox.
func TestAdminWithoutServe(t *testing.T) {
	data, err := os.MkdirTemp("", "labd-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	if _, _, err := admin(t, data, "ls"); err == nil || !strings.Contains(err.Error(), "no labd serve runs on "+data) {
		t.Errorf("no socket: %v", err)
	}
	// A socket a killed labd serve left: nobody listens.
	ln, err := net.Listen("unix", filepath.Join(data, gradeSocketName))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"ls"}, "no labd serve answers"},
		{[]string{"stop", "sb-0000000000000000"}, "no labd serve answers"},
		{[]string{"rm", "sb-0000000000000000"}, "--yes"},
		{[]string{"inspect"}, "one sandbox ID"},
		{[]string{"stop"}, "IDs of the sandboxes"},
		{[]string{"ls", "sb-0000000000000000"}, "no sandbox IDs"},
	}
	for _, tt := range tests {
		if _, _, err := admin(t, data, tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
	var errb bytes.Buffer
	if err := runAdmin(context.Background(), []string{"sandboxes", "frobnicate"}, io.Discard, &errb); !errors.As(err, new(exitError)) || !strings.Contains(errb.String(), "usage: labd admin sandboxes ls") {
		t.Errorf("unknown verb: %v\n%s", err, errb.String())
	}
	if _, stderr, err := admin(t, data, "stop", "../x"); !errors.As(err, new(exitError)) || !strings.Contains(stderr, "not a sandbox ID") {
		t.Errorf("bad id: %v %q", err, stderr)
	}
}
