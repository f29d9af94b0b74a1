package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine/api"
)

// SocketName is the engine socket's file name in a sandbox's directory
// (next to its workspace).
const SocketName = "docker.sock"

// Provider gives every sandbox made by Inner an engine of its own: a view of
// the shared store named after the sandbox (its own images, tags and build
// cache over shared blobs), served on a unix socket beside the sandbox's
// workspace, with DOCKER_HOST in the sandbox's environment pointing at it and
// DOCKER_BUILDKIT=0 so `docker build` prints the classic builder's output.
type Provider struct {
	Inner  sandbox.Provider
	Shared *Shared
	API    api.Options
}

// Create implements sandbox.Provider.
func (p *Provider) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	eng, err := p.Shared.Engine(spec.ID)
	if err != nil {
		return nil, fmt.Errorf("engine of sandbox %s: %w", spec.ID, err)
	}
	sock := filepath.Join(filepath.Dir(spec.Workspace), SocketName)
	// The kernel limits a socket path to 107 bytes; say so rather than
	// failing with EINVAL.
	if len(sock) > 107 {
		return nil, fmt.Errorf("engine socket path %s is longer than 107 bytes: use a shorter --data", sock)
	}
	srv, err := api.ServeUnix(sock, api.New(eng, p.API))
	if err != nil {
		return nil, fmt.Errorf("engine socket of sandbox %s: %w", spec.ID, err)
	}
	spec.Env = append(append([]string{}, spec.Env...),
		"DOCKER_HOST=unix://"+sock,
		"DOCKER_BUILDKIT=0",
	)
	spec.Keep = append(append([]string{}, spec.Keep...), sock)
	sb, err := p.Inner.Create(ctx, spec)
	if err != nil {
		return nil, errors.Join(err, srv.Close(ctx))
	}
	return &engineSandbox{Sandbox: sb, srv: srv}, nil
}

// engineSandbox is a sandbox whose engine socket closes with it.
type engineSandbox struct {
	sandbox.Sandbox
	srv *api.UnixServer
}

// engineGrace bounds how long a destroyed sandbox's engine waits for
// requests in flight (a build's RUN step is cancelled when its client goes).
const engineGrace = 5 * time.Second

func (s *engineSandbox) Destroy(ctx context.Context) error {
	err := s.Sandbox.Destroy(ctx)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), engineGrace)
	defer cancel()
	return errors.Join(err, s.srv.Close(cctx))
}

// Engine socket path, for graders and tests.
func (s *engineSandbox) EngineSocket() string { return s.srv.Path() }
