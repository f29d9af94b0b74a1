package enginebox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	"github.com/labd/labd/sandbox/enginebox"
)

// checkRunner is what labd's grader looks for on a sandbox.
type checkRunner interface {
	RunCheck(ctx context.Context, e sandbox.ExecSpec) (int, error)
}

// runCheck runs a script as the grader's script checks do and returns
// its combined output, exit code and error.
func runCheck(t *testing.T, sb sandbox.Sandbox, timeout time.Duration, script string, env ...string) (string, int, error) {
	t.Helper()
	cr, ok := sb.(checkRunner)
	if !ok {
		t.Fatalf("sandbox %T has no RunCheck", sb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	code, err := cr.RunCheck(ctx, sandbox.ExecSpec{Cmd: []string{"bash", "-c", script}, Env: env, Stdout: &out, Stderr: &out})
	return out.String(), code, err
}

// checkLeaks counts what the check containers of sandbox sid hold on the
// host: mounts and directories under the engine's checks dir, cgroups and
// processes of runtime containers named check-<sid>-N.
func checkLeaks(t *testing.T, data, sid string) string {
	t.Helper()
	var found []string
	dir := filepath.Join(data, "engine", "checks")
	for _, m := range mountinfo.Under(dir) {
		found = append(found, "mount "+m)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "check-"+sid+"-") {
			found = append(found, "dir "+e.Name())
		}
	}
	for _, pattern := range []string{"/sys/fs/cgroup/*/labd/check-" + sid + "-*", "/sys/fs/cgroup/labd/check-" + sid + "-*",
		"/sys/fs/cgroup/*/labd/*/check-" + sid + "-*", "/sys/fs/cgroup/labd/*/check-" + sid + "-*"} {
		ms, _ := filepath.Glob(pattern)
		for _, m := range ms {
			found = append(found, "cgroup "+m)
		}
	}
	runs, _ := filepath.Glob(filepath.Join(data, "engine", "runtime", "*", "check-"+sid+"-*"))
	for _, r := range runs {
		found = append(found, "runtime "+r)
	}
	paths, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte("/labd/")) && bytes.Contains(b, []byte("/check-"+sid+"-")) {
			found = append(found, "process "+p)
		}
	}
	return strings.Join(found, "\n")
}

// waitNoCheckLeaks fails unless the check containers of sid are gone.
func waitNoCheckLeaks(t *testing.T, data, sid, when string) {
	t.Helper()
	var left string
	for deadline := time.Now().Add(wait); ; time.Sleep(50 * time.Millisecond) {
		if left = checkLeaks(t, data, sid); left == "" || time.Now().After(deadline) {
			break
		}
	}
	if left != "" {
		t.Fatalf("%s, the check containers left:\n%s", when, left)
	}
}

// learnerCalls reads the calls the engine recorded as the learner's since
// a time (a reused LABD_TEST_SANDBOX_DATA keeps a view's records).
func learnerCalls(t *testing.T, sock string, since time.Time) []string {
	t.Helper()
	c := &http.Client{Timeout: wait, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := c.Get("http://labd/labd/v1/records?since=" + url.QueryEscape(since.Format(time.RFC3339Nano)))
	if err != nil {
		t.Fatalf("records: %v", err)
	}
	defer resp.Body.Close()
	var rec struct {
		Calls []struct{ Path, Query string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range rec.Calls {
		out = append(out, c.Path+"?"+c.Query)
	}
	return out
}

// TestCheckContainer (adversarial): the grader's script checks run in a
// fresh container of the sandbox image that nothing the learner did in
// their shell reaches (replaced binaries, /etc/ld.so.preload, a docker
// config that points elsewhere, their processes and /tmp), with the
// shell's environment, hostname and network, the workspace read-only at
// /root, the grader's own engine socket, bounded resources, and nothing
// left once it ended, timed out or its sandbox went.
func TestCheckContainer(t *testing.T) {
	data := sandboxImageData(t)
	const sid = "chk-a"
	sb := shellSandbox(t, sid, "lab-chk-a")
	learnerSock := filepath.Join(filepath.Dir(sb.Workspace()), enginebox.SocketName)
	start := time.Now()

	// The learner serves a page on a published port, then prepares to
	// fool checks.
	serve := `mkdir -p ~/www && echo served-by-the-learner > ~/www/index.html &&
docker run -d -p 8000:8000 -v /root/www:/www busybox httpd -f -p 8000 -h /www >/dev/null &&
for i in $(seq 100); do curl -sf localhost:8000/ && break; sleep 0.1; done`
	if out, code := shellExec(t, sb, serve); code != 0 || out != "served-by-the-learner\n" {
		t.Fatalf("the learner's server: exit %d, %q", code, out)
	}
	sabotage := `set -e
echo learner-file > ~/file.txt
mknod ~/zero c 1 5
printf '#!/bin/sh\necho fake docker; exit 0\n' > /usr/local/bin/docker; chmod +x /usr/local/bin/docker
cp /usr/local/bin/docker /usr/bin/docker
echo /nonexistent/fake.so > /etc/ld.so.preload
echo learner > /tmp/learner-tmp
mkdir -p ~/.docker && echo '{"currentContext":"elsewhere","HttpHeaders":{"X-Labd-Grader":"1"}}' > ~/.docker/config.json
echo 'write-out = "hello world!"' > ~/.curlrc
mkdir -p ~/.local/lib/python3.11/site-packages && echo 'import os; os._exit(0)' > ~/.local/lib/python3.11/site-packages/usercustomize.py
(sleep 1000 </dev/null >/dev/null 2>&1 &)
docker version >/dev/null && echo docker-replaced`
	if out, code := shellExec(t, sb, sabotage); code != 0 || !strings.Contains(out, "docker-replaced") {
		t.Fatalf("sabotage: exit %d, %q", code, out)
	}

	cases := []struct {
		name, script string
		env          []string
		code         int
		out          string // exact output (ld.so's complaints would break it)
		anyOrder     bool   // lines in any order (stdout and stderr are two pipes)
	}{
		{"the image's own docker reaches the engine", `docker version --format '{{.Server.Version}}'`, nil, 0, engine.Version + "\n", false},
		{"no preload", `test ! -e /etc/ld.so.preload && echo none`, nil, 0, "none\n", false},
		{"own /tmp and processes", `test ! -e /tmp/learner-tmp && ! pgrep -x sleep && echo clean`, nil, 0, "clean\n", false},
		{"environment of the shell, HOME of its own", `echo "$PWD|$HOME|$USER|$HOSTNAME|$(hostname)|$DOCKER_BUILDKIT|$DOCKER_HOST|$LABD_EXTRA"`,
			[]string{"LABD_EXTRA=given"}, 0, "/root|/tmp|root|lab-chk-a|lab-chk-a|0|unix:///var/run/docker.sock|given\n", false},
		{"the workspace, read-only, without devices", `cat file.txt; touch /root/new 2>/dev/null && echo WROTE; head -c1 zero >/dev/null 2>&1 && echo DEVICE; touch /tmp/ok && echo tmp-writable`, nil, 0, "learner-file\ntmp-writable\n", false},
		{"dotfiles of the learner are not read", `curl -s -o /dev/null localhost:8000/; echo; python3 -c 'print("python ran")'`, nil, 0, "\npython ran\n", false},
		{"the learner's published ports on localhost", `curl -s localhost:8000/`, nil, 0, "served-by-the-learner\n", false},
		{"processes are bounded", `python3 -c '
import os, time
for n in range(1000):
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
    except OSError:
        print("no fork after", n // 100 * 100, "more processes")
        break
'`, nil, 0, "no fork after 500 more processes\n", false},
		{"memory is bounded", `exec 2>/dev/null; python3 -c 'x = b"x" * (1536 << 20); print("allocated")'; echo "exit $?"`, nil, 0, "exit 137\n", false},
		{"exit status and both streams", `echo out; echo err >&2; exit 3`, nil, 3, "out\nerr\n", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, code, err := runCheck(t, sb, wait, c.script, c.env...)
			if c.anyOrder {
				lines := strings.SplitAfter(out, "\n")
				slices.Sort(lines)
				want := strings.SplitAfter(c.out, "\n")
				slices.Sort(want)
				if slices.Equal(lines, want) {
					out = c.out
				}
			}
			if err != nil || code != c.code || out != c.out {
				t.Errorf("exit %d, err %v, output %q; want exit %d, output %q", code, err, out, c.code, c.out)
			}
		})
	}
	waitNoCheckLeaks(t, data, sid, "after the checks")

	// The check's engine calls are the grader's: not in the records.
	if out, code, err := runCheck(t, sb, wait, `docker image ls --filter label=grader-call-marker -q`); err != nil || code != 0 {
		t.Fatalf("docker in a check: exit %d, %v, %q", code, err, out)
	}
	for _, c := range learnerCalls(t, learnerSock, start) {
		if strings.Contains(c, "grader-call-marker") {
			t.Errorf("a check's call was recorded as the learner's: %s", c)
		}
	}

	// A timeout kills the check and everything it started.
	begin := time.Now()
	out, code, err := runCheck(t, sb, 2*time.Second, `sleep 300 & (trap '' TERM; sleep 300) & sleep 300`)
	if !errors.Is(err, context.DeadlineExceeded) || code != -1 {
		t.Errorf("check past its timeout: exit %d, err %v, %q; want -1 and the deadline", code, err, out)
	}
	if d := time.Since(begin); d > 15*time.Second {
		t.Errorf("a check past its 2 s timeout returned after %v", d)
	}
	waitNoCheckLeaks(t, data, sid, "after a timeout")

	// Destroy while a check runs: the check ends, nothing is left, no
	// check starts afterwards.
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		cr := sb.(checkRunner)
		code, err := cr.RunCheck(context.Background(), sandbox.ExecSpec{Cmd: []string{"sleep", "300"}})
		done <- result{code, err}
	}()
	for deadline := time.Now().Add(wait); !strings.Contains(checkLeaks(t, data, sid), "process "); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the check container's process never showed")
		}
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	select {
	case r := <-done:
		if r.err == nil || !strings.Contains(r.err.Error(), "sandbox has ended") {
			t.Errorf("check during destroy: exit %d, err %v; want the sandbox's end", r.code, r.err)
		}
	case <-time.After(wait):
		t.Fatal("a check still runs after its sandbox was destroyed")
	}
	if left := checkLeaks(t, data, sid); left != "" {
		t.Errorf("destroy returned while check containers were left:\n%s", left)
	}
	if _, code, err := runCheck(t, sb, wait, "true"); err == nil || !strings.Contains(err.Error(), "sandbox has ended") {
		t.Errorf("check after destroy: exit %d, err %v; want a refusal", code, err)
	}
	if left := checkLeaks(t, data, sid); left != "" {
		t.Errorf("a refused check left:\n%s", left)
	}
}

// TestGraderSocket: every sandbox has a second socket to its engine for
// labd's grader, beside the learner's and out of the shell's reach; calls
// there are never recorded, and the learner's calls always are, whatever
// header they carry.
func TestGraderSocket(t *testing.T) {
	sandboxImageData(t)
	sb := shellSandbox(t, "chk-sock", "lab-chk-sock")
	dir := filepath.Dir(sb.Workspace())
	learner := filepath.Join(dir, enginebox.SocketName)
	grader := filepath.Join(dir, enginebox.GraderSocketName)
	if gs, ok := sb.(interface{ GraderSocket() string }); !ok || gs.GraderSocket() != grader {
		t.Fatalf("GraderSocket of %T: want %s", sb, grader)
	}
	start := time.Now()
	call := func(sock, marker string, header bool) {
		t.Helper()
		c := &http.Client{Timeout: wait, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}}
		req, _ := http.NewRequest(http.MethodGet, "http://d/v1.41/images/json?filters="+fmt.Sprintf(`{"label":[%q]}`, marker), nil)
		if header {
			req.Header.Set("X-Labd-Grader", "1")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", sock, err)
		}
		resp.Body.Close()
	}
	call(learner, "learner-plain", false)
	call(learner, "learner-forged-marker", true)
	call(grader, "grader-call", false)
	calls := strings.Join(learnerCalls(t, grader, start), "\n")
	for marker, recorded := range map[string]bool{"learner-plain": true, "learner-forged-marker": true, "grader-call": false} {
		if strings.Contains(calls, marker) != recorded {
			t.Errorf("call %s recorded: %v, want %v; calls:\n%s", marker, !recorded, recorded, calls)
		}
	}
	// The shell has the learner's socket only, and no bind mount reaches
	// the grader's.
	out, code := shellExec(t, sb, `ls /var/run/docker.sock; find / -xdev -name grader.sock 2>/dev/null; docker run --rm -v /root/../`+filepath.Base(dir)+`/grader.sock:/s busybox true 2>&1; echo end`)
	if code != 0 || strings.Contains(out, "grader.sock\n") || !strings.Contains(out, "/var/run/docker.sock\n") || !strings.Contains(out, "only paths under /root") {
		t.Errorf("the grader's socket from the shell: exit %d, %q", code, out)
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{learner, grader} {
		if _, err := os.Stat(s); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after destroy: %v", s, err)
		}
	}
}

// BenchmarkScriptCheck times one `bash -c true` as a script check runs it
// (a check container) against an exec in the learner's shell (before
// issue 12).
func BenchmarkScriptCheck(b *testing.B) {
	sandboxImageData(b)
	shared, err := engine.OpenShared(sandboxImageData(b), engine.SharedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ws := filepath.Join(b.TempDir(), "workspace")
	os.Mkdir(ws, 0o700)
	sb, err := (&enginebox.Provider{Shared: shared}).Create(context.Background(), sandbox.Spec{ID: "bench-chk", Hostname: "lab-bench", Workspace: ws})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	for _, bc := range []struct {
		name string
		run  func(ctx context.Context, e sandbox.ExecSpec) (int, error)
	}{
		{"check-container", sb.(checkRunner).RunCheck},
		{"exec-in-shell", sb.Exec},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if code, err := bc.run(context.Background(), sandbox.ExecSpec{Cmd: []string{"bash", "-c", "true"}}); err != nil || code != 0 {
					b.Fatalf("exit %d, %v", code, err)
				}
			}
		})
	}
}

// TestCheckSocketEndsWithTheCheck (adversarial): a check that runs the
// learner's code could hand its engine connection to the learner's shell
// (SCM_RIGHTS over an abstract socket of the netns they share); the
// connection ends with the check, so the learner gets no unrecorded
// channel to the engine.
func TestCheckSocketEndsWithTheCheck(t *testing.T) {
	sandboxImageData(t)
	sb := shellSandbox(t, "chk-fd", "lab-chk-fd")
	ws := sb.Workspace()
	receiver := `import socket, os, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0labd-check-fd-test")
s.listen(1)
open("/root/listening", "w").close()
c, _ = s.accept()
_, fds, _, _ = socket.recv_fds(c, 16, 1)
while not os.path.exists("/root/check-done"):
    time.sleep(0.05)
conn = socket.socket(fileno=fds[0])
conn.settimeout(10)
try:
    conn.sendall(b"GET /v1.41/version HTTP/1.1\r\nHost: d\r\n\r\n")
    print("answer:", conn.recv(64))
except OSError as e:
    print("refused:", e)
`
	sender := `import socket
e = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
e.connect("/var/run/docker.sock")
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect("\0labd-check-fd-test")
socket.send_fds(c, [b"x"], [e.fileno()])
print("sent")
`
	if err := os.WriteFile(filepath.Join(ws, "receiver.py"), []byte(receiver), 0o644); err != nil {
		t.Fatal(err)
	}
	type result struct {
		out  string
		code int
	}
	got := make(chan result, 1)
	go func() {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
		defer cancel()
		code, _ := sb.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"python3", "receiver.py"}, Stdout: &out, Stderr: &out})
		got <- result{out.String(), code}
	}()
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(ws, "listening")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the learner's receiver never listened")
		}
	}
	if out, code, err := runCheck(t, sb, wait, "python3 -c '"+sender+"'"); err != nil || code != 0 || out != "sent\n" {
		t.Fatalf("the check that hands out its connection: exit %d, %v, %q", code, err, out)
	}
	if err := os.WriteFile(filepath.Join(ws, "check-done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if strings.Contains(r.out, "HTTP/1.1 200") || !strings.Contains(r.out, "answer: b''") && !strings.Contains(r.out, "refused:") {
			t.Errorf("the learner's shell used the check's engine connection after the check: exit %d, %q", r.code, r.out)
		}
	case <-time.After(2 * wait):
		t.Fatal("the learner's receiver did not end")
	}
}
