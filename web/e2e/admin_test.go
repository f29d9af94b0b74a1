package e2e_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	"github.com/labd/labd/web"
	"github.com/labd/labd/web/terminal"
)

// TestAdminSandboxes: an instructor's view of a class from a shell. A
// learner opens a lab (the container shell, in its own cgroup) and works;
// `labd admin sandboxes ls --json` against the running labd serve shows
// the sandbox with the memory, CPU and processes it uses; `stop` ends it
// and the learner's terminal closes saying an instructor stopped it; `rm`
// removes its files, workspace included.
//
// The base images come from LABD_E2E_LABS_DATA when set (as make
// test-e2e), else a fresh data dir is bootstrapped.
func TestAdminSandboxes(t *testing.T) {
	root := moduleRoot(t)
	testenv.Root(t, "sandboxes run in new namespaces")
	bin := buildLabd(t, root)
	data := os.Getenv("LABD_E2E_LABS_DATA")
	if data == "" {
		// Short: the engine socket's path must fit in 107 bytes.
		var err error
		if data, err = os.MkdirTemp("", "labd-admin-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(data) })
	}
	data, _ = filepath.Abs(data)
	for _, img := range []string{"busybox", "sandbox"} {
		if out, err := exec.Command(bin, "images", "bootstrap", img, "--data", data).CombinedOutput(); err != nil {
			t.Fatalf("labd images bootstrap %s --data %s: %v\n%s", img, data, err, out)
		}
	}
	srv := serveLabd(t, bin, "--addr", "127.0.0.1:0", "--content", filepath.Join(root, "web/testdata/content"),
		"--data", data, "--idle-timeout", "30m", "--registry-addr", freeLoopbackAddr(t))
	admin := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"admin", "sandboxes"}, args...)...)
		cmd.Env = append(os.Environ(), "LABD_DATA="+data)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out), errors.New(err.Error() + ": " + stderr.String())
		}
		return string(out), nil
	}

	l := openLab(t, srv, "hello-shell")
	l.waitPrompt(t)
	// A second terminal of the same learner watches how it ends.
	d := websocket.Dialer{Jar: l.c.Jar, Subprotocols: []string{terminal.Subprotocol}, HandshakeTimeout: waitTimeout}
	watch, _, err := d.Dial("ws"+strings.TrimPrefix(srv.url, "http")+"/sandboxes/"+l.sid+"/terminal", http.Header{"Origin": {srv.url}})
	if err != nil {
		t.Fatalf("dial terminal: %v", err)
	}
	defer watch.Close()
	closed := make(chan *websocket.CloseError, 1)
	go func() {
		conn := terminal.NewConn(watch)
		for {
			if _, err := conn.ReadMessage(); err != nil {
				var ce *websocket.CloseError
				errors.As(err, &ce)
				closed <- ce
				return
			}
		}
	}()
	// Work that takes CPU and memory (page cache of the file written).
	work, code, ok := l.sh(`head -c 64000000 /dev/urandom > big.bin && sha256sum big.bin`, time.Minute)
	if !ok || code != 0 || len(strings.Fields(work)) == 0 {
		t.Fatalf("learner's work: exit %d, %q", code, work)
	}
	wantSum := strings.Fields(work)[0]

	out, err := admin("ls", "--json")
	if err != nil {
		t.Fatalf("labd admin sandboxes ls --json: %v\nlabd log:\n%s", err, tail(srv.log(), 3000))
	}
	var list []web.SandboxInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	var si *web.SandboxInfo
	for i := range list {
		if list[i].ID == l.sid {
			si = &list[i]
		}
	}
	if si == nil {
		t.Fatalf("ls --json does not list the learner's sandbox %s:\n%s", l.sid, out)
	}
	u := si.Usage
	if si.Lab != "hello-shell" || si.State != web.StateRunning || si.Handle == "" || u == nil || !u.Cgroup {
		t.Fatalf("the learner's sandbox = %+v (usage %+v), want hello-shell, running, a handle and the cgroup's figures", si, u)
	}
	if u.Memory <= 0 || u.CPUSeconds <= 0 || u.Pids <= 0 || u.Disk < 64e6 || u.MemoryLimit <= 0 {
		t.Errorf("usage = %+v: want memory, CPU, processes and the 64 MB file", *u)
	}
	t.Logf("usage after writing 64 MB of random data: %+v (instance %q)", *u, si.Instance)
	start := time.Now()
	table, err := admin("ls")
	took := time.Since(start)
	if err != nil || !strings.Contains(table, l.sid) || !strings.Contains(table, "hello-shell") {
		t.Errorf("ls: %v\n%s", err, table)
	}
	t.Logf("labd admin sandboxes ls (%s):\n%s", took.Round(time.Millisecond), table)

	if out, err := admin("stop", l.sid); err != nil || !strings.Contains(out, l.sid+" stopped") {
		t.Fatalf("stop: %q, %v", out, err)
	}
	select {
	case ce := <-closed:
		if ce == nil || ce.Code != terminal.CloseStopped || !strings.Contains(ce.Text, "instructor") {
			t.Errorf("the learner's terminal closed with %+v, want %d saying an instructor stopped it", ce, terminal.CloseStopped)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the learner's terminal did not close after stop")
	}
	dirs := []string{filepath.Join(data, "sandboxes", l.sid)}
	if si.Instance != "" {
		dirs = append(dirs, filepath.Join(data, "sandboxes", si.Instance))
	}
	// Stopped, the workspace is kept in the sandbox's disk image, not
	// mounted: the instructor's Files view mounts it for the request.
	if sum := keptFileSum(t, srv, data, l.sid, "big.bin"); sum != wantSum {
		t.Errorf("stop lost the workspace: big.bin through the instructor's Files view has sha256 %q, want %q", sum, wantSum)
	}
	// The Files view lets go of the disk once its handler returns, which
	// may be just after the client has read the last byte.
	for _, d := range dirs {
		deadline := time.Now().Add(waitTimeout)
		for m := mountinfo.Under(d); len(m) != 0; m = mountinfo.Under(d) {
			if time.Now().After(deadline) {
				t.Errorf("mounts of the stopped sandbox after reading its file, want none: %v", m)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	if out, err := admin("rm", "--yes", l.sid); err != nil || !strings.Contains(out, l.sid+" removed") {
		t.Fatalf("rm: %q, %v", out, err)
	}
	for _, d := range dirs {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after rm: %v, want it gone", d, err)
		}
	}
	for _, d := range dirs {
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), d+"/") {
			t.Errorf("a mount under %s is left after rm", d)
		}
	}
	if _, err := admin("inspect", l.sid); err == nil || !strings.Contains(err.Error(), "no sandbox "+l.sid) {
		t.Errorf("inspect after rm = %v, want no such sandbox", err)
	}

	// A running sandbox, most likely one from the warm pool by now (its
	// files then live under the warm sandbox's name): rm stops it too.
	b := openLab(t, srv, "hello-shell")
	b.waitPrompt(t)
	out, err = admin("inspect", b.sid)
	var bi web.SandboxInfo
	if err != nil || json.Unmarshal([]byte(out), &bi) != nil || bi.State != web.StateRunning {
		t.Fatalf("inspect %s: %v\n%s", b.sid, err, out)
	}
	t.Logf("second learner's sandbox: instance %q", bi.Instance)
	dirs = []string{filepath.Join(data, "sandboxes", b.sid)}
	if bi.Instance != "" {
		dirs = append(dirs, filepath.Join(data, "sandboxes", bi.Instance))
	}
	if out, err := admin("rm", "-f", b.sid); err != nil || !strings.Contains(out, b.sid+" stopped and removed") {
		t.Fatalf("rm of a running sandbox: %q, %v", out, err)
	}
	for _, d := range dirs {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after rm: %v, want it gone", d, err)
		}
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), d+"/") {
			t.Errorf("a mount under %s is left after rm", d)
		}
	}
}

// keptFileSum downloads a file of an ended sandbox's workspace as the
// instructor (bearer token) and returns its sha256.
func keptFileSum(t *testing.T, srv *labd, data, sid, name string) string {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(data, "instructor-token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", srv.url+"/sandboxes/"+sid+"/files/download?path="+url.QueryEscape(name), nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("download %s of ended sandbox %s: %d %s", name, sid, resp.StatusCode, b)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
