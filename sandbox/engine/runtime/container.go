package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Exit describes how a container's init process (or an exec'd process)
// ended.
type Exit struct {
	// ExitCode is the exit status, or 128+N when signal N killed the
	// process (137 for SIGKILL, 143 for SIGTERM), as Docker reports it.
	ExitCode int
	// Signal is the signal that killed the process, 0 if it exited.
	Signal syscall.Signal
	// OOMKilled is set when the kernel's OOM killer killed a process of the
	// container (only for the init process's Exit).
	OOMKilled bool
}

// Container is a started container. Its methods are safe for concurrent
// use.
type Container struct {
	r              *Runtime
	id             string
	group          *Group // nil: directly under the runtime's parent
	bundle, rootfs string
	lc             *libcontainer.Container
	init           *Process
	mounts         []Mount // as mounted: bind sources pinned

	done     chan struct{} // closed after the exit and the cleanup
	exit     Exit
	exitErr  error
	killOnce sync.Once
}

// ID returns the container's ID.
func (c *Container) ID() string { return c.id }

// Pid returns the host pid of the init process.
func (c *Container) Pid() int { return c.init.pid }

// Release executes the init process of a container started with
// Spec.Hold; it is an error for any other container, or twice.
func (c *Container) Release() error {
	if err := c.lc.Exec(); err != nil {
		return fmt.Errorf("release container %s: %w", c.id, err)
	}
	return nil
}

// Done is closed once the init process has exited and everything but the
// upper and work directories has been released.
func (c *Container) Done() <-chan struct{} { return c.done }

// Wait blocks until the init process has exited and the container has been
// cleaned up (see Done), or ctx ends (then it returns ctx's error and the
// container keeps running).
func (c *Container) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-c.done:
		return c.exit, c.exitErr
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// Signal sends sig to the init process. As PID 1 of its namespace, the
// process ignores signals it has no handler for, except SIGKILL (the reason
// for Docker's stop timeout).
func (c *Container) Signal(sig syscall.Signal) error {
	select {
	case <-c.done:
		return fmt.Errorf("signal container %s: %w", c.id, ErrNotRunning)
	default:
	}
	if err := c.init.Signal(sig); err != nil {
		return fmt.Errorf("signal container %s: %w", c.id, err)
	}
	return nil
}

// Kill sends SIGKILL to the init process, which ends every process of the
// container.
func (c *Container) Kill() error { return c.Signal(unix.SIGKILL) }

// Resize sets the terminal size of the init process (Spec.Tty).
func (c *Container) Resize(width, height uint16) error { return c.init.Resize(width, height) }

// ErrNotRunning is returned when the container or process has exited.
var ErrNotRunning = errors.New("not running")

// monitor waits for the init process, records the exit and releases the
// container: the OOM check needs the cgroups, the output is complete only
// once every process of the container is gone (Destroy), and the overlay
// can be unmounted only then.
func (c *Container) monitor() {
	<-c.init.done
	st, err := c.init.exit, c.init.err
	if err == nil {
		if s, serr := c.lc.State(); serr == nil {
			st.OOMKilled = oomKilled(s.CgroupPaths)
		}
	}
	if derr := c.lc.Destroy(); derr != nil {
		c.r.log.Warn("runtime: destroy container", "id", c.id, "err", derr)
	}
	c.init.drain()
	c.releaseRootfs()
	c.exit, c.exitErr = st, err
	c.r.mu.Lock()
	delete(c.r.running, c.id)
	c.r.mu.Unlock()
	if c.group != nil {
		c.group.leave()
	}
	close(c.done)
}

// MountSource is where the runtime mounted s.Mounts[i] from: for a bind
// with Beneath, the tree it pinned at start.
func (c *Container) MountSource(i int) string {
	if i >= 0 && i < len(c.mounts) {
		return c.mounts[i].Source
	}
	return ""
}

func (c *Container) releaseRootfs() {
	if err := removeBundle(c.bundle); err != nil {
		c.r.log.Warn("runtime: remove bundle", "id", c.id, "err", err)
	}
}

// ExecSpec describes a process to run in a running container (docker exec).
type ExecSpec struct {
	Args []string
	Env  []string // the container's environment is not inherited: pass it
	Cwd  string   // default "/"; must exist
	User string   // as Spec.User; resolved in the container's files

	Tty                 bool
	TtyWidth, TtyHeight uint16
	Stdin               io.Reader
	Stdout, Stderr      io.Writer
}

// Exec starts a process in the container's namespaces and cgroup, with the
// container's capabilities and restrictions.
func (c *Container) Exec(e ExecSpec) (*Process, error) {
	select {
	case <-c.done:
		return nil, fmt.Errorf("exec in container %s: %w", c.id, ErrNotRunning)
	default:
	}
	if len(e.Args) == 0 {
		return nil, fmt.Errorf("exec in container %s: no command", c.id)
	}
	if e.Cwd == "" {
		e.Cwd = "/"
	}
	u, err := lookupUser(c.rootfs, e.User)
	if err != nil {
		return nil, err
	}
	p, err := newProcess(processSpec{
		Args: e.Args, Env: e.Env, Cwd: e.Cwd, user: u,
		Tty: e.Tty, TtyWidth: e.TtyWidth, TtyHeight: e.TtyHeight,
		Stdin: e.Stdin, Stdout: e.Stdout, Stderr: e.Stderr,
	}, false)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", c.id, err)
	}
	p.containerDone = c.done
	if err := p.start(c.lc, false); err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", c.id, err)
	}
	return p, nil
}

// Processes returns the host pids of every process in the container.
func (c *Container) Processes() ([]int, error) {
	select {
	case <-c.done:
		return nil, fmt.Errorf("container %s: %w", c.id, ErrNotRunning)
	default:
	}
	return c.lc.Processes()
}
