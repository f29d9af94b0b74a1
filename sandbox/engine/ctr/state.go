package ctr

import (
	"fmt"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-units"
)

// State is a container's persisted state (dockerd's container.State).
type State struct {
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

// Status is dockerd's State.StateString.
func (s *State) Status() string {
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
func (s *State) String() string {
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

// MountPoint is a volume or bind mount of a container.
type MountPoint struct {
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

// Meta is what config.v2.json holds.
type Meta struct {
	ID           string
	Name         string // with the leading "/"
	View         string
	Created      time.Time
	Path         string
	Args         []string
	Config       *container.Config
	Image        string // image ID (sha256:…)
	State        State
	RestartCount int
	Mounts       []MountPoint
	Networking   *network.NetworkingConfig `json:",omitempty"`
	// HasBeenStarted tells a restarted labd a container was running when
	// it died.
	HasBeenStarted bool
}
