package ctr

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/labd/labd/internal/atomicfile"
	netpkg "github.com/labd/labd/sandbox/engine/network"
	"github.com/labd/labd/sandbox/engine/runtime"
)

// Container is one container of an engine. Its lock (Lock) guards every
// field but Dir; Meta and HostConfig are what is persisted.
type Container struct {
	// Dir holds the container's state files, log and rw layer.
	Dir string

	mu         sync.Mutex
	Meta       Meta
	HostConfig *container.HostConfig
	// Endpoint is the run's place on the engine's bridge (the engine
	// sets it in the Run it starts); nil when not running or not on one.
	Endpoint *netpkg.Endpoint
	// Tty is the terminal size a client asked for; kept for the next
	// start (docker run -it resizes before it starts the container).
	Tty *TtySize

	rc      *runtime.Container // while running
	stdin   *io.PipeWriter     // while running with OpenStdin
	hub     attachHub          // attached clients
	out     *output            // while running: log, followers
	release func()             // the engine's Run.Release, while running
	execs   map[string]*Exec
	changed chan struct{} // closed and replaced on every state change
	removed bool
	exitSeq int // incremented at every exit
	// waiting counts /wait requests that have not yet handed their result
	// to the API handler (see AwaitWaiters).
	waiting sync.WaitGroup
}

// TtySize is a terminal's height and width.
type TtySize struct{ H, W uint16 }

// New returns a container that is not yet in a store (Store.Add).
func New(dir string, meta Meta, hc *container.HostConfig) *Container {
	return &Container{Dir: dir, Meta: meta, HostConfig: hc, changed: make(chan struct{}), execs: map[string]*Exec{}}
}

// Lock takes the container's lock (see the package's lock order).
func (c *Container) Lock() { c.mu.Lock() }

// Unlock releases it.
func (c *Container) Unlock() { c.mu.Unlock() }

func (c *Container) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Name is the container's name without the leading "/".
func (c *Container) Name() string { return strings.TrimPrefix(c.Meta.Name, "/") }

// Created is when the container was created.
func (c *Container) Created() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Meta.Created
}

// UpperDir is the container's rw layer.
func (c *Container) UpperDir() string { return filepath.Join(c.Dir, "upper") }

// WorkDir is overlayfs's work directory of the rw layer.
func (c *Container) WorkDir() string { return filepath.Join(c.Dir, "work") }

// LogPath is the json-file log of the current or last run.
func (c *Container) LogPath() string { return filepath.Join(c.Dir, c.Meta.ID+"-json.log") }

// RuntimeLocked is the running container in the runtime; nil when it
// does not run.
func (c *Container) RuntimeLocked() *runtime.Container { return c.rc }

// RemovedLocked tells whether the container is gone from its store.
func (c *Container) RemovedLocked() bool { return c.removed }

// RunningExecsLocked lists the IDs of the container's running execs,
// sorted (inspect's ExecIDs).
func (c *Container) RunningExecsLocked() []string {
	var ids []string
	for id, x := range c.execs {
		if x.isRunning() {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// ResizeLocked sets the terminal size: of the run, and of the next.
func (c *Container) ResizeLocked(height, width uint16) {
	c.Tty = &TtySize{H: height, W: width}
	if c.rc != nil && c.Meta.Config.Tty {
		_ = c.rc.Resize(width, height)
	}
}

// SaveLocked writes config.v2.json and hostconfig.json atomically.
func (c *Container) SaveLocked() error {
	if c.removed {
		return nil
	}
	if err := atomicfile.WriteJSON(filepath.Join(c.Dir, "config.v2.json"), c.Meta); err != nil {
		return fmt.Errorf("save container %s: %w", c.Meta.ID, err)
	}
	if err := atomicfile.WriteJSON(filepath.Join(c.Dir, "hostconfig.json"), c.HostConfig); err != nil {
		return fmt.Errorf("save container %s: %w", c.Meta.ID, err)
	}
	return nil
}

// AwaitWaiters waits, at most d, until every /wait request on c has
// handed its answer to its API handler.
func (c *Container) AwaitWaiters(d time.Duration) bool {
	handedOff := make(chan struct{})
	go func() { c.waiting.Wait(); close(handedOff) }()
	select {
	case <-handedOff:
		return true
	case <-time.After(d):
		return false
	}
}
