package enginebox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/engine/network"
	"github.com/labd/labd/sandbox/engine/runtime"
	"github.com/opencontainers/go-digest"
)

// shellHome is the workspace's path in the shell container.
const shellHome = "/root"

// shellSocket is where the engine socket appears in the shell container:
// the docker CLI's default, so no DOCKER_HOST is needed.
const shellSocket = "/var/run/docker.sock"

// ErrShellEnded is what the terminal's Read and Write return once the shell
// container has ended or the sandbox was destroyed.
var ErrShellEnded = errors.New("shell ended")

type shellConfig struct {
	spec      sandbox.Spec
	image     digest.Digest
	socket    string       // host path of the engine socket
	graderAPI http.Handler // the engine's unrecorded API (check containers)
	netns     string       // the bridge's netns, joined by the shell
	gateway   netip.Addr
	userns    *runtime.UserNS // the sandbox's; nil: host root is the shell's root
	group     *runtime.Group  // the sandbox's cgroup; nil: none
	// hold starts the shell's container without running its command: a
	// warm sandbox's, which shellBox.release runs with its learner's
	// environment (warm.go).
	hold bool
	dir  string // the shell's upper and work directories (shellDir)
}

// shellBox is a learner's shell running as a container of the shared
// runtime (not one of the engine's: `docker ps` does not list it). It
// implements sandbox.Sandbox.
type shellBox struct {
	id, hostname, workspace string
	sh                      *engine.Shared
	env                     []string // of the shell and of Exec
	dir                     string   // upper and work directories
	c                       *runtime.Container

	inR, outR *io.PipeReader
	inW, outW *io.PipeWriter
	done      chan struct{}

	destroyOnce sync.Once
	destroyErr  error

	checks *checkRunner // the grader's script checks (check.go); nil until released
	// checkCfg is what checks are made with once the shell runs.
	checkCfg checkConfig
}

// shellID is the runtime ID of a sandbox's shell container; Docker IDs are
// 64 hex digits, so it never names one of the engine's containers.
func shellID(sandboxID string) string { return "shell-" + sandboxID }

// startShell runs the sandbox image's command (a login bash) on a terminal
// in a container: hostname spec.Hostname, in the bridge's netns, the
// workspace on /root and the engine socket on /var/run/docker.sock. It
// returns once the process has started.
func startShell(ctx context.Context, sh *engine.Shared, cfg shellConfig) (*shellBox, error) {
	if !filepath.IsAbs(cfg.spec.Workspace) {
		return nil, fmt.Errorf("workspace %q is not absolute", cfg.spec.Workspace)
	}
	base, err := sh.Store.View(image.BaseView)
	if err != nil {
		return nil, err
	}
	info, err := base.Image(cfg.image)
	if err != nil {
		return nil, fmt.Errorf("sandbox image: %w", err)
	}
	lowers, err := sh.Store.Layers(cfg.image)
	if err != nil {
		return nil, fmt.Errorf("sandbox image layers: %w", err)
	}
	args := []string{"/bin/bash", "--login"}
	var imgEnv []string
	if c := info.Config.Config; c != nil {
		if a := append(append([]string{}, c.Entrypoint...), c.Cmd...); len(a) > 0 {
			args = a
		}
		imgEnv = c.Env
	}
	env := mergeEnv(append(append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"TERM=xterm-256color",
		"LANG=C.UTF-8",
	}, imgEnv...),
		"HOME="+shellHome,
		"USER=root",
		"LOGNAME=root",
		"SHELL=/bin/bash",
		"HOSTNAME="+cfg.spec.Hostname,
		"DOCKER_BUILDKIT=0",
	), cfg.spec.Env)

	dir := cfg.dir
	// Whatever a killed labd left: the shell's own changes do not outlive
	// it (only the workspace persists).
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clean shell dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("shell dir: %w", err)
	}
	b := &shellBox{
		id: cfg.spec.ID, hostname: cfg.spec.Hostname, workspace: cfg.spec.Workspace,
		env: env, dir: dir, done: make(chan struct{}), sh: sh,
	}
	hosts, resolv := network.HostsFile(cfg.spec.Hostname, cfg.gateway), network.ResolvConf()
	b.checkCfg = checkConfig{
		sandboxID: cfg.spec.ID, hostname: cfg.spec.Hostname, workspace: cfg.spec.Workspace,
		env: env, lowers: lowers, engine: cfg.graderAPI, netns: cfg.netns,
		hosts: hosts, resolvConf: resolv, userns: cfg.userns, group: cfg.group,
	}
	mounts := []runtime.Mount{
		// Idmapped under a user namespace: the workspace keeps container
		// ids on disk, so the Files panel and the grader see the
		// learner's files as root's, as the learner does.
		{Source: cfg.spec.Workspace, Destination: shellHome, IDMap: cfg.userns != nil},
		{Source: cfg.socket, Destination: shellSocket},
	}
	if cfg.hold {
		// The learner's environment is known only when the sandbox is
		// given out: the command reads it from a file labd writes then
		// (host root's, read-only, so the learner cannot change it).
		f := filepath.Join(dir, "env")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return nil, fmt.Errorf("shell env file: %w", err)
		}
		mounts = append(mounts, runtime.Mount{Source: f, Destination: shellEnvFile, ReadOnly: true})
		args = append([]string{"/bin/sh", "-c", `set -a; . ` + shellEnvFile + `; set +a; exec "$@"`, "sh"}, args...)
	} else {
		b.checks = newCheckRunner(sh, b.checkCfg)
	}
	b.inR, b.inW = io.Pipe()
	b.outR, b.outW = io.Pipe()
	shellEnv := append(append([]string{}, env...),
		// Debian's /etc/bash.bashrc sets the same; having it in the
		// environment keeps the prompt predictable without that file.
		`PS1=\u@\h:\w\$ `,
		// Prompt markers for the page's Run buttons.
		sandbox.PromptCommandEnv)
	b.c, err = sh.Runtime.Start(ctx, runtime.Spec{
		ID:       shellID(cfg.spec.ID),
		Lowers:   lowers,
		Upper:    filepath.Join(dir, "upper"),
		Work:     filepath.Join(dir, "work"),
		Args:     args,
		Env:      shellEnv,
		Cwd:      shellHome,
		Hostname: cfg.spec.Hostname,
		Tty:      true, TtyWidth: 80, TtyHeight: 24,
		Stdin: b.inR, Stdout: b.outW,
		NetNS:      cfg.netns,
		Hosts:      hosts,
		ResolvConf: resolv,
		Mounts:     mounts,
		UserNS:     cfg.userns,
		// The shell keeps labd's oom_score_adj (0): the learner's
		// containers (500) go first when the sandbox runs out of memory.
		Group: cfg.group,
		Hold:  cfg.hold,
	})
	if err != nil {
		b.closePipes(ErrShellEnded)
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start shell of sandbox %s: %w", cfg.spec.ID, err)
	}
	go b.monitor()
	return b, nil
}

// monitor waits for the shell container to end (its output drained into
// the terminal), then ends the terminal and removes the container's own
// files.
func (b *shellBox) monitor() {
	_, _ = b.c.Wait(context.Background())
	b.outW.Close() // the terminal reads EOF after the last output
	b.inR.CloseWithError(ErrShellEnded)
	_ = os.RemoveAll(b.dir)
	close(b.done)
}

func (b *shellBox) closePipes(err error) {
	b.inR.CloseWithError(err)
	b.inW.CloseWithError(err)
	b.outR.CloseWithError(err)
	b.outW.CloseWithError(err)
}

func (b *shellBox) ID() string            { return b.id }
func (b *shellBox) Hostname() string      { return b.hostname }
func (b *shellBox) Workspace() string     { return b.workspace }
func (b *shellBox) Done() <-chan struct{} { return b.done }
func (b *shellBox) Terminal() sandbox.PTY { return shellTerm{b} }

// Pid is the host pid of the shell container's init (the login shell).
func (b *shellBox) Pid() int { return b.c.Pid() }

// shellTerm is the terminal of the shell container: the runtime copies the
// console's output into outW and inR into the console. Destroy closes the
// pipes, so a blocked Read or Write returns (the hub's goroutines end).
type shellTerm struct{ b *shellBox }

func (t shellTerm) Read(p []byte) (int, error)  { return t.b.outR.Read(p) }
func (t shellTerm) Write(p []byte) (int, error) { return t.b.inW.Write(p) }
func (t shellTerm) Resize(cols, rows uint16) error {
	if err := t.b.c.Resize(cols, rows); err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	return nil
}

// Destroy kills the shell container (every process in it) and the
// grader's check containers, and waits for the runtime to release their
// mounts and cgroups.
func (b *shellBox) Destroy(ctx context.Context) error {
	b.destroyOnce.Do(func() {
		if err := b.c.Kill(); err != nil && !errors.Is(err, runtime.ErrNotRunning) {
			b.destroyErr = fmt.Errorf("kill shell of %s: %w", b.id, err)
		}
		if b.checks == nil {
			// Never released: no check ran.
		} else if err := b.checks.close(ctx); err != nil {
			b.destroyErr = errors.Join(b.destroyErr, fmt.Errorf("check containers of %s: %w", b.id, err))
		}
		// Unblock the terminal's readers and writers, and the runtime's
		// output copy if nobody reads.
		b.closePipes(ErrShellEnded)
		select {
		case <-b.done:
		case <-ctx.Done():
			b.destroyErr = errors.Join(b.destroyErr, fmt.Errorf("wait for shell of %s: %w", b.id, ctx.Err()))
		}
	})
	return b.destroyErr
}

// shellEnvFile is where a held shell reads its learner's environment.
const shellEnvFile = "/etc/labd/env"

// release runs the command of a shell started with hold, with env added
// to its environment, and makes its checks.
func (b *shellBox) release(env []string) error {
	var sb strings.Builder
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !validEnvName(k) {
			return fmt.Errorf("shell environment: invalid variable %q", kv)
		}
		sb.WriteString(k + "='" + strings.ReplaceAll(v, "'", `'\''`) + "'\n")
	}
	if err := os.WriteFile(filepath.Join(b.dir, "env"), []byte(sb.String()), 0o644); err != nil {
		return fmt.Errorf("shell env file: %w", err)
	}
	b.env = mergeEnv(b.env, env)
	b.checkCfg.env = b.env
	b.checks = newCheckRunner(b.sh, b.checkCfg)
	return b.c.Release()
}

// validEnvName: what the shell's `.` can assign.
func validEnvName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// execKillWait bounds how long Exec waits for a killed command's output.
const execKillWait = 2 * time.Second

// Exec runs e.Cmd in the shell container (its namespaces, cgroup,
// capabilities), in /root unless e.Dir says otherwise: a relative Dir is
// taken from /root, and a host path inside the workspace is translated.
func (b *shellBox) Exec(ctx context.Context, e sandbox.ExecSpec) (int, error) {
	if len(e.Cmd) == 0 {
		return -1, errors.New("exec: empty command")
	}
	select {
	case <-b.done:
		return -1, fmt.Errorf("exec in sandbox %s: sandbox has ended", b.id)
	default:
	}
	dir := containerDir(b.workspace, e.Dir)
	stdin := e.Stdin
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	// The runtime copies stdout and stderr in two goroutines: callers
	// commonly pass one buffer for both (as exec.Cmd allows), so writes
	// are serialized here.
	var mu sync.Mutex
	p, err := b.c.Exec(runtime.ExecSpec{
		Args: e.Cmd, Env: mergeEnv(b.env, e.Env), Cwd: dir,
		Stdin: stdin, Stdout: lockedWriter(&mu, e.Stdout), Stderr: lockedWriter(&mu, e.Stderr),
	})
	if err != nil {
		return -1, fmt.Errorf("exec in sandbox %s: %w", b.id, err)
	}
	st, err := p.Wait(ctx)
	if err != nil {
		_ = p.Signal(syscall.SIGKILL)
		wctx, cancel := context.WithTimeout(context.Background(), execKillWait)
		_, _ = p.Wait(wctx)
		cancel()
		return -1, fmt.Errorf("exec in sandbox %s: %w", b.id, err)
	}
	return st.ExitCode, nil
}

// containerDir is where a grader's command runs in a container whose /root
// is workspace: /root unless dir says otherwise; a relative dir is taken
// from /root, and a host path inside the workspace is translated.
func containerDir(workspace, dir string) string {
	switch {
	case dir == "":
		return shellHome
	case strings.HasPrefix(dir, workspace+"/") || dir == workspace:
		return path.Join(shellHome, strings.TrimPrefix(dir, workspace))
	case filepath.IsAbs(dir):
		return dir
	default:
		return path.Join(shellHome, dir)
	}
}

// lockedWriter serializes writes to w with mu (nil stays nil: the
// runtime's /dev/null).
func lockedWriter(mu *sync.Mutex, w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	return &syncWriter{mu: mu, w: w}
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// mergeEnv appends extra to env, a later KEY replacing an earlier one in
// place.
func mergeEnv(env, extra []string) []string {
	out := make([]string, 0, len(env)+len(extra))
	idx := map[string]int{}
	for _, kv := range append(append([]string{}, env...), extra...) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}
