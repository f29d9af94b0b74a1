package ctr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/runtime"
	"github.com/moby/term"
)

// Exec is one `docker exec` of a container.
type Exec struct {
	id   string
	c    *Container
	opts container.ExecOptions

	mu       sync.Mutex
	started  bool
	running  bool
	exitCode *int
	pid      int
	proc     *runtime.Process
	size     *TtySize
}

func (x *Exec) isRunning() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.running
}

// containerExited marks an exec that never finished (its container died).
func (x *Exec) containerExited() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.running && x.exitCode == nil {
		code := 137
		x.exitCode = &code
	}
	x.running = false
}

type noSuchExec string

func (e noSuchExec) Error() string { return "No such exec instance: " + string(e) }
func (noSuchExec) NotFound()       {}

func (s *Store) getExec(id string) (*Exec, error) {
	s.execMu.Lock()
	defer s.execMu.Unlock()
	if x, ok := s.execs[id]; ok {
		return x, nil
	}
	return nil, noSuchExec(id)
}

func execCommand(opts *container.ExecOptions) string {
	return strings.Join(opts.Cmd, " ")
}

// ExecCreate makes an exec of opts in c, which must be running.
func (s *Store) ExecCreate(c *Container, opts *container.ExecOptions) (string, error) {
	if opts.Privileged {
		return "", api.ForbiddenError(errors.New("privileged exec is not allowed"))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.Meta.State.Running || c.rc == nil {
		return "", NotRunningError(c.Meta.ID)
	}
	x := &Exec{id: NewID(), c: c, opts: *opts}
	if opts.ConsoleSize != nil && opts.ConsoleSize[0] > 0 {
		x.size = &TtySize{H: uint16(opts.ConsoleSize[0]), W: uint16(opts.ConsoleSize[1])}
	}
	c.execs[x.id] = x
	s.execMu.Lock()
	s.execs[x.id] = x
	s.execMu.Unlock()
	s.EventLocked(c, events.Action("exec_create: "+execCommand(opts)), map[string]string{"execID": x.id})
	return x.id, nil
}

// ExecStart runs exec id as cfg asks (attached or detached); acquire
// counts it against the engine's limit on execs running at once.
func (s *Store) ExecStart(ctx context.Context, id string, cfg api.ExecStartConfig, acquire func() (release func(), err error)) error {
	x, err := s.getExec(id)
	if err != nil {
		return err
	}
	x.mu.Lock()
	if x.started {
		x.mu.Unlock()
		return api.ConflictError(fmt.Errorf("Error: Exec command %s has already run", id))
	}
	// Refused before it counts as started: the same exec may be started
	// once another has ended.
	release, err := acquire()
	if err != nil {
		x.mu.Unlock()
		return err
	}
	x.started = true
	x.running = true
	if cfg.ConsoleSize != nil && cfg.ConsoleSize[0] > 0 {
		x.size = &TtySize{H: uint16(cfg.ConsoleSize[0]), W: uint16(cfg.ConsoleSize[1])}
	}
	x.mu.Unlock()
	c := x.c
	c.mu.Lock()
	rc := c.rc
	env := ProcessEnv(append(append([]string{}, c.Meta.Config.Env...), x.opts.Env...), c.Meta.Config.Hostname, x.opts.Tty)
	cwd := x.opts.WorkingDir
	if cwd == "" {
		cwd = c.Meta.Config.WorkingDir
	}
	user := x.opts.User
	if user == "" {
		user = c.Meta.Config.User
	}
	c.mu.Unlock()
	fail := func(err error) error {
		release()
		code := 126
		x.mu.Lock()
		x.running = false
		x.exitCode = &code
		x.mu.Unlock()
		return err
	}
	if rc == nil {
		return fail(NotRunningError(c.Meta.ID))
	}

	spec := runtime.ExecSpec{Args: x.opts.Cmd, Env: env, Cwd: cwd, User: user, Tty: x.opts.Tty}
	if x.size != nil {
		spec.TtyHeight, spec.TtyWidth = x.size.H, x.size.W
	}
	var st *api.Streams
	detached := make(chan struct{})
	if !cfg.Detach && cfg.Hijack != nil {
		st, err = cfg.Hijack(x.opts.Tty)
		if err != nil {
			return fail(err)
		}
		defer st.Close()
		if x.opts.AttachStdout {
			spec.Stdout = st.Stdout
		}
		if x.opts.AttachStderr {
			spec.Stderr = st.Stderr
		}
		if x.opts.AttachStdin && st.Stdin != nil {
			var in io.Reader = st.Stdin
			if x.opts.Tty {
				keys := []byte{16, 17}
				if x.opts.DetachKeys != "" {
					if k, err := term.ToBytes(x.opts.DetachKeys); err == nil {
						keys = k
					}
				}
				in = term.NewEscapeProxy(st.Stdin, keys)
			}
			pr, pw := io.Pipe()
			go func() {
				_, err := io.Copy(pw, in)
				var esc term.EscapeError
				if errors.As(err, &esc) {
					close(detached)
				}
				pw.Close()
			}()
			spec.Stdin = pr
			defer pr.Close()
		}
	}
	p, err := rc.Exec(spec)
	if err != nil {
		err = fail(fmt.Errorf("OCI runtime exec failed: exec failed: unable to start container process: %s: unknown", startErrText(err.Error())))
		if st != nil {
			// The status line is gone: the error travels in the stream,
			// as dockerd writes it.
			if st.Stdout != nil {
				_, _ = io.WriteString(st.Stdout, err.Error()+"\r\n")
			}
			return nil
		}
		return err
	}
	x.mu.Lock()
	x.proc = p
	x.pid = p.Pid()
	if x.size != nil && x.opts.Tty {
		_ = p.Resize(x.size.W, x.size.H)
	}
	x.mu.Unlock()
	s.event(c, events.Action("exec_start: "+execCommand(&x.opts)), map[string]string{"execID": x.id})

	wait := func() {
		defer release()
		exit, err := p.Wait(context.Background())
		code := exit.ExitCode
		if err != nil {
			code = 137
		}
		x.mu.Lock()
		x.running = false
		x.exitCode = &code
		x.mu.Unlock()
		s.event(c, events.Action("exec_die"), map[string]string{"execID": x.id, "exitCode": strconv.Itoa(code)})
	}
	if cfg.Detach || st == nil {
		go wait()
		return nil
	}
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
	case <-detached:
	}
	return nil
}

// ExecResize sets exec id's terminal size.
func (s *Store) ExecResize(id string, height, width uint16) error {
	x, err := s.getExec(id)
	if err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.size = &TtySize{H: height, W: width}
	if x.proc != nil && x.running && x.opts.Tty {
		_ = x.proc.Resize(width, height)
	}
	return nil
}

// ExecInspect is exec id's state (docker exec's inspect).
func (s *Store) ExecInspect(id string) (*container.ExecInspect, error) {
	x, err := s.getExec(id)
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	r := &container.ExecInspect{ExecID: x.id, ContainerID: x.c.Meta.ID, Running: x.running, Pid: x.pid}
	if x.exitCode != nil {
		r.ExitCode = *x.exitCode
	}
	return r, nil
}
