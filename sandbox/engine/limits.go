package engine

import (
	"fmt"
	"sync"

	"github.com/docker/go-units"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/runtime"
)

// Defaults of a sandbox's limits (Provider.Limits), chosen for a class of
// 50 on 2 cores and 24 GiB (docs/engine.md, "Limits per sandbox").
const (
	// DefaultSandboxMemory: 1 GiB, swap as much again where the kernel
	// accounts it. 50 such sandboxes could ask for twice the machine, but
	// a class uses a fraction of its cap at any moment; one learner's hog
	// is OOM-killed in their sandbox long before the machine runs short.
	DefaultSandboxMemory int64 = 1 << 30
	// DefaultSandboxPids: 512 processes and threads. A kernel's pid_max on
	// a 2-core machine is 32768: 50 sandboxes at 512 leave room for the
	// host and labd even if every learner runs a fork bomb.
	DefaultSandboxPids int64 = 512
	// DefaultSandboxCPUShares: the kernel's default weight; every sandbox
	// the same, so under contention each gets an equal share, and an idle
	// class leaves a learner all the CPUs.
	DefaultSandboxCPUShares int64 = 1024
	// DefaultMaxSandboxMemory and DefaultMaxSandboxPids cap what a lab's
	// front matter may ask for.
	DefaultMaxSandboxMemory int64 = 4 << 30
	DefaultMaxSandboxPids   int64 = 4096

	// DefaultMaxBuilds, DefaultMaxExecs and DefaultMaxPorts bound what one
	// sandbox's engine runs at once: builds, `docker exec` processes, and
	// host ports its running containers publish.
	DefaultMaxBuilds = 2
	DefaultMaxExecs  = 16
	DefaultMaxPorts  = 64

	// containerOOMScoreAdj makes a sandbox's containers and build steps
	// the kernel's first choice when memory runs out, in the sandbox's
	// cgroup or on the machine: before the learner's shell, and before
	// labd (0), as dockerd is -500 against its containers' 0.
	containerOOMScoreAdj = 500
)

// Limits are what a Provider gives each sandbox. In every field 0 means
// the default above and a negative value none.
type Limits struct {
	// The sandbox's cgroup: its shell, containers, build steps and checks
	// together.
	Memory    int64 // bytes
	Pids      int64
	CPUShares int64 // weight against the other sandboxes, v1 shares
	// MaxMemory and MaxPids cap what a lab asks for (sandbox.Resources).
	MaxMemory, MaxPids int64
	// The sandbox's engine.
	Builds, Execs, Ports int
	// Logs is what one container's log keeps on disk (bytes; default
	// DefaultMaxContainerLog).
	Logs int64
	// Disk is the sandbox's disk quota (bytes; default DefaultSandboxDisk,
	// quota.go) and MaxDisk what a lab's "resources:" may ask for.
	Disk, MaxDisk int64
}

// pick resolves a limit: 0 is def, negative is none (0).
func pick(v, def int64) int64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// sandboxLimits resolves l and what a lab asks for (res) into the sandbox
// cgroup's limits. capped names what was lowered to the server's maximum.
func (l Limits) sandboxLimits(res sandbox.Resources) (_ runtime.Limits, capped []string) {
	memory := pick(l.Memory, DefaultSandboxMemory)
	pids := pick(l.Pids, DefaultSandboxPids)
	maxMem := pick(l.MaxMemory, DefaultMaxSandboxMemory)
	maxPids := pick(l.MaxPids, DefaultMaxSandboxPids)
	if res.Memory > 0 {
		memory = res.Memory
		if maxMem > 0 && memory > maxMem {
			memory = maxMem
			capped = append(capped, fmt.Sprintf("memory %s to %s", units.BytesSize(float64(res.Memory)), units.BytesSize(float64(maxMem))))
		}
	}
	if res.Pids > 0 {
		pids = res.Pids
		if maxPids > 0 && pids > maxPids {
			pids = maxPids
			capped = append(capped, fmt.Sprintf("pids %d to %d", res.Pids, maxPids))
		}
	}
	return runtime.Limits{Memory: memory, Pids: pids, CPUShares: uint64(pick(l.CPUShares, DefaultSandboxCPUShares))}, capped
}

// engineLimits resolves l's engine bounds.
func (l Limits) engineLimits() EngineLimits {
	n := func(v, def int) int { return int(pick(int64(v), int64(def))) }
	return EngineLimits{Builds: n(l.Builds, DefaultMaxBuilds), Execs: n(l.Execs, DefaultMaxExecs), Ports: n(l.Ports, DefaultMaxPorts),
		Logs: pick(l.Logs, DefaultMaxContainerLog)}
}

// EngineLimits bound what one engine runs at once; 0 is no limit (the
// standalone engine, as dockerd).
type EngineLimits struct {
	Builds int   // builds running
	Execs  int   // `docker exec` processes running
	Ports  int   // host ports published by running containers
	Logs   int64 // bytes one container's log keeps (rotated, package ctr)
}

// counters is what an engine counts against its EngineLimits.
type counters struct {
	mu     sync.Mutex
	builds int
	execs  int
	ports  int
}

// SetLimits bounds what e runs at once.
func (e *Engine) SetLimits(l EngineLimits) { e.limits = l }

// SetGroup puts e's containers and build steps in g (the sandbox's
// cgroup), where they are also the OOM killer's first choice (oom_score_adj
// 500). nil: directly under the runtime's parent, as dockerd's.
func (e *Engine) SetGroup(g *runtime.Group) { e.group = g }

// oomScoreAdj is what e's containers and build steps get: in a sandbox,
// before the shell and labd; alone, labd's, as dockerd's containers get 0.
func (e *Engine) oomScoreAdj() *int {
	if e.group == nil {
		return nil
	}
	v := containerOOMScoreAdj
	return &v
}

var _ api.BuildAdmitter = (*Engine)(nil)

// AdmitBuild implements api.BuildAdmitter: whether a build would start now
// (Build decides).
func (e *Engine) AdmitBuild() error {
	e.count.mu.Lock()
	defer e.count.mu.Unlock()
	return e.buildsFullLocked()
}

func (e *Engine) buildsFullLocked() error {
	if max := e.limits.Builds; max > 0 && e.count.builds >= max {
		return api.TooManyRequestsError(fmt.Errorf("too many builds at once: this sandbox runs at most %d at a time (--max-builds); wait for the running one to finish", max))
	}
	return nil
}

// acquireBuild counts a build; done uncounts it.
func (e *Engine) acquireBuild() (done func(), err error) {
	e.count.mu.Lock()
	defer e.count.mu.Unlock()
	if err := e.buildsFullLocked(); err != nil {
		return nil, err
	}
	e.count.builds++
	return sync.OnceFunc(func() {
		e.count.mu.Lock()
		e.count.builds--
		e.count.mu.Unlock()
	}), nil
}

// acquireExec counts a `docker exec` process; done uncounts it.
func (e *Engine) acquireExec() (done func(), err error) {
	e.count.mu.Lock()
	defer e.count.mu.Unlock()
	if max := e.limits.Execs; max > 0 && e.count.execs >= max {
		return nil, api.TooManyRequestsError(fmt.Errorf("too many docker exec processes at once: this sandbox runs at most %d at a time (--max-execs); end one first", max))
	}
	e.count.execs++
	return sync.OnceFunc(func() {
		e.count.mu.Lock()
		e.count.execs--
		e.count.mu.Unlock()
	}), nil
}

// checkPortCount refuses a container that alone asks for more published
// ports than the sandbox may have.
func (e *Engine) checkPortCount(n int) error {
	if max := e.limits.Ports; max > 0 && n > max {
		return api.InvalidParameterError(fmt.Errorf("too many published ports: this sandbox publishes at most %d host ports (--max-ports), and this container asks for %d", max, n))
	}
	return nil
}

// acquirePorts counts n host ports of a starting container; done uncounts
// them.
func (e *Engine) acquirePorts(n int) (done func(), err error) {
	if n == 0 {
		return func() {}, nil
	}
	if err := e.checkPortCount(n); err != nil {
		return nil, err
	}
	e.count.mu.Lock()
	defer e.count.mu.Unlock()
	if max := e.limits.Ports; max > 0 && e.count.ports+n > max {
		return nil, api.TooManyRequestsError(fmt.Errorf("too many published ports: this sandbox publishes at most %d host ports (--max-ports), its running containers publish %d, and this one asks for %d more; stop one first", max, e.count.ports, n))
	}
	e.count.ports += n
	return sync.OnceFunc(func() {
		e.count.mu.Lock()
		e.count.ports -= n
		e.count.mu.Unlock()
	}), nil
}
