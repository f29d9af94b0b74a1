package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
)

// The attack suite: a hostile learner in the terminal of a real `labd
// serve` (real engine, the learner's shell a container of the sandbox
// image) tries what issue 12 lists, each attack a bash script typed into
// the shell. After every attack: the canary file outside the data dir is
// unread and unchanged and nothing new appeared beside it, no output holds
// the canary's secret or labd's own secrets, labd answers and its memory
// stayed bounded. At the end the other learner's sandbox is untouched.
//
// Scripts print "ESCAPE: what" when they see from inside that something
// worked that must not; any such line fails the attack.

// attackEnv is what attacks may name: host facts a hostile learner could
// guess or learn (paths, ports), never the secrets the checks look for.
type attackEnv struct {
	srv        *labd
	data       string
	canaryDir  string
	canary     string
	secret     string // the canary's content
	canaryStat os.FileInfo
	labdSecret []byte
	labdPort   string
	closedPort string
	attacker   *wsLearner
	victim     *wsLearner
	victimSum  string
	memLimit   int64
}

type attack struct {
	name    string
	script  string
	timeout time.Duration
	// check adds what this attack must show beyond the common checks.
	check func(t *testing.T, a *attackEnv, out string, code int)
}

// attackVars are replaced in scripts.
func (a *attackEnv) expand(s string) string {
	return strings.NewReplacer(
		"{{CANARY}}", a.canary,
		"{{CANARY_DIR}}", a.canaryDir,
		"{{DATA}}", a.data,
		"{{LABD_PORT}}", a.labdPort,
		"{{CLOSED_PORT}}", a.closedPort,
		"{{VICTIM}}", a.victim.sid,
	).Replace(s)
}

func TestAttacks(t *testing.T) {
	root := moduleRoot(t)
	testenv.Root(t, "sandboxes run in new namespaces")
	bin := buildLabd(t, root)
	data := os.Getenv("LABD_E2E_LABS_DATA")
	if data == "" {
		data = t.TempDir()
	}
	data, _ = filepath.Abs(data)
	// The real configuration: the learner's shell is a container of the
	// sandbox image.
	if out, err := exec.Command(bin, "images", "bootstrap", "busybox", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("bootstrap busybox: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "images", "bootstrap", "sandbox", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("bootstrap sandbox: %v\n%s", err, out)
	}

	a := &attackEnv{data: data, memLimit: 3 << 30}
	a.canaryDir = mkCanary(t, a)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	a.closedPort = strconv.Itoa(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()

	a.srv = serveLabd(t, bin, "--addr", "127.0.0.1:0", "--content", filepath.Join(root, "web/e2e/testdata/attack"),
		"--data", data, "--idle-timeout", "30m", "--registry-addr", freeLoopbackAddr(t),
		"--max-sandboxes", strconv.Itoa(floodMax), "--admission-burst", strconv.Itoa(floodBurst), "--admission-rate", strconv.Itoa(floodRate))
	a.labdPort = a.srv.url[strings.LastIndex(a.srv.url, ":")+1:]
	// labd in a memory cgroup of its own: a learner who makes labd read
	// a device without end ends this test, not the machine.
	confineMemory(t, a.srv.cmd.Process.Pid, a.memLimit)
	a.labdSecret, _ = os.ReadFile(filepath.Join(data, "secret"))

	a.victim = openLab(t, a.srv, "attack-lab")
	a.victim.waitPrompt(t)
	if out, code, ok := a.victim.sh(`echo victim-data > mine.txt && docker run -d --name victim-ctr busybox sleep 3600 && printf 'FROM busybox\nRUN echo VICTIM-SECRET-4711 > /secret\n' | docker build -q -t victim-img -`, 3*time.Minute); !ok || code != 0 {
		t.Fatalf("victim setup: exit %d, %q", code, out)
	}
	a.victimSum = victimState(t, a)

	a.attacker = openLab(t, a.srv, "attack-lab")
	a.attacker.waitPrompt(t)
	// The victim's own layer, as an attacker could guess a digest: the
	// docker load attack claims it.
	layers, _, _ := a.victim.sh(`docker image inspect -f '{{range .RootFS.Layers}}{{println .}}{{end}}' victim-img | grep . | tail -1`, time.Minute)
	vmap, _, _ := a.victim.sh(`cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'`, time.Minute)
	a.attacker.upload(".labd-test", map[string]string{"victim-layer": strings.TrimSpace(layers), "victim-map": strings.TrimSpace(vmap)})

	for _, at := range attacks {
		ok := t.Run(at.name, func(t *testing.T) {
			if !a.alive() {
				t.Fatalf("labd died in an earlier attack:\n%s", tail(a.srv.log(), 3000))
			}
			timeout := at.timeout
			if timeout == 0 {
				timeout = 3 * time.Minute
			}
			out, code, done := a.attacker.sh(a.expand(at.script), timeout)
			if !done {
				t.Errorf("the attack did not end within %v (labd or the shell blocked)", timeout)
			}
			t.Logf("exit %d, output:\n%s", code, out)
			a.assertContained(t, out)
			if at.check != nil {
				at.check(t, a, out, code)
			}
		})
		_ = ok
	}
	t.Run("victim untouched", func(t *testing.T) {
		if !a.alive() {
			t.Fatal("labd is not alive")
		}
		if got := victimState(t, a); got != a.victimSum {
			t.Errorf("the other learner's sandbox changed:\nbefore %s\nafter  %s", a.victimSum, got)
		}
	})
}

// mkCanary makes a file outside the data dir with a secret in it.
func mkCanary(t *testing.T, a *attackEnv) string {
	dir, err := os.MkdirTemp("/tmp", "labd-canary-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b := make([]byte, 16)
	rand.Read(b)
	a.secret = "CANARY-" + hex.EncodeToString(b)
	a.canary = filepath.Join(dir, "canary.txt")
	if err := os.WriteFile(a.canary, []byte(a.secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.canaryStat, _ = os.Stat(a.canary)
	return dir
}

// assertContained is the common check after every attack.
func (a *attackEnv) assertContained(t *testing.T, out string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "ESCAPE:") {
			t.Errorf("%s", strings.TrimSpace(l))
		}
	}
	if strings.Contains(out, a.secret) {
		t.Errorf("the canary's secret reached the learner")
	}
	if len(a.labdSecret) > 0 && (strings.Contains(out, string(a.labdSecret)) || strings.Contains(out, hex.EncodeToString(a.labdSecret))) {
		t.Errorf("labd's DATA/secret reached the learner")
	}
	if b, err := os.ReadFile(a.canary); err != nil || string(b) != a.secret+"\n" {
		t.Errorf("the canary changed: %q %v", b, err)
	}
	if st, err := os.Stat(a.canary); err == nil && !st.ModTime().Equal(a.canaryStat.ModTime()) {
		t.Errorf("the canary was written (mtime %v, was %v)", st.ModTime(), a.canaryStat.ModTime())
	}
	if ents, _ := os.ReadDir(a.canaryDir); len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files appeared beside the canary: %q", names)
	}
	if !a.alive() {
		t.Errorf("labd is dead after the attack:\n%s", tail(a.srv.log(), 3000))
	}
}

// alive: the process runs and answers /healthz.
func (a *attackEnv) alive() bool {
	select {
	case <-a.srv.done:
		return false
	default:
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(a.srv.url + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// victimState sums up what the other learner has: a file, a running
// container, an image.
func victimState(t *testing.T, a *attackEnv) string {
	t.Helper()
	out, code, ok := a.victim.sh(`cat mine.txt; docker ps --format '{{.Names}} {{.Status}}' | sed 's/Up .*/Up/'; docker images --format '{{.Repository}} {{.ID}}' | sort; docker run --rm victim-img cat /secret`, 2*time.Minute)
	if !ok {
		return fmt.Sprintf("victim's shell did not answer (exit %d)", code)
	}
	return strings.Join(strings.Fields(out), " ")
}

// confineMemory moves pid into a memory cgroup of its own with limit
// bytes (v1 or v2), removed when the test ends.
func confineMemory(t *testing.T, pid int, limit int64) {
	t.Helper()
	name := fmt.Sprintf("labd-attack-%d", os.Getpid())
	for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		dir := filepath.Join(root, name)
		limitFile := "memory.limit_in_bytes"
		if root != "/sys/fs/cgroup/memory" {
			limitFile = "memory.max"
		}
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			continue
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
			os.Remove(dir)
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			os.Remove(dir)
			continue
		}
		t.Cleanup(func() {
			// labd has ended (serveLabd's cleanup runs first: later
			// registered, earlier run is not guaranteed, so wait).
			for i := 0; i < 100 && os.Remove(dir) != nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
		})
		return
	}
	t.Fatalf("no memory cgroup to confine labd in")
}

// labdRSS is labd serve's resident memory in bytes.
func labdRSS(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n << 10
}

func (l *wsLearner) waitPrompt(t *testing.T) {
	t.Helper()
	if _, ok := l.waitFor(0, regexp.MustCompile(`root@[^:]+:~# $`), 2*time.Minute); !ok {
		t.Fatalf("no shell prompt; terminal:\n%s", l.output())
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// wantRefused checks that every line the script printed about an option
// says it was refused.
func wantNoAccepted(t *testing.T, _ *attackEnv, out string, _ int) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ACCEPTED") {
			t.Errorf("%s", l)
		}
	}
	if !strings.Contains(out, "REFUSED") {
		t.Errorf("no option was refused: the script did not run?")
	}
}

// outputBlocks splits a script's output at its "=== NAME" lines into
// NAME → what followed, each of mask replaced by PORT.
func outputBlocks(out string, mask ...string) map[string]string {
	blocks := map[string]string{}
	for _, part := range strings.Split(out, "=== ")[1:] {
		name, body, _ := strings.Cut(part, "\n")
		for _, m := range mask {
			body = strings.ReplaceAll(body, m, "PORT")
		}
		blocks[strings.TrimSpace(name)] = body
	}
	return blocks
}

// samePortAnswers: what the engine says about labd's own web port and
// about a closed port must not differ (beyond the port number).
func samePortAnswers(t *testing.T, a *attackEnv, out string, _ int) {
	t.Helper()
	blocks := outputBlocks(out, a.labdPort, a.closedPort)
	for _, pair := range [][2]string{{"pull open", "pull closed"}, {"build open", "build closed"}, {"login open", "login closed"}, {"push open", "push closed"}} {
		o, c := blocks[pair[0]], blocks[pair[1]]
		if o == "" || c == "" {
			t.Errorf("missing %q or %q in the output", pair[0], pair[1])
			continue
		}
		if o != c {
			t.Errorf("the engine tells an open port from a closed one:\n%s: %q\n%s: %q", pair[0], o, pair[1], c)
		}
		if !strings.Contains(o, "allowed") {
			t.Errorf("%s: the refusal does not say which registries are allowed: %q", pair[0], o)
		}
	}
}

// gradedDevice: the file check on a device or FIFO answers promptly, fails,
// and labd did not read the device.
func gradedDevice(t *testing.T, a *attackEnv, _ string, _ int) {
	t.Helper()
	before := labdRSS(a.srv.cmd.Process.Pid)
	done := make(chan string, 1)
	go func() {
		r, err := gradeErr(filepath.Join(a.data, "grade.sock"), a.attacker.sid, "attack-lab")
		if err != nil {
			done <- err.Error()
			return
		}
		var b strings.Builder
		for _, s := range r.Result.Steps {
			for _, c := range s.Checks {
				if c.ID == "graded-file" {
					fmt.Fprintf(&b, "%s: %s", c.State, c.Message)
				}
			}
		}
		done <- b.String()
	}()
	select {
	case got := <-done:
		if !strings.HasPrefix(got, "failed") || !strings.Contains(got, "regular file") {
			t.Errorf("graded-file on a device: %q, want failed naming a regular file", got)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("the grader blocked on the device (60 s)")
	}
	if after := labdRSS(a.srv.cmd.Process.Pid); after > before+(256<<20) {
		t.Errorf("labd grew from %d to %d bytes while grading a device", before, after)
	}
}

// scriptNotFooled: the script check must not pass because of a docker
// binary the learner replaced.
func scriptNotFooled(t *testing.T, a *attackEnv, _ string, _ int) {
	t.Helper()
	r := grade(t, filepath.Join(a.data, "grade.sock"), a.attacker.sid, "attack-lab")
	for _, s := range r.Result.Steps {
		for _, c := range s.Checks {
			if c.ID == "script-docker" && c.State == "passed" {
				t.Errorf("a replaced docker binary made the script check pass: %+v", c)
			}
		}
	}
	// Put the real docker back: the later attacks need it.
	if out, code, _ := a.attacker.sh(`rm -f /usr/local/bin/docker /usr/local/sbin/docker && mv /usr/bin/docker.real /usr/bin/docker && hash -r && docker version --format '{{.Server.Version}}'`, time.Minute); code != 0 {
		t.Fatalf("restore the learner's docker: exit %d %q", code, out)
	}
}

// markerRecorded: a call the learner marked as the grader's is recorded.
func markerRecorded(t *testing.T, a *attackEnv, _ string, _ int) {
	t.Helper()
	sock := filepath.Join(a.data, "sandboxes", a.attacker.sid, "docker.sock")
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, _ := http.NewRequest("GET", "http://labd/labd/v1/records", nil)
	req.Header.Set("X-Labd-Grader", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("records: %v", err)
	}
	defer resp.Body.Close()
	var rec struct{ Calls []json.RawMessage }
	if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil {
		t.Fatal(err)
	}
	for _, c := range rec.Calls {
		if bytes.Contains(c, []byte("forged-marker-call")) {
			return
		}
	}
	t.Errorf("a call with a forged X-Labd-Grader header was left out of the records (%d calls)", len(rec.Calls))
}

// labdNotBloated: labd's memory stayed bounded.
func labdNotBloated(t *testing.T, a *attackEnv, _ string, _ int) {
	t.Helper()
	if rss := labdRSS(a.srv.cmd.Process.Pid); rss > 1<<30 {
		t.Errorf("labd holds %d MiB after the attack", rss>>20)
	}
}

func all(checks ...func(*testing.T, *attackEnv, string, int)) func(*testing.T, *attackEnv, string, int) {
	return func(t *testing.T, a *attackEnv, out string, code int) {
		for _, c := range checks {
			c(t, a, out, code)
		}
	}
}

// devTar defines `devtar TAR NAME chr|fifo`: a tar holding NAME as a
// /dev/zero node or a FIFO. Under a user namespace the learner cannot
// mknod, but the engine can be asked to make one (docker cp, a build
// context), so the attacks bring their nodes that way.
const devTar = `devtar() { python3 - "$@" <<'PY'
import sys, tarfile
out, name, kind = sys.argv[1:4]
with tarfile.open(out, "w") as t:
    ti = tarfile.TarInfo(name); ti.mode = 0o644
    if kind == "chr": ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 5
    else: ti.type = tarfile.FIFOTYPE
    t.addfile(ti)
PY
}
`

// engineAPI is the curl prefix for the engine socket in the shell.
const engineAPI = `curl -s --max-time 60 --unix-socket /var/run/docker.sock`

var attacks = []attack{
	{
		name: "bind source swapped for a symlink between create and start",
		script: `cd ~; docker rm -f sw >/dev/null 2>&1; rm -rf sw; mkdir sw
docker create --name sw -v /root/sw:/mnt busybox sh -c 'cat /mnt{{CANARY}} && echo "ESCAPE: read the host through the bind"; echo pwned >> /mnt{{CANARY}}; touch /mnt{{CANARY_DIR}}/pwned-bind; ls /mnt{{DATA}} >/dev/null 2>&1 && echo "ESCAPE: the data dir is visible"'
rmdir sw && ln -s / sw
docker start -a sw; echo "start exit $?"
docker rm -f sw >/dev/null; rm -f sw`,
	},
	{
		name: "bind source swapped before docker cp of a stopped container",
		script: `cd ~; docker rm -f sw2 >/dev/null 2>&1; rm -rf sw2; mkdir sw2
docker create --name sw2 -v /root/sw2:/mnt busybox true
rmdir sw2 && ln -s / sw2
docker cp sw2:/mnt{{CANARY}} - | tar -xO
echo pwned > /tmp/p; docker cp /tmp/p sw2:/mnt{{CANARY_DIR}}/pwned-cp; echo "cp in exit $?"
docker rm -f sw2 >/dev/null; rm -f sw2`,
	},
	{
		name: "bind source swapped under a running container, then docker cp",
		script: `cd ~; docker rm -f sw3 >/dev/null 2>&1; rm -rf sw3 sw3.real; mkdir sw3
docker run -d --name sw3 -v /root/sw3:/mnt busybox sleep 300 >/dev/null
mv sw3 sw3.real && ln -s / sw3
docker cp sw3:/mnt{{CANARY}} - | tar -xO
echo pwned > /tmp/p; docker cp /tmp/p sw3:/mnt{{CANARY_DIR}}/pwned-cp-running; echo "cp in exit $?"
docker rm -f sw3 >/dev/null; rm -rf sw3 sw3.real`,
	},
	{
		name: "symlinks in a named volume, then docker cp and run",
		script: `docker rm -f vsc >/dev/null 2>&1; docker volume rm -f vs >/dev/null 2>&1
docker run --rm -v vs:/v busybox sh -c 'ln -s / /v/root; ln -s {{CANARY}} /v/canary; ln -s ../../../../../../.. /v/up'
docker create --name vsc -v vs:/v busybox true >/dev/null
docker cp vsc:/v/root{{CANARY}} - | tar -xO
docker cp vsc:/v/up{{CANARY}} - | tar -xO
docker cp -L vsc:/v/canary - | tar -xO
echo pwned > /tmp/p; docker cp /tmp/p vsc:/v/root{{CANARY_DIR}}/pwned-vol; docker cp /tmp/p vsc:/v/up{{CANARY_DIR}}/pwned-vol2
docker run --rm -v vs:/v busybox sh -c 'cat /v/canary /v/root{{CANARY}} 2>&1 | grep -q CANARY && echo "ESCAPE: the volume reached the host"'
docker rm -f vsc >/dev/null; docker volume rm vs >/dev/null`,
	},
	{
		name: "absolute and .. symlinks in a build context",
		script: `rm -rf ~/ctx1; mkdir ~/ctx1 && cd ~/ctx1 && ln -s / rootlink && ln -s ../../../../../../../../.. up && ln -s {{CANARY}} canary
for src in rootlink{{CANARY}} up{{CANARY}} canary rootlink{{CANARY_DIR}}; do
  printf 'FROM busybox\nCOPY %s /a\nRUN cat /a || ls /a\n' "$src" > Dockerfile
  docker build --no-cache -q . 2>&1 | tail -3
  printf 'FROM busybox\nADD %s /a\nRUN cat /a || ls /a\n' "$src" > Dockerfile
  docker build --no-cache -q . 2>&1 | tail -3
done
# (ESC""APE: the build prints the RUN line, which must not read as a finding)
printf 'FROM busybox\nCOPY . /ctx\nRUN cat /ctx/rootlink{{CANARY}} /ctx/canary 2>&1 | grep CANARY && echo "ESC""APE: the context reached the host"\n' > Dockerfile
docker build --no-cache . 2>&1 | tail -3`,
	},
	{
		name: "a docker load tar with .. names, absolute paths, and links out",
		script: `rm -rf ~/ld && mkdir ~/ld && cd ~/ld
docker save busybox -o base.tar
python3 - <<'PY'
import tarfile, io, json, hashlib
def entry(t, name, data=b"pwned\n", **kw):
    ti = tarfile.TarInfo(name); ti.size = len(data)
    for k, v in kw.items(): setattr(ti, k, v)
    t.addfile(ti, io.BytesIO(data) if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else None)
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w") as t:
    entry(t, "../../../../../../../../..{{CANARY_DIR}}/pwned-dotdot")
    entry(t, "{{CANARY_DIR}}/pwned-abs")
    ti = tarfile.TarInfo("evil"); ti.type = tarfile.SYMTYPE; ti.linkname = "/"; t.addfile(ti)
    entry(t, "evil{{CANARY_DIR}}/pwned-through-symlink")
    ti = tarfile.TarInfo("hard"); ti.type = tarfile.LNKTYPE; ti.linkname = "{{CANARY}}"; t.addfile(ti)
    ti = tarfile.TarInfo("hard2"); ti.type = tarfile.LNKTYPE; ti.linkname = "../../../../../../..{{CANARY}}"; t.addfile(ti)
layer = layer.getvalue()
diff = "sha256:" + hashlib.sha256(layer).hexdigest()
base = tarfile.open("base.tar")
man = json.load(base.extractfile("manifest.json"))[0]
cfg = json.load(base.extractfile(man["Config"]))
cfg["rootfs"]["diff_ids"].append(diff)
cfgb = json.dumps(cfg).encode()
cfgname = hashlib.sha256(cfgb).hexdigest() + ".json"
with tarfile.open("evil.tar", "w") as out:
    for m in base.getmembers():
        if m.name in ("manifest.json", "repositories", man["Config"]): continue
        out.addfile(m, base.extractfile(m) if m.isfile() else None)
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); out.addfile(ti, io.BytesIO(data))
    add("evil-layer/layer.tar", layer)
    add(cfgname, cfgb)
    add("manifest.json", json.dumps([{"Config": cfgname, "RepoTags": ["evil:load"], "Layers": man["Layers"] + ["evil-layer/layer.tar"]}]).encode())
PY
docker load -i evil.tar; echo "load exit $?"
docker run --rm evil:load sh -c 'cat /hard /hard2 2>&1; ls -la /evil' 2>&1 | tail -5`,
	},
	{
		name: "another learner's layer claimed by digest in docker load",
		script: `rm -rf ~/ld2 && mkdir ~/ld2 && cd ~/ld2
docker save busybox -o base.tar
VICTIM_LAYER=$(cat ~/.labd-test/victim-layer 2>/dev/null)
case "$VICTIM_LAYER" in sha256:*) ;; *) echo "NO VICTIM LAYER: '$VICTIM_LAYER'"; exit 1;; esac
python3 - "$VICTIM_LAYER" <<'PY'
import tarfile, io, json, hashlib, sys, os
victim = sys.argv[1]
base = tarfile.open("base.tar")
man = json.load(base.extractfile("manifest.json"))[0]
def make(diff, out_name, tag):
    cfg = json.load(base.extractfile(man["Config"]))
    cfg["rootfs"]["diff_ids"].append(diff)
    cfgb = json.dumps(cfg).encode(); cfgname = hashlib.sha256(cfgb).hexdigest() + ".json"
    fake = io.BytesIO()
    with tarfile.open(fileobj=fake, mode="w") as t: pass
    with tarfile.open(out_name, "w") as out:
        for m in base.getmembers():
            if m.name in ("manifest.json", "repositories", man["Config"]): continue
            out.addfile(m, base.extractfile(m) if m.isfile() else None)
        def add(name, data):
            ti = tarfile.TarInfo(name); ti.size = len(data); out.addfile(ti, io.BytesIO(data))
        add("fake/layer.tar", fake.getvalue()); add(cfgname, cfgb)
        add("manifest.json", json.dumps([{"Config": cfgname, "RepoTags": [tag], "Layers": man["Layers"] + ["fake/layer.tar"]}]).encode())
make(victim, "claim.tar", "claim:victim")
make("sha256:" + hashlib.sha256(os.urandom(32)).hexdigest(), "claim-random.tar", "claim:random")
PY
echo "=== known"; docker load -i claim.tar 2>&1 | sed 's/sha256:[0-9a-f]*/DIGEST/g'
echo "=== random"; docker load -i claim-random.tar 2>&1 | sed 's/sha256:[0-9a-f]*/DIGEST/g'
docker run --rm claim:victim cat /secret 2>&1 | grep VICTIM-SECRET && echo "ESCAPE: read another learner's layer"
docker image inspect -f '{{range .RootFS.Layers}}{{println .}}{{end}}' claim:victim 2>/dev/null | grep -qx "$VICTIM_LAYER" && echo "ESCAPE: an image of mine lists another learner's layer"
true`,
		check: func(t *testing.T, a *attackEnv, out string, _ int) {
			if !strings.Contains(out, "=== known") || !strings.Contains(out, "=== random") || strings.Contains(out, "open claim") || strings.Contains(out, "NO VICTIM LAYER") {
				t.Fatalf("the attack did not run through:\n%s", out)
			}
			known, random, _ := strings.Cut(out, "=== random")
			known = strings.TrimPrefix(known[strings.Index(known, "=== known")+len("=== known"):], "\n")
			if strings.TrimSpace(known) != strings.TrimSpace(random) {
				t.Errorf("docker load tells a digest another learner has from an unknown one:\nknown:  %q\nrandom: %q", known, random)
			}
		},
	},
	{
		name: "mount options refused: privileged, host paths, namespaces, devices, capabilities, security options",
		script: `for opt in "--privileged" "-v /:/x" "-v /etc:/x" "--mount type=bind,src=/,dst=/x" "--pid host" "--network host" "--ipc host" "--uts host" "--userns host" "--cgroupns host" \
  "--device /dev/vda" "--device /dev/mem" "--device-cgroup-rule=a *:* rwm" "--cap-add ALL" "--cap-add SYS_ADMIN" "--cap-add SYS_MODULE" "--cap-add NET_ADMIN" \
  "--security-opt seccomp=unconfined" "--security-opt apparmor=unconfined" "--security-opt label=disable" "--security-opt systempaths=unconfined" \
  "--cgroup-parent /" "--cgroup-parent ../.." "--volumes-from victim-ctr" "--sysctl kernel.sysrq=1" "--runtime kata" "--oom-kill-disable"; do
  if docker run --rm $opt busybox true >/dev/null 2>/tmp/err; then echo "ACCEPTED $opt"; else echo "REFUSED $opt: $(head -c 300 /tmp/err)"; fi
done
for opt in "--network host" "--cgroup-parent /" "--security-opt seccomp=unconfined" "--isolation host"; do
  if printf 'FROM busybox\nRUN true\n' | docker build --no-cache $opt - >/dev/null 2>/tmp/err; then echo "ACCEPTED build $opt"; else echo "REFUSED build $opt: $(head -c 300 /tmp/err)"; fi
done`,
		check: wantNoAccepted,
	},
	{
		name: "privilege in the shell and in a container: mount, unshare, /proc/sys, modules, raw devices",
		script: `probe() { # probe WHERE
  mount -t tmpfs t /mnt 2>/dev/null && { echo "ESCAPE: $1: mount"; umount /mnt; }
  unshare -m true 2>/dev/null && echo "ESCAPE: $1: unshare -m"
  # A user namespace of one's own is allowed (as under dockerd); what its
  # root reaches must stay inside.
  unshare -Urm sh -c 'mount -t tmpfs t /mnt; cat {{CANARY}}; ls {{DATA}}; echo 1 > /proc/sys/kernel/sysrq && echo "ESCAPE: userns root wrote /proc/sys"' 2>/dev/null
  echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo "ESCAPE: $1: wrote /proc/sys"
  echo h > /proc/sysrq-trigger 2>/dev/null && echo "ESCAPE: $1: sysrq-trigger"
  head -c1 /proc/kcore >/dev/null 2>&1 && echo "ESCAPE: $1: /proc/kcore"
  mknod /tmp/vda b 254 0 2>/dev/null && head -c 512 /tmp/vda >/dev/null 2>&1 && echo "ESCAPE: $1: read a host disk"
  mknod /tmp/mem c 1 1 2>/dev/null && head -c 16 /tmp/mem >/dev/null 2>&1 && echo "ESCAPE: $1: read /dev/mem"
  rm -f /tmp/vda /tmp/mem
  (modprobe dummy || insmod /nonexistent.ko) 2>&1 | grep -qi "operation not permitted\|not found\|no such\|can't\|not supported" || echo "ESCAPE: $1: module loading"
  cat {{CANARY}} 2>/dev/null | grep -q CANARY && echo "ESCAPE: $1: the canary is visible"
  ls {{DATA}} >/dev/null 2>&1 && echo "ESCAPE: $1: the data dir is visible"
  true
}
probe shell
typeset -f probe > /tmp/probe.sh
docker run --rm -v /tmp/probe.sh:/probe.sh busybox sh -c '. /probe.sh; probe container' 2>&1 || true
cp /tmp/probe.sh ~/probe.sh; docker run --rm -v /root/probe.sh:/probe.sh busybox sh -c '. /probe.sh; probe container' 2>&1; rm -f ~/probe.sh
echo probed`,
	},
	{
		name: "the engine reaching labd's web port and other loopback ports",
		script: `for which in open closed; do
  port={{LABD_PORT}}; [ $which = closed ] && port={{CLOSED_PORT}}
  echo "=== pull $which"; timeout 60 docker pull 127.0.0.1:$port/x/y:1 2>&1
  echo "=== build $which"; printf 'FROM 127.0.0.1:%s/x/y:1\n' $port | timeout 60 docker build -q - 2>&1
  echo "=== login $which"; echo pw | timeout 60 docker login -u u --password-stdin 127.0.0.1:$port 2>&1
  docker tag busybox 127.0.0.1:$port/x/y:1 >/dev/null 2>&1
  echo "=== push $which"; timeout 60 docker push 127.0.0.1:$port/x/y:1 2>&1
  docker rmi 127.0.0.1:$port/x/y:1 >/dev/null 2>&1
done
echo "=== end"`,
		check: samePortAnswers,
	},
	{
		name: "docker top lists only the container's processes",
		script: `docker rm -f topc >/dev/null 2>&1; docker run -d --name topc busybox sleep 300 >/dev/null
for args in "" "-eo pid,args" "aux" "-e -o pid=PID,args --forest" "-eLo lwp=PID,args"; do
  echo "--- docker top topc $args"; docker top topc $args
done | tee /tmp/top.txt
grep -v -e '^---' -e 'PID' -e 'sleep 300' /tmp/top.txt | grep . && echo "ESCAPE: docker top shows processes outside the container"
docker rm -f topc >/dev/null; true`,
	},
	{
		name:   "a forged grader marker hides nothing",
		script: engineAPI + ` -H 'X-Labd-Grader: 1' 'http://d/v1.41/images/json?filters=%7B%22label%22%3A%5B%22forged-marker-call%22%5D%7D' >/dev/null; echo "curl exit $?"`,
		check:  markerRecorded,
	},
	{
		name:   "a replaced docker binary fools a script check",
		script: `printf '#!/bin/sh\nexit 0\n' > /usr/local/bin/docker && chmod +x /usr/local/bin/docker; printf '#!/bin/sh\nexit 0\n' > /usr/local/sbin/docker && chmod +x /usr/local/sbin/docker; cp -p /usr/bin/docker /usr/bin/docker.real && cp /usr/local/bin/docker /usr/bin/docker; hash -r; echo replaced`,
		check:  scriptNotFooled,
	},
	{
		name:    "the nsbox fallback is not a learner's shell",
		timeout: 30 * time.Second,
		script:  `echo "checked by the host side"`,
		check:   nsboxFallback,
	},
	{
		name: "a character device or FIFO as the graded file",
		script: devTar + `cd ~; rm -f graded.txt
mknod graded.txt c 1 5 2>/dev/null || {
  # No mknod in a user namespace: the engine makes it, through docker cp.
  devtar /tmp/g.tar graded.txt chr
  docker rm -f mk >/dev/null 2>&1; docker run -d --name mk -v /root:/w busybox sleep 120 >/dev/null
  docker cp - mk:/w < /tmp/g.tar; docker rm -f mk >/dev/null
}
ls -l graded.txt | grep -q '^c' && echo device-made`,
		check: gradedDevice,
	},
	{
		name:   "a FIFO as the graded file",
		script: `cd ~; rm -f graded.txt; mkfifo graded.txt && echo fifo-made`,
		check: func(t *testing.T, a *attackEnv, out string, code int) {
			gradedDevice(t, a, out, code)
			a.attacker.sh(`rm -f ~/graded.txt`, time.Minute)
		},
	},
	{
		name:    "a device and a FIFO as Dockerfile, build-context file and image /etc/passwd",
		timeout: 5 * time.Minute,
		script: `rm -rf ~/dev && mkdir ~/dev && cd ~/dev
python3 - <<'PY'
import tarfile, io
def ctx(name, entries):
    with tarfile.open(name, "w") as t:
        for n, kind, data in entries:
            ti = tarfile.TarInfo(n)
            if kind == "chr": ti.type = tarfile.CHRTYPE; ti.devmajor, ti.devminor = 1, 5
            elif kind == "fifo": ti.type = tarfile.FIFOTYPE
            else: ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if kind == "file" else None)
ctx("df-chr.tar", [("Dockerfile", "chr", b"")])
ctx("df-fifo.tar", [("Dockerfile", "fifo", b"")])
ctx("ignore-chr.tar", [("Dockerfile", "file", b"FROM busybox\n"), (".dockerignore", "chr", b"")])
ctx("copy-chr.tar", [("Dockerfile", "file", b"FROM busybox\nCOPY dev /dev-copy\nRUN ls -l /dev-copy\n"), ("dev", "chr", b"")])
ctx("add-fifo.tar", [("Dockerfile", "file", b"FROM busybox\nADD fifo /fifo-copy\n"), ("fifo", "fifo", b"")])
PY
for c in df-chr df-fifo ignore-chr copy-chr add-fifo; do
  echo "=== $c"
  ` + engineAPI + ` -X POST -H 'Content-Type: application/x-tar' --data-binary @$c.tar "http://d/v1.41/build?t=dev-$c&rm=1" | head -c 600; echo; echo "curl exit $?"
done
python3 - <<'PY'
import tarfile, io
with tarfile.open("devpasswd.tar", "w") as t:
    df = b"FROM busybox\nCOPY passwd /etc/passwd\nCOPY group /etc/group\n"
    ti = tarfile.TarInfo("Dockerfile"); ti.size = len(df); t.addfile(ti, io.BytesIO(df))
    ti = tarfile.TarInfo("passwd"); ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 5; t.addfile(ti)
    ti = tarfile.TarInfo("group"); ti.type = tarfile.FIFOTYPE; t.addfile(ti)
PY
` + engineAPI + ` -X POST -H 'Content-Type: application/x-tar' --data-binary @devpasswd.tar "http://d/v1.41/build?t=devpasswd&rm=1" | tail -c 300; echo
docker run --rm --entrypoint ls devpasswd -l /etc/passwd /etc/group | grep -q '^c' || echo "the passwd device image was not made"
echo "=== run -u nobody"; timeout 60 docker run --rm -u nobody devpasswd id 2>&1; echo "exit $?"
echo "=== run -u 0:nogroup"; timeout 60 docker run --rm -u 0:nogroup devpasswd id 2>&1; echo "exit $?"
echo "=== end"`,
		check: func(t *testing.T, a *attackEnv, out string, _ int) {
			if strings.Contains(out, "curl exit 28") {
				t.Errorf("a build request hung for a minute (curl timed out)")
			}
			if strings.Contains(out, "exit 124") {
				t.Errorf("docker run hung on a device or FIFO /etc/passwd")
			}
			labdNotBloated(t, a, out, 0)
		},
	},
}

// nsboxFallback starts a second labd serve on a data dir without the
// sandbox image: the learner gets no shell at all (the simple shell runs
// as root beside labd's data), only a lab page that waits for the image.
func nsboxFallback(t *testing.T, a *attackEnv, _ string, _ int) {
	t.Helper()
	root := moduleRoot(t)
	bin := buildLabd(t, root)
	// Short: the engine socket's path must fit in 107 bytes.
	data, err := os.MkdirTemp("", "labd-nsbox-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)
	srv := serveLabd(t, bin, "--addr", "127.0.0.1:0", "--content", filepath.Join(root, "web/e2e/testdata/attack"),
		"--data", data, "--idle-timeout", "5m", "--registry-addr", freeLoopbackAddr(t))
	defer srv.stop(t)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: waitTimeout}
	resp, err := c.Get(srv.url + "/labs/attack-lab")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := sandboxAttr.FindSubmatch(body); m != nil {
		// A sandbox exists: see whether its shell reads host files.
		l := openLab(t, srv, "attack-lab")
		l.typeLine("cat " + a.canary + "; echo nsbox-done")
		l.waitFor(0, regexp.MustCompile(`nsbox-done\r?\n`), 30*time.Second)
		t.Errorf("without the sandbox image a learner got a shell (reads the canary: %v)", strings.Contains(l.output(), a.secret))
		return
	}
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`data-wait-shell="true"`)) {
		t.Errorf("without the sandbox image the lab page answers %d without saying it waits for the terminal:\n%s", resp.StatusCode, body)
	}
}
