package engine

import (
	"fmt"
	"sync"

	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/runtime"
)

// containerOOMScoreAdj makes a sandbox's containers and build steps
// the kernel's first choice when memory runs out, in the sandbox's
// cgroup or on the machine: before the learner's shell, and before
// labd (0), as dockerd is -500 against its containers' 0.
const containerOOMScoreAdj = 500

// EngineLimits bound what one engine runs at once; 0 is no limit (the
// standalone engine, as dockerd). A sandbox's engine gets them from its
// provider's limits (sandbox/enginebox, Limits).
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
