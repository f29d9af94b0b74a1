package engine

import (
	"fmt"
	"path/filepath"

	"github.com/docker/docker/api/types/events"
	"github.com/labd/labd/sandbox/engine/ctr"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/opencontainers/go-digest"
)

// DefaultMaxContainerLog is what one container's log may keep on disk in
// a sandbox (EngineLimits.Logs): dockerd's json-file driver keeps
// everything unless told otherwise, and a `yes` in a learner's container
// would fill the disk at hundreds of MB a second. 30 MiB is three files of
// 10 MiB, far more than a lab's `docker logs` ever shows.
const DefaultMaxContainerLog int64 = 30 << 20

// loadContainers opens the engine's container store from disk and tells
// the image view which images the containers use.
func (e *Engine) loadContainers() error {
	e.ctrs = ctr.NewStore(ctr.Hooks{
		Publish: func(action events.Action, id string, attrs map[string]string) {
			e.events.publish(events.ContainerEventType, action, id, attrs)
			if obs := e.shared.observer; obs != nil && action == events.ActionStart {
				obs.ContainerStarted()
			}
		},
		Log: e.shared.log,
	})
	dir := filepath.Join(e.shared.dir, "containers")
	if err := e.ctrs.Load(dir, e.name); err != nil {
		return err
	}
	// And those on the sandbox's disk (quota.go).
	if own := e.containersDir(); own != dir {
		if err := e.ctrs.Load(own, e.name); err != nil {
			return fmt.Errorf("sandbox disk: %w", err)
		}
	}
	e.view.SetContainers(containerUse{e})
	return nil
}

// containerUse is the image store's view of the engine's containers.
type containerUse struct{ e *Engine }

func (u containerUse) ContainersUsing(id digest.Digest) []image.ContainerUse {
	var out []image.ContainerUse
	for _, c := range u.e.ctrs.All() {
		c.Lock()
		if c.Meta.Image == id.String() {
			out = append(out, image.ContainerUse{ID: c.Meta.ID, Running: c.Meta.State.Running})
		}
		c.Unlock()
	}
	return out
}
