package engine

import (
	"context"

	"github.com/labd/labd/sandbox/engine/api"
)

// ContainerLogs implements api.ContainerBackend.
func (e *Engine) ContainerLogs(ctx context.Context, name string, cfg api.LogsConfig) error {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return err
	}
	return c.Logs(ctx, cfg)
}

// ContainerAttach implements api.ContainerBackend.
func (e *Engine) ContainerAttach(ctx context.Context, name string, cfg api.AttachConfig) error {
	c, err := e.ctrs.Get(name)
	if err != nil {
		return err
	}
	return e.ctrs.Attach(ctx, c, name, cfg)
}
