package nsbox

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitCommand is the hidden subcommand under which the provider re-executes
// its binary as a sandbox's namespace init.
const InitCommand = "__nsinit"

// readyFD is the pipe on which Init reports setup errors to Create; EOF
// without data means the shell has been started.
const readyFD = 3

// Reexec runs the namespace init and exits if this process was started as
// one (os.Args[1] == InitCommand); otherwise it returns at once. Call it
// first thing in main or TestMain of binaries that create sandboxes.
func Reexec() {
	if len(os.Args) > 1 && os.Args[1] == InitCommand {
		os.Exit(Init(os.Args[2:]))
	}
}

// Init is the body of the namespace init (PID 1 of a new sandbox). args
// are the flags after InitCommand. It expects the pty slave on fds 0-2 and
// the readiness pipe on fd 3, and returns the shell's exit status (128+n
// when killed by signal n), after killing whatever the shell left behind.
func Init(args []string) int {
	fs := flag.NewFlagSet(InitCommand, flag.ContinueOnError)
	hostname := fs.String("hostname", "", "hostname of the sandbox")
	dir := fs.String("dir", "", "working directory of the shell")
	var keep []string
	fs.Func("keep", "host path to keep visible at the same path (repeatable)", func(p string) error {
		keep = append(keep, p)
		return nil
	})
	// The shell must not inherit the pipe, or Create never sees EOF.
	syscall.CloseOnExec(readyFD)
	ready := os.NewFile(readyFD, "ready")
	fail := func(err error) int {
		// Create reads this; stderr is the learner's terminal.
		fmt.Fprintf(ready, "nsinit: %v", err)
		ready.Close()
		return 1
	}
	if err := fs.Parse(args); err != nil {
		return fail(err)
	}
	if os.Getpid() != 1 {
		return fail(errors.New("not pid 1 of a new pid namespace"))
	}
	if err := setup(*hostname, *dir, keep); err != nil {
		return fail(err)
	}

	// Subscribe before starting the shell so no SIGCHLD is missed.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)

	argv := shell()
	env := os.Environ()
	if argv[0] == "/bin/sh" {
		// sh does not expand bash's \u, \h escapes.
		env = append(env, "PS1=root@"+*hostname+":# ")
	}
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Dir:   *dir,
		Env:   env,
		Files: []uintptr{0, 1, 2},
		// The shell gets its own session with the pty as controlling
		// terminal, as after a login, so job control and ^C work.
		Sys: &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0},
	})
	if err != nil {
		return fail(fmt.Errorf("start %s in %s: %w", argv[0], *dir, err))
	}
	ready.Close()
	// Our copies of the pty slave would keep it open after the shell
	// exits; the shell has its own.
	if null, err := unix.Open("/dev/null", unix.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			_ = unix.Dup2(null, fd)
		}
		unix.Close(null)
	}

	status := -1
	for status < 0 {
		switch sig := <-sigs; sig {
		case unix.SIGCHLD:
			status = reap(pid)
		case unix.SIGURG, unix.SIGPIPE, unix.SIGWINCH:
			// SIGURG is the Go runtime's preemption signal.
		default:
			_ = unix.Kill(pid, sig.(syscall.Signal))
		}
	}
	// Leave nothing behind: kill(-1) from pid 1 reaches every other
	// process of the namespace.
	_ = unix.Kill(-1, unix.SIGKILL)
	for {
		if _, err := unix.Wait4(-1, nil, 0, nil); errors.Is(err, unix.ECHILD) {
			break
		}
	}
	return status
}

// reap collects every exited child and returns the shell's status once it
// is among them, -1 until then.
func reap(shell int) int {
	status := -1
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return status
		}
		if pid == shell {
			switch {
			case ws.Exited():
				status = ws.ExitStatus()
			case ws.Signaled():
				status = 128 + int(ws.Signal())
			}
		}
	}
}

func shell() []string {
	if _, err := os.Stat("/bin/bash"); err == nil {
		return []string{"/bin/bash", "--login"}
	}
	return []string{"/bin/sh", "-l"}
}

func setup(hostname, dir string, keep []string) error {
	// Keep our mounts out of the host's mount namespace (and the host's
	// later mounts out of ours).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	// sysfs shows the network namespace of whoever mounts it: a fresh one
	// makes /sys/class/net list our lo only.
	if err := unix.Mount("sysfs", "/sys", "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	// A private /tmp: learners' scratch files neither leak to the host nor
	// survive the sandbox.
	if err := mountTmp(append([]string{dir}, keep...)); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		return fmt.Errorf("set hostname: %w", err)
	}
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo with an ioctl, needing no iproute2.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// mountTmp mounts a private tmpfs on /tmp. The workspace and the kept
// paths, where they lie under /tmp (a data directory there, or a test's
// temporary directory), would be hidden by it, so each is bound back to the
// same path inside the tmpfs.
func mountTmp(paths []string) error {
	type held struct {
		path string
		fd   int
		dir  bool
	}
	var binds []held
	defer func() {
		for _, h := range binds {
			unix.Close(h.fd)
		}
	}()
	for _, p := range paths {
		rel, err := filepath.Rel("/tmp", p)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		// Held open before the tmpfs hides it; O_PATH also opens sockets.
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		binds = append(binds, held{path: p, fd: fd})
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		binds[len(binds)-1].dir = st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=25%"); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	for _, h := range binds {
		// A bind needs a mount point of the same kind: a directory for a
		// directory, a file for anything else.
		if h.dir {
			if err := os.MkdirAll(h.path, 0o700); err != nil {
				return fmt.Errorf("recreate %s in /tmp: %w", h.path, err)
			}
		} else {
			if err := os.MkdirAll(filepath.Dir(h.path), 0o700); err != nil {
				return fmt.Errorf("recreate %s in /tmp: %w", filepath.Dir(h.path), err)
			}
			f, err := os.OpenFile(h.path, os.O_CREATE|os.O_RDONLY, 0o600)
			if err != nil {
				return fmt.Errorf("recreate %s in /tmp: %w", h.path, err)
			}
			f.Close()
		}
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", h.fd), h.path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s into /tmp: %w", h.path, err)
		}
	}
	return nil
}
