package enginebox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/runtime"
)

// The grader's script checks run in check containers: a fresh container
// of the sandbox image as labd has it (the base view's layers, an upper
// directory of its own), so nothing the learner changed in their shell's
// root filesystem (/usr/bin/docker, bash, /etc/ld.so.preload) runs in a
// check. It shares only what a check looks at with the learner's shell:
// the workspace on /root (read-only), the bridge's network namespace (the
// learner's published ports and listening programs), the hostname and the
// environment labd gives the shell. Its /var/run/docker.sock is a socket
// of its own to the same engine, served like the grader's (no call on it
// is recorded as the learner's) only while the check runs: a connection a
// check handed out (a script that runs the learner's code, which could
// pass it to the learner's shell over an abstract socket of the shared
// netns) ends with the check. Its own processes, /tmp and HOME go with it.
const (
	// checkHome is HOME in a check container: a fresh tmpfs rather than
	// the workspace, so dotfiles the learner wrote (~/.curlrc, Python's
	// ~/.local, ~/.docker) do not change what the check's programs do.
	checkHome = "/tmp"
	// checkCurlHome is CURL_HOME in a check container, a directory of its
	// root filesystem with an empty .curlrc: curl reads the .curlrc of the
	// passwd entry's home (/root, the learner's) when CURL_HOME,
	// XDG_CONFIG_HOME and HOME have none, and stops at the first it finds.
	// A new top-level directory, so the upper layer changes no directory
	// of the image (a directory in the upper layer sets its mode).
	checkCurlHome = "/.labd-check"
	// checkTmpSize bounds the check's /tmp (the tmpfs counts against its
	// memory limit too).
	checkTmpSize = "64m"
	// Resource limits of one check container: a check reads files and asks
	// the engine; these stop a runaway one (a fork loop, a memory hog)
	// from hurting the learner's sandbox or labd.
	checkMemory   = 512 << 20
	checkPids     = 512
	checkCPUQuota = 100000 // µs per 100 ms period: one CPU
)

// checkSeq numbers check containers for their IDs, unique in labd's
// process: a check still being cleaned up after its sandbox was destroyed
// never shares an ID (or a directory) with one of a new sandbox of the
// same name.
var checkSeq atomic.Uint64

// checkConfig is what a sandbox's check containers share with its shell.
type checkConfig struct {
	sandboxID, hostname, workspace string
	env                            []string     // the shell's (what Exec passes)
	lowers                         []string     // the sandbox image's layers
	engine                         http.Handler // the engine's API, unrecorded
	netns                          string
	hosts, resolvConf              []byte
	userns                         *runtime.UserNS // the sandbox's, or nil
	group                          *runtime.Group  // the sandbox's cgroup, or nil
}

// checkRunner starts a sandbox's check containers and, when the sandbox
// goes, kills those still running and waits until they are gone.
type checkRunner struct {
	sh  *engine.Shared
	cfg checkConfig

	stop    context.Context // cancelled by close
	stopNow context.CancelFunc

	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup // check containers not yet removed
}

func newCheckRunner(sh *engine.Shared, cfg checkConfig) *checkRunner {
	ctx, cancel := context.WithCancel(context.Background())
	return &checkRunner{sh: sh, cfg: cfg, stop: ctx, stopNow: cancel}
}

// errSandboxEnded is returned for a check asked of a destroyed sandbox.
var errSandboxEnded = errors.New("sandbox has ended")

// run runs e.Cmd in a new check container and removes the container
// afterwards. Cancelling ctx (the check's timeout) kills every process
// of the check; run then returns -1 and an error wrapping ctx's, as Exec
// does.
func (r *checkRunner) run(ctx context.Context, e sandbox.ExecSpec) (int, error) {
	if len(e.Cmd) == 0 {
		return -1, errors.New("check: empty command")
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return -1, fmt.Errorf("check in sandbox %s: %w", r.cfg.sandboxID, errSandboxEnded)
	}
	r.running.Add(1)
	r.mu.Unlock()

	id := fmt.Sprintf("check-%s-%d", r.cfg.sandboxID, checkSeq.Add(1))
	dir := filepath.Join(r.sh.Dir(), checksDir, id)
	sock := filepath.Join(dir, "engine.sock")
	var srv *api.UnixServer
	release := func() {
		if srv != nil {
			// Its requests end with the check: nobody waits for them.
			cctx, cancel := context.WithCancel(context.Background())
			cancel()
			_ = srv.Close(cctx)
		}
		_ = os.RemoveAll(dir)
		r.running.Done()
	}
	if len(sock) > 107 {
		release()
		return -1, fmt.Errorf("check in sandbox %s: socket path %s is longer than 107 bytes: use a shorter --data", r.cfg.sandboxID, sock)
	}
	srv, err := api.ServeUnix(sock, r.cfg.engine)
	if err != nil {
		release()
		return -1, fmt.Errorf("check in sandbox %s: engine socket: %w", r.cfg.sandboxID, err)
	}
	if err := socketForUserNS(sock, r.cfg.userns); err != nil {
		release()
		return -1, fmt.Errorf("check in sandbox %s: engine socket: %w", r.cfg.sandboxID, err)
	}
	c, err := r.start(ctx, id, dir, sock, e)
	if err != nil {
		release()
		return -1, fmt.Errorf("check in sandbox %s: %w", r.cfg.sandboxID, err)
	}
	var why error
	select {
	case <-c.Done():
	case <-ctx.Done():
		why = ctx.Err()
	case <-r.stop.Done():
		why = errSandboxEnded
	}
	if why != nil {
		// The check's init is PID 1 of its namespace: killing it ends
		// every process the script started.
		_ = c.Kill()
	}
	wctx, cancel := context.WithTimeout(context.Background(), execKillWait)
	st, err := c.Wait(wctx)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) {
		// Still being released (unmounts, cgroups): finish that in the
		// background; close waits for it.
		go func() {
			<-c.Done()
			release()
		}()
		return -1, fmt.Errorf("check in sandbox %s: %w", r.cfg.sandboxID, errors.Join(why, errors.New("check container still ending")))
	}
	release()
	switch {
	case why != nil:
		return -1, fmt.Errorf("check in sandbox %s: %w", r.cfg.sandboxID, why)
	case err != nil:
		return -1, fmt.Errorf("check in sandbox %s: %w", r.cfg.sandboxID, err)
	}
	return st.ExitCode, nil
}

// start starts the check container id with its overlay directories in dir
// and sock as its engine socket.
func (r *checkRunner) start(ctx context.Context, id, dir, sock string, e sandbox.ExecSpec) (*runtime.Container, error) {
	if r.sh.Runtime == nil {
		return nil, errors.New("no container runtime")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("check dir: %w", err)
	}
	curl := filepath.Join(dir, "upper", checkCurlHome)
	if err := os.MkdirAll(curl, 0o755); err != nil {
		return nil, fmt.Errorf("check dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(curl, ".curlrc"), nil, 0o644); err != nil {
		return nil, fmt.Errorf("check dir: %w", err)
	}
	stdin := e.Stdin
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var mu sync.Mutex // one buffer for stdout and stderr is common
	env := mergeEnv(mergeEnv(r.cfg.env, e.Env), []string{
		"HOME=" + checkHome,
		"CURL_HOME=" + checkCurlHome,
		"DOCKER_HOST=unix://" + shellSocket,
	})
	return r.sh.Runtime.Start(ctx, runtime.Spec{
		ID:       id,
		Lowers:   r.cfg.lowers,
		Upper:    filepath.Join(dir, "upper"),
		Work:     filepath.Join(dir, "work"),
		Args:     e.Cmd,
		Env:      env,
		Cwd:      containerDir(r.cfg.workspace, e.Dir),
		Hostname: r.cfg.hostname,
		Stdin:    stdin, Stdout: lockedWriter(&mu, e.Stdout), Stderr: lockedWriter(&mu, e.Stderr),
		Memory:     checkMemory,
		PidsLimit:  checkPids,
		CPUQuota:   checkCPUQuota,
		NetNS:      r.cfg.netns,
		Hosts:      r.cfg.hosts,
		ResolvConf: r.cfg.resolvConf,
		UserNS:     r.cfg.userns,
		Group:      r.cfg.group,
		Mounts: []runtime.Mount{
			// Read-only: a check looks at the learner's work, it does not
			// change it (nor trigger the live grader's file watch). No
			// device node or set-uid file the learner made there works.
			{Source: r.cfg.workspace, Destination: shellHome, ReadOnly: true, Options: []string{"nosuid", "nodev"}, IDMap: r.cfg.userns != nil},
			{Source: sock, Destination: shellSocket},
			{Source: "tmpfs", Destination: "/tmp", Type: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=" + checkTmpSize}},
		},
	})
}

// close refuses new checks, kills the running ones and waits (until ctx
// ends) until they are removed.
func (r *checkRunner) close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.stopNow()
	done := make(chan struct{})
	go func() {
		r.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checksDir holds each check container's directory (its upper and work
// directories and its engine socket) under the engine's directory; swept
// when the first sandbox is created.
const checksDir = "checks"

// RunCheck runs one of the grader's script checks (labd's grader finds it
// on the sandbox). With the container shell it runs in a check container
// (above); the learner's shell, and whatever they changed in it, has no
// part in it. nsbox has no sandbox image to start one from: there the
// check runs in the shell's namespaces like Exec, with the grader's socket
// as DOCKER_HOST. That shell is root on the host's files, which is why
// nsbox is for trusted learners only (someone who can replace the host's
// docker binary is not fooling a check, they own the server).
func (s *engineSandbox) RunCheck(ctx context.Context, e sandbox.ExecSpec) (int, error) {
	if sh, ok := s.Sandbox.(*shellBox); ok {
		return sh.checks.run(ctx, e)
	}
	e.Env = append(append([]string{}, e.Env...), "DOCKER_HOST=unix://"+s.GraderSocket())
	return s.Sandbox.Exec(ctx, e)
}
