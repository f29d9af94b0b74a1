package enginebox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/engine/network"
	"github.com/labd/labd/sandbox/engine/runtime"
	"github.com/opencontainers/go-digest"
)

// SocketName is the engine socket's file name in a sandbox's directory
// (next to its workspace).
const SocketName = "docker.sock"

// GraderSocketName is the file name, beside SocketName, of the same
// engine's socket for labd's grader: calls on it are never recorded as the
// learner's (api.Options.Unrecorded). The learner's shell never has it:
// only the workspace and SocketName are mounted there, and bind mounts
// reach only the workspace.
const GraderSocketName = "grader.sock"

// Provider gives every sandbox an engine of its own: a view of the shared
// store named after the sandbox (its own images, tags and build cache over
// shared blobs), served on a unix socket beside the sandbox's workspace,
// with a bridge network whose published ports listen in the sandbox's
// network namespace (so `curl localhost:5001` in the shell reaches the
// learner's container, and two learners' ports never collide).
//
// The learner's shell is a container of the shared runtime when the base
// view has image.SandboxTag (`labd images bootstrap sandbox`): the
// workspace is its /root, the engine socket its /var/run/docker.sock, and
// it joins the bridge's network namespace. Otherwise Inner (nsbox) runs the
// shell with DOCKER_HOST pointing at the socket, and the bridge is put in
// the shell's network namespace.
type Provider struct {
	Inner  sandbox.Provider // fallback shell; nil refuses sandboxes without the image
	Shared *engine.Shared
	API    api.Options
	// Limits bound each sandbox: its cgroup (memory, pids, CPU weight)
	// and its engine (builds, execs, published ports); zero fields are the
	// defaults (limits.go).
	Limits Limits
	Logger *slog.Logger

	once     sync.Once
	sweepErr error
	warnOnce sync.Once

	// disks are the sandboxes' disks, and ended ones' mounted for their
	// kept workspaces (quota.go, kept.go).
	disks     disks
	closeOnce sync.Once // closeDisks given to Shared.OnClose
}

// Sweep removes what the sandboxes of a killed labd left (their
// networks' and user namespaces' pins, shells' and checks' files, their
// disks' mounts under sandboxesDir, DATA/sandboxes), once per Provider;
// the first Create does it too. labd serve calls it at start: left for
// the first learner, the pins kept the dead sandboxes' namespaces (and
// the bridges and veths in them) for as long as nobody came back.
func (p *Provider) Sweep(sandboxesDir string) error {
	p.once.Do(func() {
		if p.Shared.Runtime != nil {
			// No sandbox outlives labd: shells' and check containers'
			// files and networks of a killed one go (the runtime swept
			// their mounts and cgroups).
			p.sweepErr = errors.Join(p.Shared.SweepSandboxNetworks(), engine.SweepDir(filepath.Join(p.Shared.Dir(), "shells")),
				engine.SweepDir(filepath.Join(p.Shared.Dir(), checksDir)), p.Shared.SweepUserNS())
			sweepDisks(sandboxesDir)
		}
	})
	if p.sweepErr != nil {
		return fmt.Errorf("clean sandbox networks: %w", p.sweepErr)
	}
	return nil
}

// create makes sandbox spec; with hold, its shell waits to be released
// (a warm sandbox, warm.go).
func (p *Provider) create(ctx context.Context, spec sandbox.Spec, hold bool) (_ *engineSandbox, err error) {
	if err := p.Sweep(filepath.Dir(filepath.Dir(spec.Workspace))); err != nil {
		return nil, err
	}
	releaseDisk, err := p.mountDisk(ctx, spec) // quota.go
	if err != nil {
		return nil, err
	}
	eng, err := p.Shared.EngineOnDisk(spec.ID, p.diskOf(spec.ID))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("engine of sandbox %s: %w", spec.ID, err), releaseDisk())
	}
	sock := filepath.Join(filepath.Dir(spec.Workspace), SocketName)
	graderSock := filepath.Join(filepath.Dir(spec.Workspace), GraderSocketName)
	// The kernel limits a socket path to 107 bytes; say so rather than
	// failing with EINVAL.
	for _, s := range []string{sock, graderSock} {
		if len(s) > 107 {
			return nil, fmt.Errorf("engine socket path %s is longer than 107 bytes: use a shorter --data", s)
		}
	}
	sb := &engineSandbox{id: spec.ID, eng: eng, releaseDisk: releaseDisk}
	defer func() {
		if err != nil {
			_ = sb.Destroy(context.WithoutCancel(ctx))
		}
	}()
	eng.SetLimits(p.Limits.engineLimits())
	if p.Shared.Runtime != nil {
		// One cgroup for the whole sandbox: its shell, its learner's
		// containers and build steps, its checks.
		l, capped := p.Limits.sandboxLimits(spec.Resources)
		if len(capped) > 0 {
			p.log().Warn("sandbox: the lab asks for more than this server's maximum; capped", "sandbox", spec.ID, "capped", strings.Join(capped, ", "))
		}
		if sb.group, err = p.Shared.Runtime.NewGroup(ctx, spec.ID, l); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", spec.ID, err)
		}
		eng.SetGroup(sb.group)
	}

	shellImg, hasImage := p.sandboxImage()
	useShell := hasImage && p.Shared.Runtime != nil
	var userns *runtime.UserNS // the sandbox's (eng.SetUserNS); nil: none
	if !useShell {
		if p.Inner == nil {
			return nil, fmt.Errorf("sandbox %s: no %s image (make it with `labd images bootstrap sandbox`), and the simple shell is only for trusted learners: %w", spec.ID, image.SandboxTag, sandbox.ErrShellNotReady)
		}
		p.warnOnce.Do(func() {
			p.log().Warn("the learner's shell runs beside labd (nsbox), not in a container: `labd images bootstrap sandbox` makes the container shell", "image", image.SandboxTag)
		})
	}

	if useShell {
		// Container root (the shell's, the learner's containers', build
		// steps') is an unprivileged host uid range of this sandbox's own.
		usernsPath, bridgeNS := "", ""
		if p.Shared.UserNSEnabled() {
			u, netPath, release, err := p.Shared.NewUserNSWithNet(ctx, spec.ID, true)
			if err != nil {
				return nil, err
			}
			eng.SetUserNS(u)
			userns = u
			sb.releaseUserNS, usernsPath, bridgeNS = release, u.Path, netPath
		}
		// The bridge gets a netns of its own (owned by the user namespace
		// when there is one): the shell container joins it.
		n, release, err := p.Shared.NewNetwork(spec.ID, bridgeNS, usernsPath, false)
		if err != nil {
			return nil, err
		}
		sb.net, sb.release = n, release
		eng.SetNetwork(n)
		eng.SetAllowBind(workspaceBinds(spec.Workspace, shellHome))
	} else {
		eng.SetAllowBind(workspaceBinds(spec.Workspace, spec.Workspace))
	}
	if sb.srv, err = api.ServeUnix(sock, api.New(eng, p.API)); err != nil {
		return nil, fmt.Errorf("engine socket of sandbox %s: %w", spec.ID, err)
	}
	if err := socketForUserNS(sock, userns); err != nil {
		return nil, fmt.Errorf("engine socket of sandbox %s: %w", spec.ID, err)
	}
	graderOpts := p.API
	graderOpts.Unrecorded = true
	graderAPI := api.New(eng, graderOpts)
	if sb.graderSrv, err = api.ServeUnix(graderSock, graderAPI); err != nil {
		return nil, fmt.Errorf("grader's engine socket of sandbox %s: %w", spec.ID, err)
	}

	if useShell {
		sh, err := startShell(ctx, p.Shared, shellConfig{
			spec: spec, image: shellImg, socket: sock, graderAPI: graderAPI,
			netns: sb.net.NetNSPath(), gateway: sb.net.Gateway(), userns: userns,
			group: sb.group, hold: hold, dir: p.shellDir(spec.ID),
		})
		if err != nil {
			return nil, err
		}
		sb.Sandbox = sh
		return sb, nil
	}

	spec.Env = append(append([]string{}, spec.Env...),
		"DOCKER_HOST=unix://"+sock,
		"DOCKER_BUILDKIT=0",
	)
	// The grader's socket too: nsbox's script checks run in the shell's
	// namespaces (the learner there is trusted, see RunCheck).
	spec.Keep = append(append([]string{}, spec.Keep...), sock, graderSock)
	inner, err := p.Inner.Create(ctx, spec)
	if err != nil {
		return nil, err
	}
	sb.Sandbox = inner
	// Published ports listen where the shell is: the bridge goes into the
	// shell's own network namespace (the network keeps it open).
	if ip, ok := sb.Sandbox.(interface{ InitPID() int }); ok && p.Shared.Runtime != nil {
		n, release, err := p.Shared.NewNetwork(spec.ID, fmt.Sprintf("/proc/%d/ns/net", ip.InitPID()), "", false)
		if err != nil {
			return nil, err
		}
		sb.net, sb.release = n, release
		eng.SetNetwork(n)
	}
	return sb, nil
}

func (p *Provider) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return p.Shared.Logger()
}

// sandboxImage finds the shell image in the base view: a learner's own
// tag of the same name (in their view) must not choose their next shell.
func (p *Provider) sandboxImage() (digest.Digest, bool) {
	base, err := p.Shared.Store.View(image.BaseView)
	if err != nil {
		return "", false
	}
	id, err := base.Resolve(image.SandboxTag)
	return id, err == nil
}

// workspaceBinds is a sandbox engine's bind-mount policy: only paths under
// home (the workspace as the learner's shell sees it: /root in the shell
// container, the workspace itself for nsbox) are allowed, as paths inside
// the workspace on the host. They are resolved inside the workspace when
// used, so a link to /etc in it, or one swapped in after `docker create`,
// cannot reach the host's /etc.
func workspaceBinds(workspace, home string) engine.BindPolicy {
	return func(p string) (string, string, error) {
		p = filepath.Clean(p)
		rel, err := filepath.Rel(home, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", "", fmt.Errorf("only paths under %s (your home directory) can be bind-mounted (-v, --mount type=bind)", home)
		}
		return workspace, rel, nil
	}
}

// engineSandbox is a sandbox with its engine: socket, network and
// containers go with it.
type engineSandbox struct {
	sandbox.Sandbox // the shell; nil until started
	id              string
	eng             *engine.Engine
	srv             *api.UnixServer
	graderSrv       *api.UnixServer // GraderSocketName
	net             *network.Network
	release         func() error
	releaseUserNS   func() error   // nil without a user namespace
	group           *runtime.Group // the sandbox's cgroup; nil without a runtime
	releaseDisk     func() error   // unmounts the sandbox's disk (quota.go)

	destroyOnce sync.Once
	destroyErr  error
}

// engineGrace bounds how long a destroyed sandbox's engine waits for
// requests in flight (a build's RUN step is cancelled when its client goes).
const engineGrace = 5 * time.Second

// groupGrace bounds how long Destroy waits for the sandbox's cgroup to be
// empty; it is removed when its last container ends in any case.
const groupGrace = 30 * time.Second

func (s *engineSandbox) Destroy(ctx context.Context) error {
	s.destroyOnce.Do(func() {
		var errs []error
		if s.Sandbox != nil {
			errs = append(errs, s.Sandbox.Destroy(ctx))
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), engineGrace)
		defer cancel()
		for _, srv := range []*api.UnixServer{s.srv, s.graderSrv} {
			if srv != nil {
				errs = append(errs, srv.Close(cctx))
			}
		}
		// The learner's containers die with the sandbox; their state stays
		// in the view (reported exited next time).
		errs = append(errs, s.eng.Close(cctx))
		if s.net != nil {
			errs = append(errs, s.net.Close(cctx), s.release())
		}
		// Last: the network's namespaces belong to it.
		if s.releaseUserNS != nil {
			errs = append(errs, s.releaseUserNS())
		}
		// Once its containers are gone (a build step still ending goes
		// with its cancelled build): nothing of the sandbox is left.
		if s.group != nil {
			gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupGrace)
			errs = append(errs, s.group.Remove(gctx))
			cancel()
		}
		if s.releaseDisk != nil {
			errs = append(errs, s.releaseDisk())
		}
		s.destroyErr = errors.Join(errs...)
	})
	return s.destroyErr
}

// EngineSocket is the host path of the learner's engine socket (the
// shell's /var/run/docker.sock): every call on it is recorded.
func (s *engineSandbox) EngineSocket() string { return s.srv.Path() }

// GraderSocket is the host path of the grader's socket to the same engine
// (GraderSocketName): its calls are never recorded as the learner's.
func (s *engineSandbox) GraderSocket() string { return s.graderSrv.Path() }

// Network is the sandbox's bridge network (nil without a runtime): labd's
// grader and browser preview dial published ports through it.
func (s *engineSandbox) Network() *network.Network { return s.net }

// DialPort dials port on 127.0.0.1 as the learner's shell sees it (where
// published ports listen): labd's browser preview proxies to it.
func (s *engineSandbox) DialPort(ctx context.Context, port int) (net.Conn, error) {
	if s.net == nil {
		return nil, fmt.Errorf("sandbox %s has no network (the engine runs without a container runtime)", s.id)
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("port %d out of range 1-65535", port)
	}
	return s.net.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// socketForUserNS lets container root of a user namespace connect to an
// engine socket labd bind-mounts into the container: that root is an
// unprivileged host uid, so the socket must be writable by others. Its
// directory (0700, host root's) keeps everyone else on the host out.
func socketForUserNS(path string, u *runtime.UserNS) error {
	if u == nil {
		return nil
	}
	return os.Chmod(path, 0o666)
}
