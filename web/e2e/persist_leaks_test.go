package e2e_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/labd/labd/sandbox/engine/mountinfo"
)

// leakScope is what one `labd serve` of a test may hold on the host,
// scoped so that other tests running at the same time are not counted:
// its data dir, its runtime root under /run/labd, its cgroup parent (one
// of the test's own) and its binary (the helpers labd re-executes).
type leakScope struct {
	data, run, parent, bin string
}

// hostHeld lists what is held, each item named so that a failure says
// what leaked.
type hostHeld struct {
	mounts  []string // mount points under data and run
	cgroups []string // cgroups under the parent, any controller
	procs   []string // processes in them or running the binary
	netns   []string // their network namespaces other than the host's
	veths   []string // veths in those namespaces
	scratch []string // files the engine keeps only while something runs
}

func (h hostHeld) empty() bool {
	return len(h.mounts)+len(h.cgroups)+len(h.procs)+len(h.netns)+len(h.veths)+len(h.scratch) == 0
}

func (h hostHeld) String() string {
	var b strings.Builder
	for _, f := range []struct {
		name  string
		items []string
	}{{"mounts", h.mounts}, {"cgroups", h.cgroups}, {"processes", h.procs}, {"network namespaces", h.netns}, {"veths", h.veths}, {"scratch", h.scratch}} {
		fmt.Fprintf(&b, "  %d %s", len(f.items), f.name)
		for i, it := range f.items {
			if i == 40 {
				fmt.Fprintf(&b, "\n    … %d more", len(f.items)-i)
				break
			}
			b.WriteString("\n    " + it)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// counts is the numbers alone, for comparing.
func (h hostHeld) counts() [6]int {
	return [6]int{len(h.mounts), len(h.cgroups), len(h.procs), len(h.netns), len(h.veths), len(h.scratch)}
}

// count lists what the scope holds; live is labd serve's own pid (not
// counted, nor its threads), 0 when none runs.
func (s leakScope) count(t *testing.T, live int) hostHeld {
	t.Helper()
	var h hostHeld
	for _, d := range []string{s.data, s.run} {
		for _, m := range mountinfo.Under(d) {
			h.mounts = append(h.mounts, m)
		}
	}
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/devices", "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/blkio"} {
		base := filepath.Join(root, s.parent)
		filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != base {
				h.cgroups = append(h.cgroups, strings.TrimPrefix(p, "/sys/fs/cgroup/"))
			}
			return nil
		})
	}
	hostNet, _ := os.Readlink("/proc/1/ns/net")
	netns := map[string]int{} // namespace → a pid in it
	paths, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range paths {
		pid, _ := strconv.Atoi(filepath.Base(p))
		if pid == live || pid == os.Getpid() {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(p, "cgroup"))
		if err != nil {
			continue
		}
		exe, _ := os.Readlink(filepath.Join(p, "exe"))
		ours := bytes.Contains(cg, []byte(":/"+s.parent+"/")) || bytes.Contains(cg, []byte(":/"+s.parent+"\n")) ||
			strings.TrimSuffix(exe, " (deleted)") == s.bin
		if !ours {
			continue
		}
		// A zombie holds nothing but its pid, and init reaps it: the
		// runtime's sweep killed it a moment ago.
		if st, _ := os.ReadFile(filepath.Join(p, "stat")); bytes.Contains(st, []byte(") Z ")) {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(p, "comm"))
		h.procs = append(h.procs, fmt.Sprintf("%d %s (%s)", pid, strings.TrimSpace(string(comm)), exe))
		if ns, err := os.Readlink(filepath.Join(p, "ns", "net")); err == nil && ns != hostNet {
			if _, ok := netns[ns]; !ok {
				netns[ns] = pid
			}
		}
	}
	for ns, pid := range netns {
		h.netns = append(h.netns, fmt.Sprintf("%s (pid %d)", ns, pid))
		out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-n", "ip", "-o", "link", "show", "type", "veth").Output()
		if err != nil {
			continue // the process ended meanwhile
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(l); len(f) > 1 {
				h.veths = append(h.veths, ns+" "+strings.TrimSuffix(f[1], ":"))
			}
		}
	}
	// What exists only while a build step, a shell, a check or a
	// container runs: build scratch, shells' and checks' upper dirs,
	// the runtime's container state, network run dirs, user namespace
	// pins, staging files.
	for _, d := range []string{
		filepath.Join(s.data, "engine", "build"), filepath.Join(s.data, "engine", "tmp"),
		filepath.Join(s.data, "engine", "shells"), filepath.Join(s.data, "engine", "checks"),
		filepath.Join(s.data, "engine", "run"), filepath.Join(s.data, "engine", "userns"),
		// The runtime's own directories stay; what is in them is a
		// container's.
		filepath.Join(s.run, "runtime", "bundles"), filepath.Join(s.run, "runtime", "state"),
		filepath.Join(s.run, "runtime", "groups"),
	} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			h.scratch = append(h.scratch, filepath.Join(d, e.Name()))
		}
	}
	// Warm sandboxes nobody was given: their directories (and disk
	// images) go with the run that made them.
	sbs := filepath.Join(s.data, "sandboxes")
	ents, _ := os.ReadDir(sbs)
	given := map[string]bool{}
	for _, e := range ents {
		if t, err := os.Readlink(filepath.Join(sbs, e.Name())); err == nil {
			given[t] = true
		}
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "sb-w") && !given[e.Name()] {
			h.scratch = append(h.scratch, filepath.Join(sbs, e.Name()))
		}
	}
	for _, l := range []*[]string{&h.mounts, &h.cgroups, &h.procs, &h.netns, &h.veths, &h.scratch} {
		sort.Strings(*l)
	}
	return h
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
