package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
)

// groupFile reads one of a group's cgroup files: v1name in the v1
// controller's directory, or v2name in the unified one on a v2 host.
func groupFile(t *testing.T, g *Group, controller, v1name, v2name string) string {
	t.Helper()
	dirs := g.Dirs()
	file := filepath.Join(dirs[controller], v1name)
	if cgroups.IsCgroup2UnifiedMode() {
		file = filepath.Join(dirs[""], v2name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("group %s: %v", g.Name(), err)
	}
	return strings.TrimSpace(string(b))
}

// groupDirsExist counts the group's cgroup directories still on disk.
func groupDirsExist(g *Group) int {
	n := 0
	for _, d := range g.Dirs() {
		if _, err := os.Stat(d); err == nil {
			n++
		}
	}
	return n
}

func newTestGroup(t *testing.T, r *Runtime, l Limits) *Group {
	t.Helper()
	g, err := r.NewGroup(context.Background(), fmt.Sprintf("grp-%d", time.Now().UnixNano()), l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := g.Remove(ctx); err != nil {
			t.Errorf("Remove: %v", err)
		}
		if n := groupDirsExist(g); n != 0 {
			t.Errorf("%d cgroup directories of group %s left after Remove", n, g.Name())
		}
	})
	return g
}

// TestGroupLimits: a group's limits are the cgroup's, its containers'
// cgroups sit below it, and what they ask for beyond the group's limits
// stays within them: a container with -m 1g OOM-killed at the group's
// 64 MiB, one whose dd fills a 1 GiB tmpfs too, a fork loop with
// --pids-limit 1000 stopped at the group's 24.
func TestGroupLimits(t *testing.T) {
	r := newTestRuntime(t)
	g := newTestGroup(t, r, Limits{Memory: 64 << 20, Pids: 24, CPUShares: 512})

	if got := groupFile(t, g, "memory", "memory.limit_in_bytes", "memory.max"); got != strconv.Itoa(64<<20) {
		t.Errorf("memory limit %s, want %d", got, 64<<20)
	}
	if swapLimitSupported() {
		if got := groupFile(t, g, "memory", "memory.memsw.limit_in_bytes", "memory.swap.max"); got != strconv.Itoa(128<<20) && got != strconv.Itoa(64<<20) {
			t.Errorf("swap limit %s, want as much swap as memory (v1: 128 MiB memory+swap, v2: 64 MiB swap)", got)
		}
	}
	if got := groupFile(t, g, "pids", "pids.max", "pids.max"); got != "24" {
		t.Errorf("pids.max %s, want 24", got)
	}
	wantCPU := "512"
	if cgroups.IsCgroup2UnifiedMode() {
		wantCPU = strconv.FormatUint(cgroups.ConvertCPUSharesToCgroupV2Value(512), 10)
	}
	if got := groupFile(t, g, "cpu", "cpu.shares", "cpu.weight"); got != wantCPU {
		t.Errorf("cpu weight %s, want %s", got, wantCPU)
	}

	// Placement: the container's processes are in <parent>/<group>/<id>.
	s := baseSpec(t, "sleep", "100")
	s.Group = g
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.Pid()))
	want := "/" + testCgroupParent + "/" + g.Name() + "/" + s.ID + "\n"
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// memory and pids (v1) or the unified line (v2) at least.
		if (strings.Contains(l, ":memory:") || strings.Contains(l, ":pids:") || strings.HasPrefix(l, "0::")) && !strings.HasSuffix(l+"\n", want) {
			t.Errorf("container cgroup %q, want …%s", l, strings.TrimSpace(want))
		}
	}
	_ = c.Kill()
	if _, err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		spec   func(*Spec)
		args   []string
		oom    bool
		output func(t *testing.T, out, errOut string, code int)
	}{
		{name: "memory", oom: true, args: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"},
			spec: func(s *Spec) { s.Memory = 1 << 30 }},
		{name: "tmpfs", oom: true, args: []string{"dd", "if=/dev/zero", "of=/big/fill", "bs=1M", "count=512"},
			spec: func(s *Spec) {
				s.Mounts = []Mount{{Source: "tmpfs", Destination: "/big", Type: "tmpfs", Options: []string{"size=1g"}}}
			}},
		{name: "pids", args: []string{"sh", "-c", `i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo $i; sleep 1000 & done; echo spawned`},
			spec: func(s *Spec) { s.PidsLimit = 1000 },
			output: func(t *testing.T, out, errOut string, code int) {
				if n := len(strings.Fields(out)); code == 0 || n == 0 || n > 24 || strings.Contains(out, "spawned") || !strings.Contains(errOut, "can't fork") {
					t.Errorf("fork loop with --pids-limit 1000 in a group of 24: exit %d, %d processes, stderr %q; want a fork failure before 24", code, n, errOut)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec(t, tt.args...)
			s.Group = g
			tt.spec(&s)
			var out, errb syncBuffer
			s.Stdout, s.Stderr = &out, &errb
			c, err := r.Start(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			st, err := c.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tt.oom {
				if st.ExitCode != 137 || !st.OOMKilled {
					t.Errorf("Wait = %+v (stderr %q), want exit 137, OOMKilled, at the group's limit", st, errb.String())
				}
				u, err := g.Usage()
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("group memory peak %d MiB", u.MemoryPeak>>20)
				if u.MemoryPeak > 64<<20 {
					t.Errorf("group memory peak %d, above its limit %d", u.MemoryPeak, 64<<20)
				}
			}
			if tt.output != nil {
				tt.output(t, out.String(), errb.String(), st.ExitCode)
			}
		})
	}
}

// TestGroupRemove: Remove refuses new containers at once and removes the
// cgroup when the last container is released; until then it says how
// many run.
func TestGroupRemove(t *testing.T) {
	r := newTestRuntime(t)
	g, err := r.NewGroup(context.Background(), "grp-remove", Limits{Pids: 100})
	if err != nil {
		t.Fatal(err)
	}
	s := baseSpec(t, "sleep", "100")
	s.Group = g
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = g.Remove(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "1 containers still running") {
		t.Errorf("Remove with a container running = %v, want it to say so", err)
	}
	if groupDirsExist(g) == 0 {
		t.Error("the group's cgroups were removed under a running container")
	}
	s2 := baseSpec(t, "true")
	s2.Group = g
	if _, err := r.Start(context.Background(), s2); !errors.Is(err, ErrGroupRemoved) {
		t.Errorf("Start in a removed group = %v, want ErrGroupRemoved", err)
	}
	// A new group of the same name waits for the old one's removal.
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = r.NewGroup(ctx, "grp-remove", Limits{})
	cancel()
	if err == nil || !strings.Contains(err.Error(), "the previous one is still being removed") {
		t.Errorf("NewGroup of a name being removed = %v, want it to wait", err)
	}
	_ = c.Kill()
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Remove(ctx); err != nil {
		t.Fatalf("Remove after the container ended: %v", err)
	}
	if n := groupDirsExist(g); n != 0 {
		t.Errorf("%d cgroup directories left", n)
	}
	g2, err := r.NewGroup(ctx, "grp-remove", Limits{Pids: 50})
	if err != nil {
		t.Fatalf("NewGroup once the old one was removed: %v", err)
	}
	if err := g2.Remove(ctx); err != nil || groupDirsExist(g2) != 0 {
		t.Errorf("Remove of the new group: %v", err)
	}
	if ents, _ := os.ReadDir(r.groupsDir()); len(ents) != 0 {
		t.Errorf("group records left: %v", ents)
	}
}

// TestGroupRefusals: names and limits that could not make a group.
func TestGroupRefusals(t *testing.T) {
	r := newTestRuntime(t)
	tests := []struct {
		name string
		l    Limits
		want string
	}{
		{"../escape", Limits{}, `invalid container group name "../escape"`},
		{"a/b", Limits{}, `invalid container group name "a/b"`},
		{"", Limits{}, `invalid container group name ""`},
		{"neg", Limits{Memory: -1}, "negative limits"},
		{"swap", Limits{Memory: 64 << 20, MemorySwap: 32 << 20}, "memory+swap limit 33554432 is below the memory limit 67108864"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := r.NewGroup(context.Background(), tt.name, tt.l)
			if err == nil {
				g.Remove(context.Background())
				t.Fatalf("NewGroup(%q, %+v) succeeded", tt.name, tt.l)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestSweepGroups: a runtime started on the root of a killed one kills
// the containers of its groups and removes the groups.
func TestSweepGroups(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	r, err := New(Options{Root: root, CgroupParent: testCgroupParent})
	if err != nil {
		t.Fatal(err)
	}
	g, err := r.NewGroup(context.Background(), "grp-sweep", Limits{Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s := baseSpec(t, "sleep", "100")
	s.Group = g
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := New(Options{Root: root, CgroupParent: testCgroupParent})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Wait(ctx); err != nil {
		t.Fatalf("container survived the sweep: %v", err)
	}
	if n := groupDirsExist(g); n != 0 {
		t.Errorf("%d cgroup directories of the killed runtime's group left", n)
	}
	if ents, _ := os.ReadDir(r2.groupsDir()); len(ents) != 0 {
		t.Errorf("group records left: %v", ents)
	}
	assertNoLeaks(t, r2, leaks{})
}

// TestOOMScoreAdj: Spec.OOMScoreAdj is the container's processes'.
func TestOOMScoreAdj(t *testing.T) {
	r := newTestRuntime(t)
	for _, adj := range []int{500} {
		s := baseSpec(t, "cat", "/proc/self/oom_score_adj")
		s.OOMScoreAdj = &adj
		if out, _, code := run(t, r, s); code != 0 || strings.TrimSpace(out) != strconv.Itoa(adj) {
			t.Errorf("oom_score_adj %q (exit %d), want %d", out, code, adj)
		}
	}
}
