package ctr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	netpkg "github.com/labd/labd/sandbox/engine/network"
	"github.com/labd/labd/sandbox/engine/runtime"
	"golang.org/x/sys/unix"
)

// Runtime starts a container's process (runtime.Runtime).
type Runtime interface {
	Start(ctx context.Context, s runtime.Spec) (*runtime.Container, error)
}

// Run is one start of a container, as the engine prepared it.
type Run struct {
	// Spec is the process and its root filesystem; its Stdin, Stdout and
	// Stderr are the run's (the log, the attach hub, the stdin pipe).
	Spec runtime.Spec
	// Endpoint is the run's place on the engine's bridge; nil: none.
	Endpoint *netpkg.Endpoint
	// LogCap bounds the run's log on disk (EngineLimits.Logs); 0: only
	// what --log-opt asks.
	LogCap int64
	// Release gives back what the engine holds for the run (its endpoint,
	// its published ports): once, when the run fails to start or has
	// exited, before anyone can see it stopped. It must not take the
	// container's lock.
	Release func()
}

// NotModifiedError answers a start of a running container or a stop of
// a stopped one (304, as dockerd).
type NotModifiedError struct{}

func (NotModifiedError) Error() string { return "not modified" }

// NotModified marks it a 304 (errdefs).
func (NotModifiedError) NotModified() {}

// NotRunningError is dockerd's conflict for a container that is not
// running.
type NotRunningError string

func (e NotRunningError) Error() string { return fmt.Sprintf("Container %s is not running", string(e)) }

// Conflict marks it a 409 (errdefs).
func (NotRunningError) Conflict() {}

const defaultStopTimeout = 10

// ProcessEnv is env with what dockerd adds to every container's and
// exec's process: a PATH, HOSTNAME and, on a terminal, TERM.
func ProcessEnv(env []string, hostname string, tty bool) []string {
	env = append([]string{}, env...)
	if !hasEnv(env, "PATH") {
		env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	}
	if !hasEnv(env, "HOSTNAME") {
		env = append([]string{env[0], "HOSTNAME=" + hostname}, env[1:]...)
	}
	if tty && !hasEnv(env, "TERM") {
		env = append(env, "TERM=xterm")
	}
	return env
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

// StartLocked starts run in c, which the caller has locked and checked
// (not running, not being removed). On failure the exit code and error
// are recorded as dockerd records them and run.Release has run.
func (s *Store) StartLocked(ctx context.Context, c *Container, rt Runtime, run Run) error {
	release := run.Release
	if release == nil {
		release = func() {}
	}
	pol, err := logPolicyOf(c.HostConfig.LogConfig, run.LogCap)
	if err != nil {
		release()
		return err
	}
	logf, err := openLogFile(c.LogPath(), pol)
	if err != nil {
		release()
		return err
	}
	out := newOutput(logf, &c.hub)
	spec := run.Spec
	spec.Stdout = out.writer("stdout")
	spec.Stderr = out.writer("stderr")
	var stdinW *io.PipeWriter
	var stdinR *io.PipeReader
	if c.Meta.Config.OpenStdin {
		stdinR, stdinW = io.Pipe()
		spec.Stdin = stdinR
	}

	rc, err := rt.Start(context.WithoutCancel(ctx), spec)
	if err != nil {
		release()
		out.close()
		if stdinW != nil {
			stdinW.Close()
		}
		code := 128
		msg := err.Error()
		switch {
		case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
			code = 127
		case strings.Contains(msg, "permission denied"):
			code = 126
		}
		c.Meta.State.ExitCode = code
		c.Meta.State.Error = msg
		_ = c.SaveLocked()
		if ue := (*runtime.UserError)(nil); errors.As(err, &ue) {
			return ue // dockerd 20.10's words, a 500: no task was made
		}
		return api.InvalidParameterError(fmt.Errorf("failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: %s: unknown", startErrText(msg)))
	}
	c.rc = rc
	c.Endpoint = run.Endpoint
	c.release = release
	c.out = out
	c.stdin = stdinW
	c.Meta.State = State{Running: true, Pid: rc.Pid(), StartedAt: time.Now().UTC()}
	c.Meta.HasBeenStarted = true
	_ = c.SaveLocked()
	c.notifyLocked()
	s.EventLocked(c, events.ActionStart, nil)
	go s.monitor(c, rc, out, stdinR, stdinW)
	return nil
}

// startErrText trims the runtime's wrapping to what runc reports.
func startErrText(msg string) string {
	if i := strings.Index(msg, "exec: "); i >= 0 {
		return msg[i:]
	}
	return msg
}

// monitor waits for the run's exit and records it.
func (s *Store) monitor(c *Container, rc *runtime.Container, out *output, stdinR *io.PipeReader, stdinW *io.PipeWriter) {
	exit, err := rc.Wait(context.Background())
	if err != nil {
		exit = runtime.Exit{ExitCode: 255}
	}
	if stdinW != nil {
		stdinR.Close()
		stdinW.Close()
	}
	out.close()
	c.mu.Lock()
	release := c.release
	c.release = nil
	c.mu.Unlock()
	if release != nil {
		release()
	}
	c.mu.Lock()
	c.rc = nil
	c.stdin = nil
	c.out = nil
	c.Endpoint = nil
	c.Meta.State.Running = false
	c.Meta.State.Pid = 0
	c.Meta.State.ExitCode = exit.ExitCode
	c.Meta.State.OOMKilled = exit.OOMKilled
	c.Meta.State.FinishedAt = time.Now().UTC()
	for _, x := range c.execs {
		x.containerExited()
	}
	_ = c.SaveLocked()
	if exit.OOMKilled {
		s.EventLocked(c, events.ActionOOM, nil)
	}
	s.EventLocked(c, events.ActionDie, map[string]string{"exitCode": strconv.Itoa(exit.ExitCode)})
	c.exitSeq++
	c.notifyLocked()
	auto := c.HostConfig.AutoRemove
	c.mu.Unlock()
	if auto {
		if err := s.Remove(context.Background(), c, false, true); err != nil {
			s.hooks.Log.Warn("auto-remove container", "id", c.Meta.ID, "err", err)
		}
	}
}

// Wait answers when c meets cond (dockerd's /wait): on the returned
// channel, which an unbuffered send makes the handoff point.
func (s *Store) Wait(ctx context.Context, c *Container, cond container.WaitCondition) <-chan container.WaitResponse {
	c.mu.Lock()
	seq := c.exitSeq
	c.mu.Unlock()
	ch := make(chan container.WaitResponse)
	c.waiting.Add(1)
	go func() {
		defer c.waiting.Done()
		defer close(ch)
		for {
			c.mu.Lock()
			done := false
			switch cond {
			case container.WaitConditionNextExit:
				done = c.exitSeq != seq || c.removed
			case container.WaitConditionRemoved:
				done = c.removed
			default:
				done = !c.Meta.State.Running || c.removed
			}
			code := c.Meta.State.ExitCode
			changed := c.changed
			c.mu.Unlock()
			if done {
				select {
				case ch <- container.WaitResponse{StatusCode: int64(code)}:
				case <-ctx.Done():
				}
				return
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// ParseSignal accepts "SIGTERM", "TERM", "15".
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("Invalid signal: %s", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("Invalid signal: %s", s)
}

// waitExit waits until c has exited after sequence seq, at most d (d < 0:
// no limit). It reports whether it did.
func waitExit(ctx context.Context, c *Container, seq int, d time.Duration) bool {
	var timer <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	for {
		c.mu.Lock()
		done := c.exitSeq != seq || !c.Meta.State.Running
		ch := c.changed
		c.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-ch:
		case <-timer:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Stop sends c its stop signal (signal, else its config's, else
// SIGTERM), then SIGKILL after timeout seconds (else its config's, else
// 10; negative: never), and answers once it has exited.
func (s *Store) Stop(ctx context.Context, c *Container, signal string, timeout *int) error {
	c.mu.Lock()
	if !c.Meta.State.Running || c.rc == nil {
		c.mu.Unlock()
		return NotModifiedError{}
	}
	rc, seq := c.rc, c.exitSeq
	if signal == "" {
		signal = c.Meta.Config.StopSignal
	}
	t := defaultStopTimeout
	if c.Meta.Config.StopTimeout != nil {
		t = *c.Meta.Config.StopTimeout
	}
	if timeout != nil {
		t = *timeout
	}
	c.mu.Unlock()
	sig := syscall.SIGTERM
	if signal != "" {
		p, err := ParseSignal(signal)
		if err != nil {
			return api.InvalidParameterError(err)
		}
		sig = p
	}
	s.event(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	_ = rc.Signal(sig)
	d := time.Duration(t) * time.Second
	if t < 0 {
		d = -1
	}
	if !waitExit(ctx, c, seq, d) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.event(c, events.ActionKill, map[string]string{"signal": "9"})
		_ = rc.Kill()
		if !waitExit(ctx, c, seq, -1) {
			return ctx.Err()
		}
	}
	s.event(c, events.ActionStop, nil)
	return nil
}

// Kill sends c signal (default SIGKILL); ref is how the client named it.
func (s *Store) Kill(ctx context.Context, c *Container, ref, signal string) error {
	sig := syscall.SIGKILL
	if signal != "" {
		p, err := ParseSignal(signal)
		if err != nil {
			return api.InvalidParameterError(err)
		}
		sig = p
	}
	c.mu.Lock()
	if !c.Meta.State.Running || c.rc == nil {
		c.mu.Unlock()
		return api.ConflictError(fmt.Errorf("Cannot kill container: %s: %w", ref, NotRunningError(c.Meta.ID)))
	}
	rc, seq := c.rc, c.exitSeq
	s.EventLocked(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	c.mu.Unlock()
	if sig == syscall.SIGKILL {
		_ = rc.Kill()
		// Like dockerd, answer once the container is gone.
		waitExit(ctx, c, seq, 20*time.Second)
		return nil
	}
	return rc.Signal(sig)
}

// Remove deletes c: its files, its anonymous volumes when volumes is set,
// and its place in the store. A running c is refused unless force, which
// kills it first.
func (s *Store) Remove(ctx context.Context, c *Container, force, volumes bool) error {
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return nil
	}
	if c.Meta.State.Removing {
		c.mu.Unlock()
		return api.ConflictError(fmt.Errorf("removal of container %s is already in progress", c.Meta.ID))
	}
	if c.Meta.State.Running {
		if !force {
			c.mu.Unlock()
			return api.ConflictError(fmt.Errorf("You cannot remove a running container %s. Stop the container before attempting removal or force remove", c.Meta.ID))
		}
		rc, seq := c.rc, c.exitSeq
		c.Meta.State.Removing = true
		s.EventLocked(c, events.ActionKill, map[string]string{"signal": "9"})
		c.mu.Unlock()
		_ = rc.Kill()
		if !waitExit(ctx, c, seq, 30*time.Second) {
			c.mu.Lock()
			c.Meta.State.Removing = false
			c.mu.Unlock()
			return fmt.Errorf("could not kill running container %s, cannot remove", c.Meta.ID)
		}
		c.mu.Lock()
	}
	c.Meta.State.Removing = true
	c.notifyLocked()
	mounts := c.Meta.Mounts
	c.mu.Unlock()

	mountinfo.UnmountUnder(c.Dir)
	if err := os.RemoveAll(c.Dir); err != nil {
		c.mu.Lock()
		c.Meta.State.Removing = false
		c.Meta.State.Dead = true
		_ = c.SaveLocked()
		c.mu.Unlock()
		return fmt.Errorf("unable to remove filesystem for %s: %w", c.Meta.ID, err)
	}
	if volumes {
		for _, m := range mounts {
			if m.Type == "volume" && m.Anonymous {
				_ = os.RemoveAll(filepath.Dir(m.Source))
			}
		}
	}
	s.delete(c)
	c.mu.Lock()
	c.removed = true
	c.Meta.State.Removing = false
	s.EventLocked(c, events.ActionDestroy, nil)
	c.notifyLocked()
	c.mu.Unlock()
	// A client attached to a container that never ran again has nothing
	// more to wait for.
	c.hub.endAll()
	return nil
}

// KillAll kills every running container (SIGKILL) and waits for each to
// exit: a sandbox being destroyed takes its containers along. State stays
// on disk.
func (s *Store) KillAll(ctx context.Context) {
	for _, c := range s.All() {
		c.mu.Lock()
		rc, seq := c.rc, c.exitSeq
		c.mu.Unlock()
		if rc == nil {
			continue
		}
		_ = rc.Kill()
		waitExit(ctx, c, seq, 30*time.Second)
	}
}
