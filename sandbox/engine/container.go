package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/namesgenerator"
	"github.com/docker/go-units"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/image"
	netpkg "github.com/labd/labd/sandbox/engine/network"
	"github.com/labd/labd/sandbox/engine/runtime"
	"github.com/opencontainers/go-digest"
)

// ctrState is a container's persisted state (dockerd's container.State).
type ctrState struct {
	Running    bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Removing   bool `json:"RemovalInProgress"`
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
}

// status is dockerd's State.StateString.
func (s *ctrState) status() string {
	switch {
	case s.Running && s.Restarting:
		return "restarting"
	case s.Running:
		return "running"
	case s.Removing:
		return "removing"
	case s.Dead:
		return "dead"
	case s.StartedAt.IsZero():
		return "created"
	}
	return "exited"
}

// String is dockerd's State.String: the STATUS column of docker ps.
func (s *ctrState) String() string {
	now := time.Now().UTC()
	switch {
	case s.Running:
		return "Up " + units.HumanDuration(now.Sub(s.StartedAt))
	case s.Removing:
		return "Removal In Progress"
	case s.Dead:
		return "Dead"
	case s.StartedAt.IsZero():
		return "Created"
	case s.FinishedAt.IsZero():
		return ""
	}
	return fmt.Sprintf("Exited (%d) %s ago", s.ExitCode, units.HumanDuration(now.Sub(s.FinishedAt)))
}

// mountPoint is a volume or bind mount of a container.
type mountPoint struct {
	Type   string // "volume", "bind", "tmpfs"
	Name   string `json:",omitempty"` // volume name
	Source string // host path, as inspect shows it
	// A bind mount's source as the bind policy gave it: a root and a path
	// inside it, resolved beneath the root whenever the mount is used
	// (start, docker cp); Requested is what the client asked for, and
	// Create says to make it when missing (`-v`, not `--mount`).
	Root        string `json:",omitempty"`
	Rel         string `json:",omitempty"`
	Requested   string `json:",omitempty"`
	Create      bool   `json:",omitempty"`
	Destination string
	Mode        string
	RW          bool
	Propagation string `json:",omitempty"`
	Anonymous   bool   `json:",omitempty"`
}

// ctrMeta is what config.v2.json holds.
type ctrMeta struct {
	ID           string
	Name         string // with the leading "/"
	View         string
	Created      time.Time
	Path         string
	Args         []string
	Config       *container.Config
	Image        string // image ID (sha256:…)
	State        ctrState
	RestartCount int
	Mounts       []mountPoint
	Networking   *network.NetworkingConfig `json:",omitempty"`
	// HasBeenStarted tells a restarted labd a container was running when
	// it died.
	HasBeenStarted bool
}

// ctr is one container of an engine. mu guards everything below it; the
// persisted part is meta and hc.
type ctr struct {
	dir string

	mu   sync.Mutex
	meta ctrMeta
	hc   *container.HostConfig

	rc       *runtime.Container // while running
	stdin    *io.PipeWriter     // while running with OpenStdin
	hub      attachHub          // attached clients
	out      *output            // while running: log, followers
	endpoint *netpkg.Endpoint   // while running on the bridge
	execs    map[string]*execProc
	stopping bool
	changed  chan struct{} // closed and replaced on every state change
	removed  bool
	exitSeq  int // incremented at every exit
	tty      *ttySize
	// waiting counts /wait requests that have not yet handed their result
	// to the API handler (see ContainerStart).
	waiting sync.WaitGroup
	// releasePorts uncounts the host ports it publishes while it runs
	// (limits.go); nil when it publishes none.
	releasePorts func()
}

type ttySize struct{ h, w uint16 }

// releasePortsLocked gives back the container's published ports to the
// sandbox's count.
func (c *ctr) releasePortsLocked() {
	if c.releasePorts != nil {
		c.releasePorts()
		c.releasePorts = nil
	}
}

func (c *ctr) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *ctr) name() string { return strings.TrimPrefix(c.meta.Name, "/") }

// containerStore is one engine's containers, indexed by ID and name.
type containerStore struct {
	dir string // <data>/engine/containers
	mu  sync.Mutex
	ids map[string]*ctr
	// names maps "/name" to the container's ID (reserved at create).
	names map[string]string
}

func newContainerStore(dir string) *containerStore {
	return &containerStore{dir: dir, ids: map[string]*ctr{}, names: map[string]string{}}
}

// newID returns 64 hex digits that do not look like a number (dockerd's
// stringid.GenerateRandomID rule: a short ID of all digits would be taken
// for a number by some tools).
func newID() string {
	for {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		id := hex.EncodeToString(b)
		if strings.ContainsAny(id[:12], "abcdef") {
			return id
		}
	}
}

// reserveName claims name (with "/") for id; "" generates one as dockerd
// does.
func (s *containerStore) reserveName(name, id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == "" {
		for i := 0; ; i++ {
			n := "/" + namesgenerator.GetRandomName(i)
			if _, ok := s.names[n]; !ok {
				s.names[n] = id
				return n, nil
			}
			if i > 6 {
				n = "/" + id[:12] // as dockerd's last resort
				s.names[n] = id
				return n, nil
			}
		}
	}
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	if other, ok := s.names[name]; ok && other != id {
		return "", api.ConflictError(fmt.Errorf("Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", name, other))
	}
	s.names[name] = id
	return name, nil
}

func (s *containerStore) releaseName(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names[name] == id {
		delete(s.names, name)
	}
}

func (s *containerStore) add(c *ctr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[c.meta.ID] = c
	s.names[c.meta.Name] = c.meta.ID
}

func (s *containerStore) delete(c *ctr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, c.meta.ID)
	if s.names[c.meta.Name] == c.meta.ID {
		delete(s.names, c.meta.Name)
	}
}

// all returns the containers, newest first (docker ps order).
func (s *containerStore) all() []*ctr {
	s.mu.Lock()
	out := make([]*ctr, 0, len(s.ids))
	for _, c := range s.ids {
		out = append(out, c)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		return out[i].created().After(out[j].created())
	})
	return out
}

func (c *ctr) created() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.meta.Created
}

type noSuchContainer string

func (e noSuchContainer) Error() string { return "No such container: " + string(e) }
func (noSuchContainer) NotFound()       {}

// get resolves a container as dockerd does: full ID, name (with or
// without "/"), then a unique ID prefix.
func (s *containerStore) get(ref string) (*ctr, error) {
	if ref == "" {
		return nil, noSuchContainer(ref)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.ids[ref]; ok {
		return c, nil
	}
	name := ref
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	if id, ok := s.names[name]; ok {
		if c, ok := s.ids[id]; ok {
			return c, nil
		}
	}
	var found *ctr
	for id, c := range s.ids {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, api.InvalidParameterError(fmt.Errorf("multiple IDs found with provided prefix: %s", ref))
			}
			found = c
		}
	}
	if found == nil {
		return nil, noSuchContainer(ref)
	}
	return found, nil
}

func (c *ctr) upperDir() string { return filepath.Join(c.dir, "upper") }
func (c *ctr) workDir() string  { return filepath.Join(c.dir, "work") }
func (c *ctr) logPath() string  { return filepath.Join(c.dir, c.meta.ID+"-json.log") }

// saveLocked writes config.v2.json and hostconfig.json atomically.
func (c *ctr) saveLocked() error {
	if c.removed {
		return nil
	}
	if err := writeJSONFile(filepath.Join(c.dir, "config.v2.json"), c.meta); err != nil {
		return fmt.Errorf("save container %s: %w", c.meta.ID, err)
	}
	if err := writeJSONFile(filepath.Join(c.dir, "hostconfig.json"), c.hc); err != nil {
		return fmt.Errorf("save container %s: %w", c.meta.ID, err)
	}
	return nil
}

func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// loadContainers reads the containers of view from dir. Containers that
// were running when labd died are reported exited with 255, as dockerd
// reports containers whose task is gone after a daemon crash.
func loadContainers(dir, view string) ([]*ctr, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*ctr
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		cdir := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(filepath.Join(cdir, "config.v2.json"))
		if err != nil {
			continue // a create that never finished; swept by its own engine
		}
		var m ctrMeta
		if err := json.Unmarshal(b, &m); err != nil || m.View != view {
			continue
		}
		hc := &container.HostConfig{}
		if b, err := os.ReadFile(filepath.Join(cdir, "hostconfig.json")); err == nil {
			_ = json.Unmarshal(b, hc)
		}
		c := &ctr{dir: cdir, meta: m, hc: hc, changed: make(chan struct{}), execs: map[string]*execProc{}}
		if c.meta.State.Running || c.meta.State.Removing {
			c.meta.State.Running = false
			c.meta.State.Restarting = false
			c.meta.State.Removing = false
			c.meta.State.Pid = 0
			c.meta.State.ExitCode = 255
			c.meta.State.FinishedAt = time.Now().UTC()
			_ = c.saveLocked()
		}
		out = append(out, c)
	}
	return out, nil
}

// ContainersUsing implements image.Containers.
func (e *Engine) containersUsing(imageID string) (ids []string, running []bool) {
	for _, c := range e.ctrs.all() {
		c.mu.Lock()
		if c.meta.Image == imageID {
			ids = append(ids, c.meta.ID)
			running = append(running, c.meta.State.Running)
		}
		c.mu.Unlock()
	}
	return ids, running
}

// waitChanged blocks until c's state changes or ctx ends.
func (c *ctr) waitChanged(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loadContainers reads the engine's containers from disk and tells the
// image view which images they use.
func (e *Engine) loadContainers() error {
	dir := filepath.Join(e.shared.dir, "containers")
	e.ctrs = newContainerStore(dir)
	list, err := loadContainers(dir, e.name)
	if err != nil {
		return fmt.Errorf("load containers: %w", err)
	}
	// And those on the sandbox's disk (quota.go).
	if own := e.containersDir(); own != dir {
		more, err := loadContainers(own, e.name)
		if err != nil {
			return fmt.Errorf("load containers: %w", err)
		}
		list = append(list, more...)
	}
	for _, c := range list {
		e.ctrs.add(c)
	}
	e.view.SetContainers(containerUse{e})
	return nil
}

// containerUse is the image store's view of the engine's containers.
type containerUse struct{ e *Engine }

func (u containerUse) ContainersUsing(id digest.Digest) []image.ContainerUse {
	var out []image.ContainerUse
	ids, running := u.e.containersUsing(id.String())
	for i := range ids {
		out = append(out, image.ContainerUse{ID: ids[i], Running: running[i]})
	}
	return out
}
