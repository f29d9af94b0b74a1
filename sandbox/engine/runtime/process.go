package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Process is a process running in a container: the init process or one
// started by Container.Exec.
type Process struct {
	lp   *libcontainer.Process
	pid  int
	init bool

	console    *os.File // pty master when Tty
	consoleSrv *os.File // our end of the console socket until the master arrives
	stdinW     *os.File
	closeStdin sync.Once
	afterStart []*os.File // child ends of pipes, closed once the child has them
	copiers    sync.WaitGroup
	startCopy  []func()

	containerDone <-chan struct{} // for exec'd processes: the container's Done
	done          chan struct{}
	exit          Exit
	err           error
	waitOnce      sync.Once
}

// processSpec is what Spec and ExecSpec have in common.
type processSpec struct {
	Args, Env           []string
	Cwd                 string
	user                execUser
	Tty                 bool
	TtyWidth, TtyHeight uint16
	Stdin               io.Reader
	Stdout, Stderr      io.Writer
}

// newProcess prepares a libcontainer process and its stdio plumbing. Every
// stream goes through a pipe we own, so libcontainer never runs copy
// goroutines of its own that could block its Wait.
func newProcess(s processSpec, init bool) (_ *Process, err error) {
	p := &Process{init: init, done: make(chan struct{})}
	lp := &libcontainer.Process{
		Args:             s.Args,
		Env:              s.Env,
		Cwd:              s.Cwd,
		UID:              s.user.uid,
		GID:              s.user.gid,
		AdditionalGroups: s.user.groups,
		Init:             init,
		// No Rlimits: like dockerd's containers, processes inherit the
		// daemon's limits (raising them needs CAP_SYS_RESOURCE).
	}
	p.lp = lp
	defer func() {
		if err != nil {
			p.closeFiles()
		}
	}()
	if s.Tty {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		p.consoleSrv = os.NewFile(uintptr(fds[0]), "console-parent")
		child := os.NewFile(uintptr(fds[1]), "console-child")
		p.afterStart = append(p.afterStart, child)
		lp.ConsoleSocket = child
		lp.ConsoleWidth, lp.ConsoleHeight = s.TtyWidth, s.TtyHeight
		if s.Stdin != nil {
			in := s.Stdin
			p.startCopy = append(p.startCopy, func() {
				_, _ = io.Copy(p.console, in)
			})
		}
		out := s.Stdout
		if out == nil {
			out = io.Discard
		}
		p.copiers.Add(1)
		p.startCopy = append(p.startCopy, func() {
			defer p.copiers.Done()
			_, _ = io.Copy(out, ttyReader{p.console}) // ends with EIO once every slave is closed
		})
		return p, nil
	}
	if s.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		p.afterStart = append(p.afterStart, r)
		p.stdinW = w
		lp.Stdin = r
		in := s.Stdin
		p.startCopy = append(p.startCopy, func() {
			_, _ = io.Copy(w, in)
			p.closeStdinPipe()
		})
	}
	for _, o := range []struct {
		w   io.Writer
		set func(*os.File)
	}{
		{s.Stdout, func(f *os.File) { lp.Stdout = f }},
		{s.Stderr, func(f *os.File) { lp.Stderr = f }},
	} {
		if o.w == nil {
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		p.afterStart = append(p.afterStart, w)
		o.set(w)
		dst := o.w
		p.copiers.Add(1)
		p.startCopy = append(p.startCopy, func() {
			defer p.copiers.Done()
			_, _ = io.Copy(dst, r)
			r.Close()
		})
	}
	return p, nil
}

// start runs the process in lc (as its init when p.init) and starts the
// stdio copies and the waiter.
func (p *Process) start(lc *libcontainer.Container, hold bool) error {
	var err error
	if hold {
		err = lc.Start(p.lp) // Container.Release executes it
	} else {
		err = lc.Run(p.lp)
	}
	for _, f := range p.afterStart {
		f.Close()
	}
	p.afterStart = nil
	if err != nil {
		p.closeFiles()
		return err
	}
	if p.consoleSrv != nil {
		master, err := recvFile(p.consoleSrv)
		p.consoleSrv.Close()
		p.consoleSrv = nil
		if err != nil {
			_ = p.lp.Signal(unix.SIGKILL)
			_, _ = p.lp.Wait()
			return fmt.Errorf("receive console: %w", err)
		}
		p.console = master
	}
	if pid, err := p.lp.Pid(); err == nil {
		p.pid = pid
	}
	for _, f := range p.startCopy {
		go f()
	}
	p.startCopy = nil
	go p.waitLoop()
	return nil
}

// waitLoop reaps the process, then waits for its output to be drained: for
// the init process the caller (Container.monitor) does the drain after the
// container is destroyed; an exec'd process's output ends when the process
// and whatever inherited its stdio exit, or with the container.
func (p *Process) waitLoop() {
	ps, err := p.lp.Wait()
	var st Exit
	if ps != nil {
		err = nil
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			switch {
			case ws.Signaled():
				st.Signal = ws.Signal()
				st.ExitCode = signalExitCode(ws.Signal())
			default:
				st.ExitCode = ws.ExitStatus()
			}
		} else {
			st.ExitCode = ps.ExitCode()
		}
	}
	p.closeStdinPipe()
	if !p.init {
		drained := make(chan struct{})
		go func() { p.copiers.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-p.containerDone:
			<-drained // the container's processes are gone: the pipes close
		}
		p.closeConsole()
	}
	p.exit, p.err = st, err
	close(p.done)
}

// drain waits for the output copies (init process, after the container's
// processes are gone) and closes the terminal.
func (p *Process) drain() {
	p.copiers.Wait()
	p.closeConsole()
}

func (p *Process) closeConsole() {
	if p.console != nil {
		p.console.Close()
	}
}

func (p *Process) closeStdinPipe() {
	p.closeStdin.Do(func() {
		if p.stdinW != nil {
			p.stdinW.Close()
		}
	})
}

func (p *Process) closeFiles() {
	for _, f := range p.afterStart {
		f.Close()
	}
	p.afterStart = nil
	if p.consoleSrv != nil {
		p.consoleSrv.Close()
	}
	p.closeStdinPipe()
}

// Pid returns the host pid of the process.
func (p *Process) Pid() int { return p.pid }

// Done is closed when the process has exited and its output is drained.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until the process has exited and its output has been copied,
// or ctx ends.
func (p *Process) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-p.done:
		return p.exit, p.err
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return ErrNotRunning
	default:
	}
	if err := p.lp.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return ErrNotRunning
		}
		return err
	}
	return nil
}

// Resize sets the size of the process's terminal.
func (p *Process) Resize(width, height uint16) error {
	if p.console == nil {
		return errors.New("resize: process has no terminal")
	}
	ws := &unix.Winsize{Col: width, Row: height}
	if err := unix.IoctlSetWinsize(int(p.console.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	return nil
}

// ttyReader turns the EIO a pty master returns once the last slave is
// closed into EOF.
type ttyReader struct{ f *os.File }

func (t ttyReader) Read(b []byte) (int, error) {
	n, err := t.f.Read(b)
	if err != nil && errors.Is(err, syscall.EIO) {
		err = io.EOF
	}
	return n, err
}

// recvFile receives one file descriptor sent with SCM_RIGHTS (the pty
// master libcontainer sends over the console socket).
func recvFile(sock *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	var (
		n, oobn int
		err     error
	)
	for {
		n, oobn, _, _, err = unix.Recvmsg(int(sock.Fd()), name, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, os.NewSyscallError("recvmsg", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, f...)
		}
	}
	if len(fds) == 0 {
		return nil, errors.New("no file descriptor received")
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
