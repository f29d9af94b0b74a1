package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sync"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
)

// Limits bound a group of containers together: whatever each container
// asks for (docker run -m, --pids-limit, --cpu-shares), the group's
// cgroup sits above the containers' own, and the kernel enforces both.
type Limits struct {
	// Memory in bytes, page cache and the tmpfs pages its processes wrote
	// included (the kernel charges a page to the cgroup of its writer);
	// 0: none.
	Memory int64
	// MemorySwap is memory plus swap in bytes, Docker's meaning: 0 gives
	// as much swap as memory (2×Memory), -1 no swap limit. Not set where
	// the kernel does not account swap (cgroup v1 without swapaccount).
	MemorySwap int64
	// Pids bounds the group's processes and threads; 0: none.
	Pids int64
	// CPUShares is the group's weight against its siblings when the CPUs
	// are contended, in cgroup v1 shares (1024 is the kernel's default;
	// cgroup v2 gets the equivalent weight); 0: the default.
	CPUShares uint64
}

// ErrGroupRemoved is returned by Start for a container of a group that
// is being removed.
var ErrGroupRemoved = errors.New("container group removed")

// Group is a cgroup <CgroupParent>/<name> with limits that holds
// containers: a sandbox's shell, its learner's containers, its build steps
// and its checks go into one group, so the sandbox as a whole gets its
// share of memory, processes and CPU, and a container's own limits only
// divide that share. Spec.Group puts a container in it (its cgroup is
// <CgroupParent>/<name>/<id>).
type Group struct {
	r    *Runtime
	name string
	mgr  cgroups.Manager

	mu      sync.Mutex
	members int  // containers started or starting in the group, not yet released
	closing bool // Remove was called: no new member
	removed chan struct{}
	err     error // of the removal, once removed is closed
}

// groupsDir records the groups a runtime made (one empty file each), so
// that New removes those a killed labd left, and only those.
func (r *Runtime) groupsDir() string { return filepath.Join(r.root, "groups") }

// NewGroup makes the cgroup <CgroupParent>/<name> in every hierarchy with
// the limits l. A group of that name left by a killed process is reused
// with the new limits; one of this runtime still being removed (its last
// containers ending) is waited for until ctx ends. Remove it once its
// containers are gone.
func (r *Runtime) NewGroup(ctx context.Context, name string, l Limits) (_ *Group, err error) {
	r.detectCgroupFiles()
	if !validID.MatchString(name) {
		return nil, fmt.Errorf("invalid container group name %q", name)
	}
	if l.Memory < 0 || l.Pids < 0 || l.MemorySwap < -1 {
		return nil, fmt.Errorf("container group %s: negative limits %+v", name, l)
	}
	if l.Memory > 0 && l.MemorySwap > 0 && l.MemorySwap < l.Memory {
		return nil, fmt.Errorf("container group %s: memory+swap limit %d is below the memory limit %d", name, l.MemorySwap, l.Memory)
	}
	g := &Group{r: r, name: name, removed: make(chan struct{})}
	for {
		r.mu.Lock()
		prev := r.groups[name]
		if prev == nil {
			r.groups[name] = g
			r.mu.Unlock()
			break
		}
		r.mu.Unlock()
		// Its removal would take the directories from under the new one.
		select {
		case <-prev.removed:
		case <-ctx.Done():
			return nil, fmt.Errorf("container group %s: the previous one is still being removed: %w", name, ctx.Err())
		}
	}
	defer func() {
		if err != nil {
			r.mu.Lock()
			delete(r.groups, name)
			r.mu.Unlock()
		}
	}()
	if err := os.MkdirAll(r.groupsDir(), 0o700); err != nil {
		return nil, fmt.Errorf("container group %s: %w", name, err)
	}
	// Recorded before the cgroup exists: a kill in between leaves a record
	// the sweep removes, never a cgroup nobody knows of.
	if err := os.WriteFile(filepath.Join(r.groupsDir(), name), nil, 0o600); err != nil {
		return nil, fmt.Errorf("container group %s: %w", name, err)
	}
	m, res, err := r.groupManager(name, l)
	if err == nil {
		// -1: create the directories (and enable the controllers of v2
		// parents) without moving any process in.
		err = m.Apply(-1)
	}
	if err == nil {
		err = m.Set(res)
	}
	if err != nil {
		if m != nil {
			_ = m.Destroy()
		}
		_ = os.Remove(filepath.Join(r.groupsDir(), name))
		return nil, fmt.Errorf("container group %s: %w", name, err)
	}
	g.mgr = m
	return g, nil
}

// groupManager is the cgroup manager of group name (limits l; zero
// limits for one that is only to be removed).
func (r *Runtime) groupManager(name string, l Limits) (cgroups.Manager, *cgroups.Resources, error) {
	res := &cgroups.Resources{
		// The group allows every device: each container's own cgroup
		// carries Docker's device rules.
		SkipDevices: true,
		Memory:      l.Memory,
		CpuShares:   l.CPUShares,
	}
	if l.Memory > 0 && swapLimitSupported() {
		res.MemorySwap = memorySwap(l.Memory, l.MemorySwap)
	}
	if l.Pids > 0 {
		p := l.Pids
		res.PidsLimit = &p
	}
	m, err := manager.New(&cgroups.Cgroup{Path: "/" + path.Join(r.cgroupParent, name), Resources: res})
	return m, res, err
}

// Name is the group's name: its cgroup is <CgroupParent>/<name>.
func (g *Group) Name() string { return g.name }

// Dirs are the group's cgroup directories: by controller on cgroup v1 (and
// hybrid hosts, "" for the unified hierarchy), "" alone on v2.
func (g *Group) Dirs() map[string]string {
	out := map[string]string{}
	for k, v := range g.mgr.GetPaths() {
		out[k] = v
	}
	return out
}

// Usage is what a group's processes use now.
type Usage struct {
	Memory     uint64 // bytes charged now (page cache and tmpfs included)
	MemoryPeak uint64 // the most charged since the group was made (v1; v2 where memory.peak exists)
	Pids       uint64 // processes and threads
	CPU        uint64 // CPU time used since the group was made, in nanoseconds
}

// Usage reads the group's memory, process and CPU counters.
func (g *Group) Usage() (Usage, error) {
	st, err := g.mgr.Stats(&cgroups.StatsOptions{Controllers: cgroups.CPU | cgroups.Memory | cgroups.Pids})
	if err != nil {
		return Usage{}, fmt.Errorf("usage of container group %s: %w", g.name, err)
	}
	return Usage{
		Memory:     st.MemoryStats.Usage.Usage,
		MemoryPeak: st.MemoryStats.Usage.MaxUsage,
		Pids:       st.PidsStats.Current,
		CPU:        st.CpuStats.CpuUsage.TotalUsage,
	}, nil
}

// enter counts a container starting in the group; it fails once Remove
// was called.
func (g *Group) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return fmt.Errorf("%w: %s", ErrGroupRemoved, g.name)
	}
	g.members++
	return nil
}

// leave counts a container released (its own cgroup removed); the last
// one out of a group being removed removes it.
func (g *Group) leave() {
	g.mu.Lock()
	g.members--
	last := g.closing && g.members == 0
	g.mu.Unlock()
	if last {
		g.destroy()
	}
}

// Remove refuses new containers in the group, then removes its cgroups and
// its record once every container in it has been released: at once when
// none is left, else when the last one ends (the callers kill theirs).
// It waits for that until ctx ends; the removal still happens afterwards.
func (g *Group) Remove(ctx context.Context) error {
	g.mu.Lock()
	first := !g.closing
	g.closing = true
	now := first && g.members == 0
	n := g.members
	g.mu.Unlock()
	if now {
		g.destroy()
	}
	select {
	case <-g.removed:
		return g.err
	case <-ctx.Done():
		return fmt.Errorf("remove container group %s: %d containers still running: %w", g.name, n, ctx.Err())
	}
}

func (g *Group) destroy() {
	err := g.mgr.Destroy()
	if rerr := os.Remove(filepath.Join(g.r.groupsDir(), g.name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		err = fmt.Errorf("remove container group %s: %w", g.name, err)
		g.r.log.Warn("runtime: remove container group", "group", g.name, "err", err)
	}
	g.err = err
	g.r.mu.Lock()
	if g.r.groups[g.name] == g {
		delete(g.r.groups, g.name)
	}
	g.r.mu.Unlock()
	close(g.removed)
}

// sweepGroups removes the groups a killed process left (after their
// containers were destroyed).
func (r *Runtime) sweepGroups() {
	ents, _ := os.ReadDir(r.groupsDir())
	for _, e := range ents {
		name := e.Name()
		if !validID.MatchString(name) {
			_ = os.Remove(filepath.Join(r.groupsDir(), name))
			continue
		}
		m, _, err := r.groupManager(name, Limits{})
		if err == nil {
			err = m.Destroy()
		}
		if err != nil {
			r.log.Warn("runtime: remove leftover container group", "group", name, "err", err)
			continue
		}
		_ = os.Remove(filepath.Join(r.groupsDir(), name))
	}
}

// cgroupDetect: the cgroup library finds out, on its first Set, which
// files some controllers use (blkio's weight file) and keeps that in
// package variables without a lock; two sandboxes made at once would race
// on them. One Set on a throwaway group, before any other, does it once.
var cgroupDetect sync.Once

func (r *Runtime) detectCgroupFiles() {
	cgroupDetect.Do(func() {
		m, res, err := r.groupManager(fmt.Sprintf("labd-probe-%d", os.Getpid()), Limits{})
		if err != nil {
			return
		}
		if m.Apply(-1) == nil {
			_ = m.Set(res)
		}
		_ = m.Destroy()
	})
}
