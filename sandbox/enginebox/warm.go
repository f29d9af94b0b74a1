package enginebox

import (
	"context"
	"errors"
	"fmt"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine/image"
)

// Create implements sandbox.Provider.
func (p *Provider) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	sb, err := p.create(ctx, spec, false)
	if err != nil {
		return nil, err
	}
	return sb, nil
}

// Prepare implements sandbox.Warmer: the whole sandbox (user namespace,
// cgroup, network, engine on its sockets, disk, the shell's container
// set up) with the shell's command not yet run, so that Adopt only has to
// give it its learner's environment. Only the container shell warms: the
// simple shell of trusted learners starts in milliseconds anyway.
func (p *Provider) Prepare(ctx context.Context, spec sandbox.Spec) (sandbox.Prepared, error) {
	if p.Shared.Runtime == nil {
		return nil, errors.New("warm sandboxes need the container runtime")
	}
	if _, ok := p.sandboxImage(); !ok {
		return nil, fmt.Errorf("no %s image yet: %w", image.SandboxTag, sandbox.ErrShellNotReady)
	}
	sb, err := p.create(ctx, spec, true)
	if err != nil {
		return nil, err
	}
	return &prepared{sb, p}, nil
}

// prepared is a warm engine sandbox.
type prepared struct {
	*engineSandbox
	p *Provider
}

// Adopt implements sandbox.Prepared: the shell's command runs now with
// s.Env added. The sandbox keeps its own name, workspace and limits (the
// Manager gives warm sandboxes only to labs with the default limits).
func (w *prepared) Adopt(ctx context.Context, s sandbox.Spec) (sandbox.Sandbox, error) {
	sh, ok := w.Sandbox.(*shellBox)
	if !ok {
		return nil, errors.New("adopt: not a held container shell")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := sh.release(s.Env); err != nil {
		return nil, fmt.Errorf("adopt sandbox %s: %w", w.id, err)
	}
	return w.engineSandbox, nil
}

// Destroy implements sandbox.Prepared: a warm sandbox nobody was given
// leaves nothing of its own behind (the Manager removes its directory
// next). A learner's sandbox keeps its uid range (sandbox/engine/remap.go)
// for the workspace it keeps; this one's workspace is nobody's, so the
// range goes now. Without this, every warm sandbox discarded (labd stopping, one
// that ended in the pool) held a uid range for good (issue 13: nothing
// leaks).
func (w *prepared) Destroy(ctx context.Context) error {
	err := w.engineSandbox.Destroy(ctx)
	return errors.Join(err, w.p.forget(w.id))
}

// Forget implements sandbox.Forgetter: an earlier run's warm sandbox
// nobody was given (its directory is gone) frees its uid range and records.
func (p *Provider) Forget(name string) error {
	if !sandbox.ValidID(name) {
		return fmt.Errorf("forget sandbox %q: %w", name, sandbox.ErrInvalidID)
	}
	return errors.Join(p.forget(name), p.Shared.Store.RemoveView(name))
}

// forget releases what a destroyed sandbox keeps for its workspace: a
// mount of its disk for a reader (kept.go), its uid range, its records
// (the last two the engine's: Shared.ForgetView).
func (p *Provider) forget(id string) error {
	p.dropKept(id)
	return p.Shared.ForgetView(id)
}
