package engine

import (
	"context"

	"github.com/docker/docker/api/types/container"
	"github.com/labd/labd/sandbox/engine/api"
)

// ExecCreate implements api.ContainerBackend.
func (e *Engine) ExecCreate(ctx context.Context, name string, opts *container.ExecOptions) (string, error) {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return "", err
	}
	return e.ctrs.ExecCreate(c, opts)
}

// ExecStart implements api.ContainerBackend.
func (e *Engine) ExecStart(ctx context.Context, id string, cfg api.ExecStartConfig) error {
	return e.ctrs.ExecStart(ctx, id, cfg, e.acquireExec)
}

// ExecResize implements api.ContainerBackend.
func (e *Engine) ExecResize(ctx context.Context, id string, height, width uint16) error {
	return e.ctrs.ExecResize(id, height, width)
}

// ExecInspect implements api.ContainerBackend.
func (e *Engine) ExecInspect(ctx context.Context, id string) (*container.ExecInspect, error) {
	return e.ctrs.ExecInspect(id)
}
