package nsbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/labd/labd/sandbox"
)

// Options configures a Provider.
type Options struct {
	// Exe is the binary re-executed as namespace init; it must call Reexec
	// at start. Default /proc/self/exe.
	Exe string
	// Nsenter is the nsenter binary used by Exec; default looked up in PATH.
	Nsenter string
}

// Provider creates namespace sandboxes. It implements sandbox.Provider.
type Provider struct {
	opts Options
}

// New returns a Provider.
func New(opts Options) *Provider {
	if opts.Exe == "" {
		opts.Exe = "/proc/self/exe"
	}
	return &Provider{opts: opts}
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// baseEnv is the environment of both the shell and Exec'd commands.
func baseEnv(s sandbox.Spec) []string {
	env := []string{
		"HOME=" + s.Workspace,
		"PATH=" + defaultPath,
		"LANG=C.UTF-8",
		"USER=root",
		"LOGNAME=root",
		"HOSTNAME=" + s.Hostname,
	}
	return append(env, s.Env...)
}

// Create starts the sandbox's namespace init and login shell. It returns
// once the shell has been started (not when its prompt is shown).
func (p *Provider) Create(ctx context.Context, s sandbox.Spec) (sandbox.Sandbox, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(s.Workspace) {
		return nil, fmt.Errorf("workspace %q is not absolute", s.Workspace)
	}
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pty: %w", err)
	}
	defer tty.Close() // the init has its own copy once started
	if err := pty.Setsize(ptmx, &pty.Winsize{Cols: 80, Rows: 24}); err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("size pty: %w", err)
	}
	if ptmx, err = pollable(ptmx); err != nil {
		tty.Close()
		return nil, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("create pipe: %w", err)
	}
	defer readyR.Close()

	env := append(baseEnv(s),
		"TERM=xterm-256color",
		"SHELL=/bin/bash",
		// Debian's /etc/bash.bashrc sets the same; having it in the
		// environment keeps the prompt predictable without that file.
		`PS1=\u@\h:\w\$ `,
		// Prompt markers for the page's Run buttons.
		sandbox.PromptCommandEnv,
	)
	args := []string{InitCommand, "-hostname", s.Hostname, "-dir", s.Workspace}
	for _, k := range s.Keep {
		args = append(args, "-keep", k)
	}
	cmd := exec.Command(p.opts.Exe, args...)
	cmd.Env = env
	cmd.Dir = s.Workspace
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.ExtraFiles = []*os.File{readyW} // fd 3 = readyFD
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET,
		// Out of labd's session: the init takes no terminal itself; it
		// gives the pty to the shell as controlling terminal.
		Setsid: true,
	}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("start namespace init (root needed): %w", err)
	}
	b := &Box{
		id:        s.ID,
		hostname:  s.Hostname,
		workspace: s.Workspace,
		env:       baseEnv(s),
		nsenter:   p.opts.Nsenter,
		cmd:       cmd,
		ptmx:      ptmx,
		done:      make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		close(b.done)
	}()

	// Wait for the init's verdict: EOF alone means the shell started.
	msg := make(chan []byte, 1)
	go func() {
		data, _ := io.ReadAll(readyR)
		msg <- data
	}()
	select {
	case data := <-msg:
		if len(data) > 0 {
			_ = b.Destroy(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("start sandbox %s: %s", s.ID, data)
		}
	case <-ctx.Done():
		_ = b.Destroy(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("start sandbox %s: %w", s.ID, ctx.Err())
	}
	return b, nil
}

// Box is one namespace sandbox. It implements sandbox.Sandbox.
type Box struct {
	id, hostname, workspace string
	env                     []string
	nsenter                 string
	cmd                     *exec.Cmd
	ptmx                    *os.File
	done                    chan struct{}
	destroyOnce             sync.Once
	destroyErr              error
}

func (b *Box) ID() string            { return b.id }
func (b *Box) Hostname() string      { return b.hostname }
func (b *Box) Workspace() string     { return b.workspace }
func (b *Box) Done() <-chan struct{} { return b.done }
func (b *Box) Terminal() sandbox.PTY { return terminal{b.ptmx} }

// InitPID is the host pid of the sandbox's namespace init, whose
// /proc/<pid>/ns/* name the sandbox's namespaces.
func (b *Box) InitPID() int { return b.cmd.Process.Pid }

type terminal struct{ *os.File }

// Resize sets the window size through SyscallConn, not f.Fd(): Fd would put
// the master back in blocking mode (see pollable).
func (t terminal) Resize(cols, rows uint16) error {
	rc, err := t.File.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	}); err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("resize pty: %w", ierr)
	}
	return nil
}

// pollable returns a non-blocking, poller-backed copy of the pty master and
// closes the original. creack/pty's ioctls call f.Fd(), which leaves the fd
// in blocking mode, and a blocking read or write is not interrupted by
// Close: the terminal hub's goroutines would outlive a destroyed sandbox.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("dup pty: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty nonblock: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// Destroy kills the namespace init, which takes every process of the pid
// namespace with it (and so the other namespaces), then closes the pty.
func (b *Box) Destroy(ctx context.Context) error {
	b.destroyOnce.Do(func() {
		// Killing pid 1 of a pid namespace makes the kernel SIGKILL the
		// rest of it.
		if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			b.destroyErr = fmt.Errorf("kill sandbox %s: %w", b.id, err)
		}
		select {
		case <-b.done:
		case <-ctx.Done():
			// Still closes the pty; the wait goroutine reaps later.
			b.destroyErr = errors.Join(b.destroyErr, fmt.Errorf("wait for sandbox %s: %w", b.id, ctx.Err()))
		}
		if err := b.ptmx.Close(); err != nil {
			b.destroyErr = errors.Join(b.destroyErr, fmt.Errorf("close pty of %s: %w", b.id, err))
		}
	})
	return b.destroyErr
}

// execWaitDelay bounds how long Exec waits for output pipes held open by
// background processes after the command exits or is killed.
const execWaitDelay = 2 * time.Second

// Exec runs e.Cmd in the sandbox's namespaces.
//
// It uses util-linux nsenter rather than re-executing labd with setns:
// joining a mount namespace needs a single-threaded process, which a Go
// binary only is before the runtime starts, i.e. from a cgo constructor.
// nsenter is a small, audited C program present wherever util-linux is.
// With --pid it forks, so the command is a member of the sandbox's pid
// namespace and dies with it.
func (b *Box) Exec(ctx context.Context, e sandbox.ExecSpec) (int, error) {
	if len(e.Cmd) == 0 {
		return -1, errors.New("exec: empty command")
	}
	select {
	case <-b.done:
		return -1, fmt.Errorf("exec in sandbox %s: sandbox has ended", b.id)
	default:
	}
	nsenter := b.nsenter
	if nsenter == "" {
		var err error
		if nsenter, err = exec.LookPath("nsenter"); err != nil {
			return -1, fmt.Errorf("exec in sandbox %s: nsenter (util-linux) is needed: %w", b.id, err)
		}
	}
	dir := b.workspace
	if e.Dir != "" {
		dir = e.Dir
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(b.workspace, dir)
		}
	}
	args := []string{
		"--target", fmt.Sprint(b.InitPID()),
		"--mount", "--uts", "--ipc", "--net", "--pid",
		"--wd=" + dir,
		"--",
	}
	cmd := exec.CommandContext(ctx, nsenter, append(args, e.Cmd...)...)
	cmd.Env = append(append([]string{}, b.env...), e.Env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.Stdin, e.Stdout, e.Stderr
	// A process group so cancelling kills nsenter's child too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = execWaitDelay
	err := cmd.Run()
	if ctx.Err() != nil {
		return -1, fmt.Errorf("exec in sandbox %s: %w", b.id, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, fmt.Errorf("exec in sandbox %s: %w", b.id, err)
	}
	return 0, nil
}
