package enginetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	"golang.org/x/sys/unix"
)

// Paths of the clients and the reference daemon.
var (
	DockerCLI20 = "/usr/bin/docker"
	DockerCLI28 = "/usr/local/bin/docker"
	Dockerd     = "/usr/sbin/dockerd"
)

// Engine is one running engine: labd's or the reference dockerd.
type Engine struct {
	Name   string // "labd" or "dockerd"
	Socket string
	// CgroupParent is where labd puts this engine's containers: a parent
	// of its own, so that what it holds can be counted while other test
	// binaries run containers at the same time.
	CgroupParent string
	// RuntimeRoot holds labd's container bundles (their mounts).
	RuntimeRoot string
	cmd         *exec.Cmd
	done        chan struct{}
	args        []string
	logf        string
}

// Host is the DOCKER_HOST value for the engine.
func (e *Engine) Host() string { return "unix://" + e.Socket }

// Result is one CLI invocation.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Docker runs the docker CLI cli (DockerCLI20 or DockerCLI28) against the
// engine, with stdin and the working directory dir ("" = current).
func (e *Engine) Docker(ctx context.Context, cli, dir string, stdin []byte, args ...string) Result {
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Dir = dir
	home := filepath.Join(os.TempDir(), "labd-enginetest-home")
	_ = os.MkdirAll(home, 0o700)
	cmd.Env = []string{
		"DOCKER_HOST=" + e.Host(), "DOCKER_BUILDKIT=0", "HOME=" + home,
		"DOCKER_CONFIG=" + filepath.Join(home, ".docker"), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"DOCKER_CLI_HINTS=false",
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		errb.WriteString(err.Error())
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// Must runs the CLI and fails the test on a non-zero exit.
func (e *Engine) Must(t testing.TB, cli, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := e.Docker(ctx, cli, dir, nil, args...)
	if r.Code != 0 {
		t.Fatalf("%s: docker %s: exit %d\nstdout:\n%s\nstderr:\n%s", e.Name, strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

var (
	buildOnce sync.Once
	labdBin   string
	buildErr  error
)

// LabdBinary builds ./cmd/labd once per test binary and returns its path.
func LabdBinary() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "labd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		labdBin = filepath.Join(dir, "labd")
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-tags", "seccomp", "-o", labdBin, "./cmd/labd")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/labd: %v\n%s", err, out)
		}
	})
	return labdBin, buildErr
}

// RemoveBinary deletes the labd binary LabdBinary built.
func RemoveBinary() {
	if labdBin != "" {
		_ = os.RemoveAll(filepath.Dir(labdBin))
	}
}

func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("no caller")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found")
		}
		dir = parent
	}
}

var cgroupParents atomic.Int64

// NewCgroupParent names a cgroup parent no other engine uses: this test
// binary's pid and a counter.
func NewCgroupParent() string {
	return fmt.Sprintf("labd-test-%d-%d", os.Getpid(), cgroupParents.Add(1))
}

// StartLabd starts `labd engine` with its state in dataDir and its
// containers under a cgroup parent of its own; the busybox base image is
// bootstrapped first.
func StartLabd(dataDir, socket string, extra ...string) (*Engine, error) {
	bin, err := LabdBinary()
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin, "images", "bootstrap", "busybox", "--data", dataDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bootstrap busybox: %v\n%s", err, out)
	}
	parent := NewCgroupParent()
	// As in labd serve, containers run in a user namespace: what the
	// differential tests compare with dockerd is what learners get.
	args := append([]string{"engine", "--socket", socket, "--data", dataDir, "--cgroup-parent", parent, "--userns"}, extra...)
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	e := &Engine{Name: "labd", Socket: socket, CgroupParent: parent, RuntimeRoot: engine.RuntimeRoot(abs, true),
		args: args, logf: filepath.Join(filepath.Dir(socket), "labd.log")}
	return e, e.start(bin)
}

// CgroupDirs lists the container cgroups under parent in every hierarchy
// (v1, hybrid and v2 layouts): one entry per container and controller.
func CgroupDirs(parent string) []string {
	var out []string
	for _, root := range cgroupRoots(parent) {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, filepath.Join(root, e.Name()))
			}
		}
	}
	return out
}

func cgroupRoots(parent string) []string {
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	if st, err := os.Stat(filepath.Join("/sys/fs/cgroup", parent)); err == nil && st.IsDir() {
		roots = append(roots, filepath.Join("/sys/fs/cgroup", parent))
	}
	return roots
}

// RemoveCgroupParent removes parent's (empty) directories once its
// engine has stopped.
func RemoveCgroupParent(parent string) {
	for _, root := range cgroupRoots(parent) {
		_ = os.Remove(root)
	}
}

func (e *Engine) start(bin string) error {
	logf, err := os.OpenFile(e.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, e.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	e.cmd = cmd
	e.done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(e.done) }()
	return waitSocket(e.Socket, e.done, 60*time.Second)
}

// Restart starts the engine again after Kill or Stop.
func (e *Engine) Restart() error {
	bin, err := LabdBinary()
	if err != nil {
		return err
	}
	return e.start(bin)
}

// Kill sends SIGKILL and waits for the process to end.
func (e *Engine) Kill() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	<-e.done
}

// Stop sends SIGTERM and waits (SIGKILL after 30 s).
func (e *Engine) Stop() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		e.Kill()
	}
	if e.CgroupParent != "" {
		RemoveCgroupParent(e.CgroupParent)
	}
}

// Exited reports whether the engine's process has ended.
func (e *Engine) Exited() bool {
	if e.done == nil {
		return false
	}
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// Log returns what the engine wrote to its log.
func (e *Engine) Log() string {
	b, _ := os.ReadFile(e.logf)
	return string(b)
}

// StartDockerd starts the reference dockerd with everything under dir.
func StartDockerd(dir string) (*Engine, error) {
	if _, err := os.Stat(Dockerd); err != nil {
		return nil, fmt.Errorf("reference dockerd: %w (apt-get install docker.io)", err)
	}
	sock := filepath.Join(dir, "ref.sock")
	e := &Engine{Name: "dockerd", Socket: sock, logf: filepath.Join(dir, "dockerd.log"), args: []string{
		"--host", "unix://" + sock,
		"--data-root", filepath.Join(dir, "ref-root"),
		"--exec-root", filepath.Join(dir, "ref-exec"),
		"--pidfile", filepath.Join(dir, "ref.pid"),
		"--bridge", "none", "--iptables=false", "--ip-masq=false", "--ip6tables=false",
	}}
	if err := e.start(Dockerd); err != nil {
		return nil, fmt.Errorf("start dockerd: %w\n%s", err, e.Log())
	}
	return e, nil
}

func waitSocket(sock string, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return errors.New("engine exited during start")
		default:
		}
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("socket %s did not come up in %s", sock, timeout)
}

// Pair is labd and the reference dockerd, sharing one busybox base.
type Pair struct {
	Dir     string
	Labd    *Engine
	Dockerd *Engine // nil with LABD_NO_DOCKERD=1
}

// NoDockerd reports whether the reference engine is switched off.
func NoDockerd() bool { return os.Getenv("LABD_NO_DOCKERD") == "1" }

// StartPair starts both engines under a fresh directory and loads labd's
// busybox into dockerd.
func StartPair() (*Pair, error) {
	dir, err := os.MkdirTemp("", "labd-enginetest-")
	if err != nil {
		return nil, err
	}
	p := &Pair{Dir: dir}
	// The tests' registries are served on these addresses, allowed here.
	allowed, err := AllowedRegistryArgs()
	if err != nil {
		p.Close()
		return nil, err
	}
	p.Labd, err = StartLabd(filepath.Join(dir, "labd-data"), filepath.Join(dir, "labd.sock"), allowed...)
	if err != nil {
		p.Close()
		return nil, err
	}
	if NoDockerd() {
		return p, nil
	}
	p.Dockerd, err = StartDockerd(dir)
	if err != nil {
		p.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tarPath := filepath.Join(dir, "busybox.tar")
	if r := p.Labd.Docker(ctx, DockerCLI20, "", nil, "save", "-o", tarPath, "busybox:latest"); r.Code != 0 {
		p.Close()
		return nil, fmt.Errorf("save busybox from labd: %s", r.Stderr)
	}
	if r := p.Dockerd.Docker(ctx, DockerCLI20, "", nil, "load", "-i", tarPath); r.Code != 0 {
		p.Close()
		return nil, fmt.Errorf("load busybox into dockerd: %s", r.Stderr)
	}
	return p, nil
}

// Close stops both engines and removes their state.
func (p *Pair) Close() {
	if p.Labd != nil {
		p.Labd.Stop()
	}
	if p.Dockerd != nil {
		p.Dockerd.Stop()
	}
	// dockerd unmounts on SIGTERM; anything left is detached before removal.
	mountinfo.UnmountUnder(p.Dir)
	_ = os.RemoveAll(p.Dir)
	if p.Labd != nil && p.Labd.RuntimeRoot != "" {
		dir := filepath.Dir(p.Labd.RuntimeRoot)
		mountinfo.UnmountUnder(dir)
		_ = os.RemoveAll(dir)
	}
}

// RefBridgeCIDR is the netns dockerd's docker0: outside labd's pool
// 172.30.0.0/16, and only ever inside the namespace the harness made.
const RefBridgeCIDR = "172.31.254.1/24"

// StartDockerdInNetNS starts a reference dockerd that can publish ports:
// it runs inside a network namespace created here (lo up), with docker0,
// its iptables rules and docker-proxy all confined to that namespace, so
// the host's network is never touched. nsPath is the namespace's bind
// mount (/run/netns/NAME); dial published ports from inside it (DialInNetNS).
// The caller stops the engine and then calls RemoveNetNS(nsPath).
func StartDockerdInNetNS(dir string) (*Engine, string, error) {
	if _, err := os.Stat(Dockerd); err != nil {
		return nil, "", fmt.Errorf("reference dockerd: %w (apt-get install docker.io)", err)
	}
	name := fmt.Sprintf("labd-ref-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	nsPath := filepath.Join("/run/netns", name)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = RemoveNetNS(nsPath)
		return nil, "", fmt.Errorf("lo up in %s: %v: %s", name, err, out)
	}
	sock := filepath.Join(dir, "ref-net.sock")
	e := &Engine{Name: "dockerd", Socket: sock, logf: filepath.Join(dir, "dockerd-netns.log"), args: []string{
		// nsenter --net, not ip netns exec: the latter remounts /sys in
		// a private mount namespace, which hides the cgroup mounts
		// dockerd needs ("Devices cgroup isn't mounted"). dockerd only
		// reaches links through netlink and /proc/sys/net, both of which
		// follow the network namespace.
		"--net=" + nsPath, "--", Dockerd,
		"--host", "unix://" + sock,
		"--data-root", filepath.Join(dir, "refnet-root"),
		"--exec-root", filepath.Join(dir, "refnet-exec"),
		"--pidfile", filepath.Join(dir, "refnet.pid"),
		"--iptables=true", "--ip6tables=false", "--ip-masq=false", "--userland-proxy=true",
		"--bip", RefBridgeCIDR,
	}}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		_ = RemoveNetNS(nsPath)
		return nil, "", err
	}
	if err := e.start(nsenter); err != nil {
		e.Stop()
		_ = RemoveNetNS(nsPath)
		return nil, "", fmt.Errorf("start dockerd in netns %s: %w\n%s", name, err, e.Log())
	}
	return e, nsPath, nil
}

// RemoveNetNS kills whatever still runs in the namespace (dockerd's
// leftovers: containerd, shims, docker-proxy) and deletes it.
func RemoveNetNS(nsPath string) error {
	name := filepath.Base(nsPath)
	for i := 0; i < 50; i++ {
		out, _ := exec.Command("ip", "netns", "pids", name).Output()
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			var pid int
			if _, err := fmt.Sscan(p, &pid); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, out)
	}
	return nil
}

// DialInNetNS opens a TCP connection from inside the network namespace at
// nsPath: the socket is created on an OS thread switched into it (a socket
// keeps the namespace it was born in), and the thread is switched back.
func DialInNetNS(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, err}
			return
		}
		defer orig.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, fmt.Errorf("setns %s: %w", nsPath, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		// A thread that cannot go back stays locked: Go ends it with
		// this goroutine rather than reuse it in the wrong namespace.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
