package enginebox_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	"github.com/labd/labd/sandbox/enginebox"
)

// defaultCycles is how many create/remove cycles `make test` runs: one
// takes 0.25–0.9 s on this project's 2-core machine under load, so 100
// fit in one or two minutes; LABD_CYCLES=1000 is issue 13's full run
// (14.5 min, 870 ms a cycle, at load average 10–37).
const defaultCycles = 100

// TestSandboxCycles creates and removes a sandbox over and over through
// sandbox.Manager and the engine provider as labd serve makes them (user
// namespace, cgroup, network, container shell), with a container
// publishing a port in each, and counts what the host holds: after the
// last removal, mounts, cgroups, processes, network namespaces, veths,
// scratch directories, and the test process's open files and goroutines
// are back where they were before the first; per-sandbox state on disk
// (the sandbox's view, records, uid range) does not grow with the cycles,
// since they are the same sandbox's. The first cycle is not counted: it
// starts what lives as long as the process (the runtime's and pools'
// goroutines, the network pool's files).
func TestSandboxCycles(t *testing.T) {
	testenv.Root(t, "sandboxes run in new namespaces")
	testenv.Command(t, "nsenter", "util-linux")
	testenv.Command(t, "ip", "iproute2")
	n := defaultCycles
	if s := os.Getenv("LABD_CYCLES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 2 {
			t.Fatalf("LABD_CYCLES=%q: want a number of cycles from 2", s)
		}
		n = v
	}
	data := sandboxImageData(t)
	parent := fmt.Sprintf("labd-cycle-%d", os.Getpid())
	t.Cleanup(func() { removeCgroupParent(parent) })
	shared, err := engine.OpenShared(data, engine.SharedOptions{UserNS: &engine.UserNSOptions{}, CgroupParent: parent})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	ws := t.TempDir()
	abs, _ := filepath.Abs(data)
	scope := cycleScope{dirs: []string{ws, engine.RuntimeRoot(abs, true)}, data: abs, ws: ws, parent: parent}
	mgr := sandbox.NewManager(&enginebox.Provider{Shared: shared}, sandbox.ManagerOptions{DataDir: ws, IdleTimeout: -1})
	defer mgr.Close(context.Background())

	ctx := context.Background()
	const id = "cycle"
	cycle := func(i int) {
		t.Helper()
		sb, err := mgr.GetOrCreate(ctx, id, "learner")
		if err != nil {
			t.Fatalf("cycle %d: create: %v", i, err)
		}
		publish(t, sb, i)
		if err := mgr.Destroy(ctx, id, sandbox.ReasonAdmin); err != nil {
			t.Fatalf("cycle %d: remove: %v", i, err)
		}
	}
	before := scope.count(t) // the sandbox's own state is not there yet
	cycle(0)
	first := scope.count(t)
	// A removed sandbox holds nothing: its disk is unmounted with it.
	if d := before.diffHost(first); d != "" {
		t.Errorf("the first cycle left on the host:\n%s", d)
	}
	fds, gors := openFDs(t), goruntime.NumGoroutine()
	began := time.Now()
	for i := 1; i < n; i++ {
		cycle(i)
	}
	took := time.Since(began)
	t.Logf("%d create/publish/remove cycles in %v: %v each", n-1, took.Round(time.Millisecond), (took / time.Duration(n-1)).Round(time.Millisecond))
	after := scope.count(t)
	if d := first.diff(after); d != "" {
		t.Errorf("after %d more cycles:\n%s", n-1, d)
	}
	// Stopping as labd does: nothing is left.
	if err := mgr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	shared.Close()
	if d := before.diffHost(scope.count(t)); d != "" {
		t.Errorf("after the Manager and the engine closed:\n%s", d)
	}
	// Goroutines and files end a moment after Destroy returns (HTTP
	// servers' connection goroutines, the runtime's reapers).
	// The counts are the whole test process's: a file or two another
	// test (or the runtime's own pipes) holds at that moment is not a
	// leak; one per cycle would be n-1.
	const slack = 4
	var f, g int
	for range 100 {
		f, g = openFDs(t), goruntime.NumGoroutine()
		if f <= fds && g <= gors {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if f > fds+slack {
		t.Errorf("open files of the test process: %d after the first cycle, %d after %d more", fds, f, n-1)
	}
	if g > gors+slack {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d after the first cycle, %d after %d more:\n%s", gors, g, n-1, buf[:goruntime.Stack(buf, true)])
	}
}

// publish runs a container of busybox publishing 5001 in sb through its
// engine socket, as `docker run -d -p 5001:5000` does, and checks it
// answers in the sandbox's network.
func publish(t *testing.T, sb sandbox.Sandbox, i int) {
	t.Helper()
	es, ok := sb.(interface {
		EngineSocket() string
		DialPort(context.Context, int) (net.Conn, error)
	})
	if !ok {
		t.Fatalf("%T has no engine socket", sb)
	}
	c, err := client.NewClientWithOpts(client.WithHost("unix://"+es.EngineSocket()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The last cycle's container is kept (exited) as the learner's;
	// replaced here as a learner running it again would.
	if err := c.ContainerRemove(ctx, "web", container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		t.Fatalf("cycle %d: remove the last cycle's container: %v", i, err)
	}
	created, err := c.ContainerCreate(ctx, &container.Config{
		Image:        "busybox",
		Cmd:          []string{"sh", "-c", fmt.Sprintf("mkdir /w && echo cycle-%d > /w/index.html && exec httpd -f -p 5000 -h /w", i)},
		ExposedPorts: nat.PortSet{"5000/tcp": {}},
	}, &container.HostConfig{PortBindings: nat.PortMap{"5000/tcp": {{HostPort: "5001"}}}}, nil, nil, "web")
	if err != nil {
		t.Fatalf("cycle %d: container create: %v", i, err)
	}
	if err := c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("cycle %d: container start: %v", i, err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return es.DialPort(ctx, 5001)
	}, DisableKeepAlives: true}}
	want := fmt.Sprintf("cycle-%d", i)
	var got []byte
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://localhost/", nil)
		if resp, err := hc.Do(req); err == nil {
			got, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(got, []byte(want)) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("cycle %d: port 5001 did not answer %q (last %q)", i, want, got)
}

// cycleScope is what the cycle test's sandboxes may hold: mounts under
// its directories, cgroups under its parent and the processes in them,
// their network namespaces and the veths there, scratch entries, and the
// sandbox's own state in the store.
type cycleScope struct {
	dirs     []string
	data, ws string
	parent   string
}

type cycleCount struct {
	host  map[string][]string // kind → items, each a host resource held
	state map[string]int      // per-sandbox files in the store, by directory
}

func (s cycleScope) count(t *testing.T) cycleCount {
	t.Helper()
	c := cycleCount{host: map[string][]string{}, state: map[string]int{}}
	for _, d := range s.dirs {
		c.host["mounts"] = append(c.host["mounts"], mountinfo.Under(d)...)
	}
	for _, ctl := range []string{"memory", "pids", "cpu", "freezer", "devices", "cpuset", "blkio", "unified", ""} {
		base := filepath.Join("/sys/fs/cgroup", ctl, s.parent)
		filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != base {
				c.host["cgroups"] = append(c.host["cgroups"], p)
			}
			return nil
		})
	}
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	netns := map[string]int{}
	paths, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range paths {
		cg, err := os.ReadFile(filepath.Join(p, "cgroup"))
		if err != nil || !bytes.Contains(cg, []byte(":/"+s.parent+"/")) {
			continue
		}
		if st, _ := os.ReadFile(filepath.Join(p, "stat")); bytes.Contains(st, []byte(") Z ")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(p))
		comm, _ := os.ReadFile(filepath.Join(p, "comm"))
		c.host["processes"] = append(c.host["processes"], fmt.Sprintf("%d %s", pid, bytes.TrimSpace(comm)))
		if ns, err := os.Readlink(filepath.Join(p, "ns", "net")); err == nil && ns != hostNet {
			netns[ns] = pid
		}
	}
	for ns, pid := range netns {
		c.host["network namespaces"] = append(c.host["network namespaces"], ns)
		out, _ := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-n", "ip", "-o", "link", "show", "type", "veth").Output()
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				c.host["veths"] = append(c.host["veths"], ns+" "+l)
			}
		}
	}
	for _, d := range []string{"build", "tmp", "shells", "checks", "run", "userns"} {
		ents, _ := os.ReadDir(filepath.Join(s.data, "engine", d))
		for _, e := range ents {
			if d == "run" && e.Name() == engine.DefaultView {
				continue // `labd engine`'s, if another test runs one
			}
			c.host["scratch"] = append(c.host["scratch"], filepath.Join(d, e.Name()))
		}
	}
	for _, d := range []string{"bundles", "state"} {
		ents, _ := os.ReadDir(filepath.Join(s.dirs[1], d))
		for _, e := range ents {
			c.host["scratch"] = append(c.host["scratch"], filepath.Join("runtime", d, e.Name()))
		}
	}
	// The store is shared with the package's other tests: only this
	// sandbox's files.
	for _, d := range []string{"views", "records", "volumes"} {
		m, _ := filepath.Glob(filepath.Join(s.data, "engine", d, "cycle*"))
		c.state[d] = len(m)
	}
	// Containers are kept by ID: the package's tests run one at a time.
	ctrs, _ := os.ReadDir(filepath.Join(s.data, "engine", "containers"))
	c.state["containers"] = len(ctrs)
	ids, _ := os.ReadDir(filepath.Join(s.data, "engine", "idranges"))
	c.state["idranges"] = len(ids)
	for _, l := range c.host {
		sort.Strings(l)
	}
	return c
}

// without is c less the named items of kind.
func (c cycleCount) without(kind string, items ...string) cycleCount {
	out := cycleCount{host: map[string][]string{}, state: c.state}
	for k, l := range c.host {
		for _, it := range l {
			if k != kind || !slices.Contains(items, it) {
				out.host[k] = append(out.host[k], it)
			}
		}
	}
	return out
}

// diffHost says what b holds on the host beyond a.
func (a cycleCount) diffHost(b cycleCount) string {
	var out strings.Builder
	kinds := make([]string, 0, len(b.host))
	for k := range b.host {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		if len(b.host[k]) > len(a.host[k]) {
			fmt.Fprintf(&out, "  %s: %d, was %d\n", k, len(b.host[k]), len(a.host[k]))
			old := map[string]bool{}
			for _, it := range a.host[k] {
				old[it] = true
			}
			shown := 0
			for _, it := range b.host[k] {
				if !old[it] && shown < 20 {
					out.WriteString("    " + it + "\n")
					shown++
				}
			}
		}
	}
	return out.String()
}

// diff is diffHost plus the sandbox's state in the store.
func (a cycleCount) diff(b cycleCount) string {
	out := a.diffHost(b)
	for k, v := range b.state {
		if v != a.state[k] {
			out += fmt.Sprintf("  %s of the sandbox: %d files, was %d\n", k, v, a.state[k])
		}
	}
	return out
}

// openFDs counts the test process's open files.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestWarmSandboxesLeaveNothing makes a warm pool of two, gives one to a
// learner and closes the Manager: the learner's sandbox keeps its
// directory (behind its link) and its uid range, the one nobody got
// leaves nothing, on the host or in the store (found by this test: its
// uid range was held for good).
func TestWarmSandboxesLeaveNothing(t *testing.T) {
	testenv.Root(t, "sandboxes run in new namespaces")
	testenv.Command(t, "nsenter", "util-linux")
	testenv.Command(t, "ip", "iproute2")
	data := sandboxImageData(t)
	parent := fmt.Sprintf("labd-warm-%d", os.Getpid())
	t.Cleanup(func() { removeCgroupParent(parent) })
	shared, err := engine.OpenShared(data, engine.SharedOptions{UserNS: &engine.UserNSOptions{}, CgroupParent: parent})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	ws := t.TempDir()
	abs, _ := filepath.Abs(data)
	scope := cycleScope{dirs: []string{ws, engine.RuntimeRoot(abs, true)}, data: abs, ws: ws, parent: parent}
	before := scope.count(t)
	mgr := sandbox.NewManager(&enginebox.Provider{Shared: shared}, sandbox.ManagerOptions{DataDir: ws, IdleTimeout: -1, Warm: 2})
	waitWarm := func(n int) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for mgr.Warm() < n {
			if time.Now().After(deadline) {
				t.Fatalf("the pool has %d warm sandboxes after 3 minutes, want %d", mgr.Warm(), n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitWarm(2)
	ctx := context.Background()
	if _, err := mgr.GetOrCreate(ctx, "warm-learner", "learner"); err != nil {
		t.Fatal(err)
	}
	waitWarm(2) // refilled: two nobody gets
	if err := mgr.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	shared.Close() // as labd stopping
	after := scope.count(t)
	if d := before.diffHost(after); d != "" {
		t.Errorf("left on the host:\n%s", d)
	}
	ents, _ := os.ReadDir(filepath.Join(ws, "sandboxes"))
	var dirs []string
	for _, e := range ents {
		dirs = append(dirs, e.Name())
	}
	if len(dirs) != 2 { // the learner's link and the directory it names
		t.Errorf("DATA/sandboxes holds %q, want the learner's link and its sandbox's directory", dirs)
	}
	if got, want := after.state["idranges"], before.state["idranges"]+1; got != want {
		t.Errorf("uid ranges held: %d, want %d (before, plus the learner's)", got, want)
	}
}

// removeCgroupParent removes a test's own cgroup parent once empty: the
// runtime makes it and leaves it, as dockerd leaves its --cgroup-parent.
func removeCgroupParent(parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	for _, d := range dirs {
		_ = os.Remove(d)
	}
	_ = os.Remove(filepath.Join("/sys/fs/cgroup", parent))
}
