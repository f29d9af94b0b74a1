package ctr

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/pkg/namesgenerator"
	"github.com/labd/labd/sandbox/engine/api"
)

// Hooks are what the engine hears of its containers' lives.
type Hooks struct {
	// Publish sends a container event to the engine's bus; it is called
	// with the container's lock held.
	Publish func(action events.Action, id string, attrs map[string]string)
	// Log reports what no client is waiting to hear (a failed
	// auto-remove); nil: slog's default.
	Log *slog.Logger
}

// Store is one engine's containers, indexed by ID and name, and its execs.
type Store struct {
	hooks Hooks

	mu  sync.Mutex
	ids map[string]*Container
	// names maps "/name" to the container's ID (reserved at create).
	names map[string]string

	execMu sync.Mutex
	execs  map[string]*Exec
}

// NewStore returns an empty store.
func NewStore(h Hooks) *Store {
	if h.Log == nil {
		h.Log = slog.Default()
	}
	return &Store{hooks: h, ids: map[string]*Container{}, names: map[string]string{}, execs: map[string]*Exec{}}
}

// EventLocked publishes a container event with dockerd's attributes (the
// container's labels, image and name, then extra); c is locked.
func (s *Store) EventLocked(c *Container, action events.Action, extra map[string]string) {
	if s.hooks.Publish == nil {
		return
	}
	attrs := map[string]string{}
	if c.Meta.Config != nil {
		for k, v := range c.Meta.Config.Labels {
			attrs[k] = v
		}
		attrs["image"] = c.Meta.Config.Image
	}
	attrs["name"] = c.Name()
	for k, v := range extra {
		attrs[k] = v
	}
	s.hooks.Publish(action, c.Meta.ID, attrs)
}

// event is EventLocked taking c's lock.
func (s *Store) event(c *Container, action events.Action, extra map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.EventLocked(c, action, extra)
}

// NewID returns 64 hex digits that do not look like a number (dockerd's
// stringid.GenerateRandomID rule: a short ID of all digits would be taken
// for a number by some tools).
func NewID() string {
	for {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		id := hex.EncodeToString(b)
		if strings.ContainsAny(id[:12], "abcdef") {
			return id
		}
	}
}

// ReserveName claims name (with or without "/") for id; "" generates one
// as dockerd does. It returns the name with its "/".
func (s *Store) ReserveName(name, id string) (string, error) {
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

// ReleaseName gives back a name reserved for id.
func (s *Store) ReleaseName(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names[name] == id {
		delete(s.names, name)
	}
}

// Add puts c in the store under its ID and name.
func (s *Store) Add(c *Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[c.Meta.ID] = c
	s.names[c.Meta.Name] = c.Meta.ID
}

func (s *Store) delete(c *Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, c.Meta.ID)
	if s.names[c.Meta.Name] == c.Meta.ID {
		delete(s.names, c.Meta.Name)
	}
}

// All returns the containers, newest first (docker ps order).
func (s *Store) All() []*Container {
	s.mu.Lock()
	out := make([]*Container, 0, len(s.ids))
	for _, c := range s.ids {
		out = append(out, c)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created().After(out[j].Created())
	})
	return out
}

// NoSuchContainer is dockerd's 404 for a container reference.
type NoSuchContainer string

func (e NoSuchContainer) Error() string { return "No such container: " + string(e) }

// NotFound marks it a 404 (errdefs).
func (NoSuchContainer) NotFound() {}

// Get resolves a container as dockerd does: full ID, name (with or
// without "/"), then a unique ID prefix.
func (s *Store) Get(ref string) (*Container, error) {
	if ref == "" {
		return nil, NoSuchContainer(ref)
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
	var found *Container
	for id, c := range s.ids {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, api.InvalidParameterError(fmt.Errorf("multiple IDs found with provided prefix: %s", ref))
			}
			found = c
		}
	}
	if found == nil {
		return nil, NoSuchContainer(ref)
	}
	return found, nil
}

// Load adds the containers of view found in dir. Containers that were
// running when labd died are reported exited with 255, as dockerd reports
// containers whose task is gone after a daemon crash.
func (s *Store) Load(dir, view string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load containers: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		cdir := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(filepath.Join(cdir, "config.v2.json"))
		if err != nil {
			continue // a create that never finished; swept by its own engine
		}
		var m Meta
		if err := json.Unmarshal(b, &m); err != nil || m.View != view {
			continue
		}
		hc := &container.HostConfig{}
		if b, err := os.ReadFile(filepath.Join(cdir, "hostconfig.json")); err == nil {
			_ = json.Unmarshal(b, hc)
		}
		c := New(cdir, m, hc)
		if c.Meta.State.Running || c.Meta.State.Removing {
			c.Meta.State.Running = false
			c.Meta.State.Restarting = false
			c.Meta.State.Removing = false
			c.Meta.State.Pid = 0
			c.Meta.State.ExitCode = 255
			c.Meta.State.FinishedAt = time.Now().UTC()
			_ = c.SaveLocked()
		}
		s.Add(c)
	}
	return nil
}
