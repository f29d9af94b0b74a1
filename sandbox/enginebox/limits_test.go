package enginebox_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/opencontainers/cgroups"
)

// limitedSandboxes is a Manager of container-shell sandboxes with user
// namespaces (as labd serve makes them) under the given limits.
func limitedSandboxes(t *testing.T, l enginebox.Limits, o api.Options) *sandbox.Manager {
	t.Helper()
	shared, err := engine.OpenShared(sandboxImageData(t), engine.SharedOptions{UserNS: &engine.UserNSOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	mgr := sandbox.NewManager(&enginebox.Provider{Shared: shared, Limits: l, API: o}, sandbox.ManagerOptions{DataDir: t.TempDir(), IdleTimeout: -1})
	t.Cleanup(func() {
		mgr.Close(context.Background())
		shared.Close()
	})
	return mgr
}

// groupFile reads a cgroup file of sandbox sid's group: v1 in the
// controller's hierarchy, v2 in the unified one.
func groupFile(t *testing.T, sid, controller, v1, v2 string) string {
	t.Helper()
	file := filepath.Join("/sys/fs/cgroup", controller, "labd", sid, v1)
	if cgroups.IsCgroup2UnifiedMode() {
		file = filepath.Join("/sys/fs/cgroup/labd", sid, v2)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("cgroup of sandbox %s: %v", sid, err)
	}
	return strings.TrimSpace(string(b))
}

// groupDirs lists what is left of sandbox sid's group in every hierarchy.
func groupDirs(sid string) []string {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "labd", sid))
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/labd", sid)); err == nil {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup/labd", sid))
	}
	return dirs
}

// hostPid is the host pid of a container of sb's engine.
func hostPid(t *testing.T, sb sandbox.Sandbox, name string) int {
	t.Helper()
	out, code := run(t, sb, "docker inspect -f '{{.State.Pid}}' "+name)
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if code != 0 || err != nil || pid <= 0 {
		t.Fatalf("pid of %s: exit %d, %q", name, code, out)
	}
	return pid
}

// cgroupOf is the memory (v1) or unified (v2) cgroup of a host process.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && (f[1] == "memory" || (cgroups.IsCgroup2UnifiedMode() && f[0] == "0")) {
			return f[2]
		}
	}
	t.Fatalf("no memory cgroup in %s", b)
	return ""
}

// procsIn lists the host processes in cgroup cg (memory on v1, unified
// on v2), lowest pid first.
func procsIn(t *testing.T, cg string) []int {
	t.Helper()
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.SplitN(l, ":", 3)
			if len(f) == 3 && (f[1] == "memory" || (cgroups.IsCgroup2UnifiedMode() && f[0] == "0")) && f[2] == cg {
				out = append(out, pid)
			}
		}
	}
	return out
}

func readProc(t *testing.T, pid int, file string) string {
	t.Helper()
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	return strings.TrimSpace(string(b))
}

// TestSandboxCgroup: one cgroup per sandbox holds its shell, its
// containers and their limits: a memory hog in a container (whatever its
// -m), a tmpfs filled with dd and a hog in the shell are OOM-killed at
// the sandbox's limit, the shell and the other sandbox unharmed; a fork
// bomb in the shell stops at the sandbox's pids limit while the other
// sandbox still forks; a lab asking for more than the server's maximum
// gets the maximum; nothing is left after Destroy.
func TestSandboxCgroup(t *testing.T) {
	const (
		memory    = 256 << 20
		maxMemory = 320 << 20
		pids      = 256
	)
	mgr := limitedSandboxes(t, enginebox.Limits{Memory: memory, MaxMemory: maxMemory, Pids: pids}, api.Options{})
	ctx := context.Background()
	// a's lab asks for 4 GiB (capped at the maximum), b's for more pids.
	a, err := mgr.GetOrCreateWith(ctx, "lim-a", "alice", sandbox.CreateOptions{Resources: sandbox.Resources{Memory: 4 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := mgr.GetOrCreateWith(ctx, "lim-b", "bob", sandbox.CreateOptions{Resources: sandbox.Resources{Pids: 300}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sid, what, want string
		file            [3]string
	}{
		{"lim-a", "memory (capped at the maximum)", strconv.Itoa(maxMemory), [3]string{"memory", "memory.limit_in_bytes", "memory.max"}},
		{"lim-b", "memory (the default)", strconv.Itoa(memory), [3]string{"memory", "memory.limit_in_bytes", "memory.max"}},
		{"lim-a", "pids (the default)", strconv.Itoa(pids), [3]string{"pids", "pids.max", "pids.max"}},
		{"lim-b", "pids (the lab's)", "300", [3]string{"pids", "pids.max", "pids.max"}},
	} {
		if got := groupFile(t, tc.sid, tc.file[0], tc.file[1], tc.file[2]); got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.sid, tc.what, got, tc.want)
		}
	}

	// Placement: the shell and a container in labd/lim-a/; the container
	// is the OOM killer's first choice, the shell keeps labd's 0.
	shellPids := procsIn(t, "/labd/lim-a/shell-lim-a")
	if len(shellPids) == 0 {
		t.Fatal("no process in /labd/lim-a/shell-lim-a: where is the shell?")
	}
	shellPid := shellPids[0]
	if out, code := run(t, a, "docker rm -f idle >/dev/null 2>&1; docker run -d --name idle busybox sleep 1000"); code != 0 {
		t.Fatalf("docker run: %s", out)
	}
	idle := hostPid(t, a, "idle")
	if cg := cgroupOf(t, idle); !regexp.MustCompile(`^/labd/lim-a/[0-9a-f]{64}$`).MatchString(cg) {
		t.Errorf("container's cgroup %s, want /labd/lim-a/<id>", cg)
	}
	if adj := readProc(t, idle, "oom_score_adj"); adj != "500" {
		t.Errorf("container's oom_score_adj %s, want 500", adj)
	}
	if adj := readProc(t, shellPid, "oom_score_adj"); adj != readProc(t, os.Getpid(), "oom_score_adj") {
		t.Errorf("shell's oom_score_adj %s, want labd's", adj)
	}

	scr := watch(a.Terminal())
	prompt := regexp.MustCompile(`root@` + regexp.QuoteMeta(a.Hostname()) + `:~# $`)
	scr.waitFor(t, prompt)
	hogs := []struct{ name, script, want string }{
		// -m 4g: Docker's user asked for more than the sandbox has; it runs,
		// bounded by the sandbox, and inspect shows what was asked.
		{"container -m 4g", "docker rm -f hog >/dev/null 2>&1; docker run --name hog -m 4g busybox dd if=/dev/zero of=/dev/null bs=1G count=1; echo \"exit $?\"; docker inspect -f '{{.State.OOMKilled}} {{.HostConfig.Memory}}' hog",
			"exit 137\ntrue 4294967296\n"},
		{"tmpfs", "docker run --rm --tmpfs /big:size=4g busybox dd if=/dev/zero of=/big/fill bs=1M count=2048 2>/dev/null; echo \"exit $?\"", "exit 137\n"},
		{"shell", `python3 -c "x = b'x' * (1 << 30)"; echo "exit $?"`, "exit 137\n"},
	}
	for _, h := range hogs {
		out, _ := run(t, a, h.script)
		if !strings.Contains(out, h.want) {
			t.Errorf("%s hog: %q, want %q (OOM-killed)", h.name, out, h.want)
		}
		peak := groupFile(t, "lim-a", "memory", "memory.max_usage_in_bytes", "memory.peak")
		n, _ := strconv.ParseInt(peak, 10, 64)
		t.Logf("%s hog: sandbox memory peak %d MiB (limit %d MiB)", h.name, n>>20, maxMemory>>20)
		if n > maxMemory {
			t.Errorf("%s hog: sandbox memory peak %d above its limit %d", h.name, n, maxMemory)
		}
		// The other sandbox is fine.
		if out, code := run(t, b, "docker run --rm busybox echo b-ok"); code != 0 || out != "b-ok\n" {
			t.Errorf("sandbox b after a's %s hog: exit %d, %q", h.name, code, out)
		}
	}
	// The learner's shell survived the hogs: the terminal still answers.
	if _, err := a.Terminal().Write([]byte("echo still-$((40+2))\n")); err != nil {
		t.Fatal(err)
	}
	scr.waitFor(t, regexp.MustCompile(`still-42\r\n`))
	if got := readProc(t, idle, "stat"); got == "" {
		t.Error("a's idle container was killed by the hogs, before the hogs themselves")
	}

	// A fork bomb in a's shell stops at the pids limit; b still forks. It
	// goes on (a classic bomb, then a loop that keeps forking) until a is
	// destroyed.
	if _, code := run(t, a, `nohup bash -c ':(){ :|:& };:; while :; do sleep 1000 & done' >/dev/null 2>&1 &`); code != 0 {
		t.Errorf("fork bomb: exit %d", code)
	}
	var cur int
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		cur, _ = strconv.Atoi(groupFile(t, "lim-a", "pids", "pids.current", "pids.current"))
		if cur >= pids-10 {
			break
		}
	}
	t.Logf("fork bomb: %d processes in the sandbox (limit %d)", cur, pids)
	if cur > pids || cur < pids/2 {
		t.Errorf("fork bomb: %d processes in the sandbox, want it held at its limit %d", cur, pids)
	}
	if out, code := run(t, b, "for i in $(seq 50); do sleep 0.2 & done; wait; echo forked"); code != 0 || out != "forked\n" {
		t.Errorf("sandbox b during a's fork bomb: exit %d, %q", code, out)
	}

	// Destroy ends the bomb; nothing of either sandbox's group is left.
	for _, id := range []string{"lim-a", "lim-b"} {
		if err := mgr.Destroy(ctx, id, sandbox.ReasonAdmin); err != nil {
			t.Errorf("destroy %s: %v", id, err)
		}
		if left := groupDirs(id); len(left) != 0 {
			t.Errorf("sandbox %s destroyed, its cgroups are left: %q", id, left)
		}
	}
}

// cpuTicks is the CPU time (user+system, clock ticks) a host process used.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// TestSandboxCPUShare: under contention every sandbox gets an equal
// share, however many containers it runs. a runs six CPU hogs, b two
// (each has work for both CPUs); with a cgroup per sandbox each gets half
// of what the two have, where eight containers side by side would give a
// three times b's. The ratio is measured and only asserted within a wide
// band: the machine is shared, and on two CPUs the scheduler's placement
// of b's two hogs moves it between 1 (one on each CPU) and about 1.7
// (both on one CPU, beside two of a's).
func TestSandboxCPUShare(t *testing.T) {
	mgr := limitedSandboxes(t, enginebox.Limits{}, api.Options{})
	ctx := context.Background()
	a, err := mgr.GetOrCreate(ctx, "cpu-a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	b, err := mgr.GetOrCreate(ctx, "cpu-b", "bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, sid := range []string{"cpu-a", "cpu-b"} {
		want := strconv.FormatInt(enginebox.DefaultSandboxCPUShares, 10)
		if cgroups.IsCgroup2UnifiedMode() {
			want = strconv.FormatUint(cgroups.ConvertCPUSharesToCgroupV2Value(uint64(enginebox.DefaultSandboxCPUShares)), 10)
		}
		if got := groupFile(t, sid, "cpu", "cpu.shares", "cpu.weight"); got != want {
			t.Errorf("%s CPU weight %s, want %s", sid, got, want)
		}
	}
	hog := `docker rm -f hog%[1]d >/dev/null 2>&1; docker run -d --name hog%[1]d busybox sh -c 'while :; do :; done' >/dev/null`
	var pa, pb []int
	for i := range 6 {
		if out, code := run(t, a, fmt.Sprintf(hog, i)); code != 0 {
			t.Fatalf("hog in a: %s", out)
		}
		pa = append(pa, hostPid(t, a, fmt.Sprintf("hog%d", i)))
	}
	for i := range 2 {
		if out, code := run(t, b, fmt.Sprintf(hog, i)); code != 0 {
			t.Fatalf("hog in b: %s", out)
		}
		pb = append(pb, hostPid(t, b, fmt.Sprintf("hog%d", i)))
	}
	sum := func(pids []int) (n int64) {
		for _, p := range pids {
			n += cpuTicks(p)
		}
		return n
	}
	time.Sleep(time.Second)
	a0, b0 := sum(pa), sum(pb)
	time.Sleep(8 * time.Second)
	da, db := sum(pa)-a0, sum(pb)-b0
	if db == 0 {
		t.Fatalf("b's hog got no CPU at all (a: %d ticks)", da)
	}
	ratio := float64(da) / float64(db)
	t.Logf("CPU over 8 s: a (6 hogs) %d ticks, b (2 hogs) %d ticks, ratio %.2f (equal shares: 1; per container: 3)", da, db, ratio)
	if ratio < 0.5 || ratio > 2.2 {
		t.Errorf("a with six hogs got %.2f times b's CPU, want about the same (0.5-2.2)", ratio)
	}
}

// engineClient talks HTTP to a sandbox's engine socket from the host.
func engineClient(sock string) *http.Client {
	return &http.Client{Timeout: 2 * wait, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

// call makes one request and returns its status and Docker's error
// message (or the body).
func call(t *testing.T, c *http.Client, method, path, ctype string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://labd"+path, body)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m struct{ Message string }
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		return resp.StatusCode, m.Message
	}
	return resp.StatusCode, string(b)
}

// createWithPorts creates a busybox sleeper publishing the host ports.
func createWithPorts(t *testing.T, c *http.Client, name string, ports ...int) (int, string) {
	t.Helper()
	pb := map[string][]map[string]string{}
	for i, p := range ports {
		pb[fmt.Sprintf("%d/tcp", 80+i)] = []map[string]string{{"HostPort": strconv.Itoa(p)}}
	}
	body, _ := json.Marshal(map[string]any{"Image": "busybox", "Cmd": []string{"sleep", "1000"}, "HostConfig": map[string]any{"PortBindings": pb}})
	return call(t, c, "POST", "/v1.51/containers/create?name="+name, "application/json", bytes.NewReader(body))
}

// TestSandboxEngineLimits: a sandbox's engine bounds published ports
// (one container's ask: 400 at create; the running total: 429 at start),
// docker exec processes and builds at once (429), and docker cp uploads
// (413); each answer names the limit and its value, in Docker's form, and
// the count goes down again when what held it ends.
func TestSandboxEngineLimits(t *testing.T) {
	mgr := limitedSandboxes(t, enginebox.Limits{Builds: 1, Execs: 2, Ports: 3}, api.Options{MaxCopySize: 64 << 10})
	ctx := context.Background()
	sb, err := mgr.GetOrCreate(ctx, "eng-lim", "alice")
	if err != nil {
		t.Fatal(err)
	}
	c := engineClient(sb.(interface{ EngineSocket() string }).EngineSocket())
	run(t, sb, "docker rm -f p1 p2 p3 >/dev/null 2>&1")

	// Ports.
	if st, msg := createWithPorts(t, c, "p1", 7001, 7002); st != 201 {
		t.Fatalf("create p1: %d %s", st, msg)
	}
	if st, msg := call(t, c, "POST", "/v1.51/containers/p1/start", "", nil); st != 204 {
		t.Fatalf("start p1: %d %s", st, msg)
	}
	if st, msg := createWithPorts(t, c, "p2", 7003, 7004, 7005, 7006); st != 400 || msg != "too many published ports: this sandbox publishes at most 3 host ports (--max-ports), and this container asks for 4" {
		t.Errorf("create with 4 ports: %d %q", st, msg)
	}
	if st, msg := createWithPorts(t, c, "p3", 7003, 7004); st != 201 {
		t.Fatalf("create p3: %d %s", st, msg)
	}
	if st, msg := call(t, c, "POST", "/v1.51/containers/p3/start", "", nil); st != 429 || msg != "too many published ports: this sandbox publishes at most 3 host ports (--max-ports), its running containers publish 2, and this one asks for 2 more; stop one first" {
		t.Errorf("start p3 beside p1: %d %q", st, msg)
	}
	if st, msg := call(t, c, "POST", "/v1.51/containers/p1/kill", "", nil); st != 204 {
		t.Fatalf("kill p1: %d %s", st, msg)
	}
	call(t, c, "POST", "/v1.51/containers/p1/wait", "", nil)
	if st, msg := call(t, c, "POST", "/v1.51/containers/p3/start", "", nil); st != 204 {
		t.Errorf("start p3 once p1 ended: %d %q", st, msg)
	}
	// The docker CLI shows the same words.
	if out, code := run(t, sb, "docker run --rm -p 7100-7105:7100-7105 busybox true"); code == 0 || !strings.Contains(out, "Error response from daemon: too many published ports: this sandbox publishes at most 3 host ports (--max-ports), and this container asks for 6") {
		t.Errorf("docker run -p with 6 ports: exit %d, %q", code, out)
	}

	// Execs: two at once; the third is refused, then runs once one ended.
	var ids []string
	for range 3 {
		st, msg := call(t, c, "POST", "/v1.51/containers/p3/exec", "application/json", strings.NewReader(`{"Cmd":["sleep","2"]}`))
		var r struct{ Id string }
		if st != 201 || json.Unmarshal([]byte(msg), &r) != nil {
			t.Fatalf("exec create: %d %s", st, msg)
		}
		ids = append(ids, r.Id)
	}
	for i, id := range ids {
		st, msg := call(t, c, "POST", "/v1.51/exec/"+id+"/start", "application/json", strings.NewReader(`{"Detach":true}`))
		switch {
		case i < 2 && st != 200:
			t.Errorf("exec %d: %d %q", i, st, msg)
		case i == 2 && (st != 429 || msg != "too many docker exec processes at once: this sandbox runs at most 2 at a time (--max-execs); end one first"):
			t.Errorf("third exec at once: %d %q", st, msg)
		}
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(100 * time.Millisecond) {
		_, j := call(t, c, "GET", "/v1.51/exec/"+ids[0]+"/json", "", nil)
		if strings.Contains(j, `"Running":false`) || time.Now().After(deadline) {
			break
		}
	}
	if st, msg := call(t, c, "POST", "/v1.51/exec/"+ids[2]+"/start", "application/json", strings.NewReader(`{"Detach":true}`)); st != 200 {
		t.Errorf("the refused exec once one ended: %d %q", st, msg)
	}

	// docker cp into the container: 64 KiB at most.
	for _, tc := range []struct {
		size   int
		status int
		msg    string
	}{
		{16 << 10, 200, ""},
		{128 << 10, 413, "archive copied into the container is too large: this engine accepts at most 64KiB (--max-copy)"},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(tc.size)})
		tw.Write(bytes.Repeat([]byte("c"), tc.size))
		tw.Close()
		if st, msg := call(t, c, "PUT", "/v1.51/containers/p3/archive?path=/tmp", "application/x-tar", &buf); st != tc.status || (tc.msg != "" && msg != tc.msg) {
			t.Errorf("cp of %d bytes: %d %q, want %d %q", tc.size, st, msg, tc.status, tc.msg)
		}
	}

	// Builds: one at a time.
	ctxTar := func(df string) io.Reader {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df))})
		tw.Write([]byte(df))
		tw.Close()
		return &buf
	}
	req, _ := http.NewRequest("POST", "http://labd/v1.41/build?t=slow&nocache=1", ctxTar("FROM busybox\nRUN sleep 3\n"))
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("first build ended before its RUN step: %v", err)
		}
		if strings.Contains(line, "Step 2/2") {
			break
		}
	}
	if st, msg := call(t, c, "POST", "/v1.41/build?t=second", "application/x-tar", ctxTar("FROM busybox\n")); st != 429 || msg != "too many builds at once: this sandbox runs at most 1 at a time (--max-builds); wait for the running one to finish" {
		t.Errorf("second build at once: %d %q", st, msg)
	}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "Successfully tagged slow:latest") {
		t.Errorf("first build: %s", rest)
	}
	if st, msg := call(t, c, "POST", "/v1.41/build?t=second", "application/x-tar", ctxTar("FROM busybox\n")); st != 200 {
		t.Errorf("second build after the first: %d %q", st, msg)
	}
	run(t, sb, "docker rm -f p1 p3 >/dev/null 2>&1")
}
