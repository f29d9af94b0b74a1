package enginebox

import (
	"fmt"

	"github.com/docker/go-units"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
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
	// engine.DefaultMaxContainerLog, package sandbox/engine/ctr).
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
func (l Limits) engineLimits() engine.EngineLimits {
	n := func(v, def int) int { return int(pick(int64(v), int64(def))) }
	return engine.EngineLimits{Builds: n(l.Builds, DefaultMaxBuilds), Execs: n(l.Execs, DefaultMaxExecs), Ports: n(l.Ports, DefaultMaxPorts),
		Logs: pick(l.Logs, engine.DefaultMaxContainerLog)}
}
