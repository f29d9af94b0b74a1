package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/labd/labd/internal/atomicfile"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/ctr"
)

// The /volumes API over the volumes setupMounts creates: every directory
// <data>/engine/volumes/<view>/<name>/ is a volume; volume.json beside
// _data holds what `docker volume create` was given.

// volumeMeta is volume.json.
type volumeMeta struct {
	Labels    map[string]string `json:",omitempty"`
	Options   map[string]string `json:",omitempty"`
	Anonymous bool              `json:",omitempty"`
	// API: created by `docker volume create` (dockerd 20.10 then shows
	// Labels and Options as {} instead of null).
	API bool `json:",omitempty"`
}

func (e *Engine) volumesRoot() string { return e.volumesDir() }

type noSuchVolume string

func (n noSuchVolume) Error() string { return "get " + string(n) + ": no such volume" }
func (noSuchVolume) NotFound()       {}

func isAnonymousName(n string) bool {
	if len(n) != 64 {
		return false
	}
	for _, r := range n {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

func (e *Engine) readVolume(name string) (*volume.Volume, volumeMeta, error) {
	var meta volumeMeta
	if !validVolumeName.MatchString(name) {
		return nil, meta, noSuchVolume(name)
	}
	dir := filepath.Join(e.volumesRoot(), name)
	fi, err := os.Stat(filepath.Join(dir, "_data"))
	if err != nil {
		return nil, meta, noSuchVolume(name)
	}
	meta.Anonymous = isAnonymousName(name)
	if b, err := os.ReadFile(filepath.Join(dir, "volume.json")); err == nil {
		_ = json.Unmarshal(b, &meta)
	}
	v := &volume.Volume{
		CreatedAt:  fi.ModTime().Format(time.RFC3339),
		Driver:     "local",
		Labels:     meta.Labels,
		Mountpoint: filepath.Join(dir, "_data"),
		Name:       name,
		Options:    meta.Options,
		Scope:      "local",
	}
	if dfi, err := os.Stat(dir); err == nil {
		v.CreatedAt = dfi.ModTime().Format(time.RFC3339)
	}
	if meta.API {
		if v.Labels == nil {
			v.Labels = map[string]string{}
		}
		if v.Options == nil {
			v.Options = map[string]string{}
		}
	}
	return v, meta, nil
}

// volumeUsers returns the IDs of the containers mounting name.
func (e *Engine) volumeUsers(name string) []string {
	var ids []string
	for _, c := range e.ctrs.All() {
		c.Lock()
		for _, m := range c.Meta.Mounts {
			if m.Type == "volume" && m.Name == name {
				ids = append(ids, c.Meta.ID)
				break
			}
		}
		c.Unlock()
	}
	return ids
}

// VolumeCreate implements api.VolumeBackend.
func (e *Engine) VolumeCreate(ctx context.Context, opts volume.CreateOptions) (*volume.Volume, error) {
	if opts.Driver != "" && opts.Driver != "local" {
		return nil, api.NotFoundError(fmt.Errorf("error looking up volume plugin %s: plugin %q not found", opts.Driver, opts.Driver))
	}
	if len(opts.DriverOpts) > 0 {
		return nil, api.InvalidParameterError(errors.New("volume driver options are not supported by this engine"))
	}
	name := opts.Name
	anon := false
	if name == "" {
		name, anon = ctr.NewID(), true
	}
	if v, _, err := e.readVolume(name); err == nil {
		return v, nil // dockerd: creating an existing volume returns it
	}
	if err := e.ensureVolume(name); err != nil {
		return nil, api.InvalidParameterError(fmt.Errorf("create %s: %w", name, err))
	}
	meta := volumeMeta{Labels: opts.Labels, Anonymous: anon, API: true}
	if err := atomicfile.WriteJSON(filepath.Join(e.volumesRoot(), name, "volume.json"), meta); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	e.events.publish(events.VolumeEventType, events.ActionCreate, name, map[string]string{"driver": "local"})
	v, _, err := e.readVolume(name)
	return v, err
}

var volumeFilters = map[string]bool{"dangling": true, "driver": true, "label": true, "name": true}

// VolumeList implements api.VolumeBackend.
func (e *Engine) VolumeList(ctx context.Context, f filters.Args) ([]*volume.Volume, error) {
	if err := f.Validate(volumeFilters); err != nil {
		return nil, api.InvalidParameterError(err)
	}
	ents, err := os.ReadDir(e.volumesRoot())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	out := []*volume.Volume{}
	for _, ent := range ents {
		v, _, err := e.readVolume(ent.Name())
		if err != nil {
			continue
		}
		if f.Contains("name") && !f.Match("name", v.Name) {
			continue
		}
		if f.Contains("driver") && !f.ExactMatch("driver", v.Driver) {
			continue
		}
		if f.Contains("label") && !f.MatchKVList("label", v.Labels) {
			continue
		}
		if f.Contains("dangling") {
			d, err := f.GetBoolOrDefault("dangling", false)
			if err != nil {
				return nil, api.InvalidParameterError(err)
			}
			if d != (len(e.volumeUsers(v.Name)) == 0) {
				continue
			}
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// VolumeInspect implements api.VolumeBackend.
func (e *Engine) VolumeInspect(ctx context.Context, name string) (*volume.Volume, error) {
	v, _, err := e.readVolume(name)
	return v, err
}

// VolumeRemove implements api.VolumeBackend.
func (e *Engine) VolumeRemove(ctx context.Context, name string, force bool) error {
	if _, _, err := e.readVolume(name); err != nil {
		if force {
			return nil
		}
		return err
	}
	if users := e.volumeUsers(name); len(users) > 0 {
		return api.ConflictError(fmt.Errorf("remove %s: volume is in use - [%s]", name, strings.Join(users, ", ")))
	}
	if err := os.RemoveAll(filepath.Join(e.volumesRoot(), name)); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	e.events.publish(events.VolumeEventType, events.ActionDestroy, name, map[string]string{"driver": "local"})
	return nil
}

// VolumesPrune implements api.VolumeBackend.
func (e *Engine) VolumesPrune(ctx context.Context, f filters.Args, anonymousOnly bool) (*volume.PruneReport, error) {
	if err := f.Validate(map[string]bool{"label": true, "label!": true}); err != nil {
		return nil, api.InvalidParameterError(err)
	}
	list, err := e.VolumeList(ctx, filters.NewArgs())
	if err != nil {
		return nil, err
	}
	rep := &volume.PruneReport{}
	for _, v := range list {
		_, meta, err := e.readVolume(v.Name)
		if err != nil || anonymousOnly && !meta.Anonymous {
			continue
		}
		if f.Contains("label") && !f.MatchKVList("label", v.Labels) {
			continue
		}
		if f.Contains("label!") && f.MatchKVList("label!", v.Labels) {
			continue
		}
		if len(e.volumeUsers(v.Name)) > 0 {
			continue
		}
		size := dirSize(v.Mountpoint)
		if err := e.VolumeRemove(ctx, v.Name, false); err != nil {
			continue
		}
		rep.VolumesDeleted = append(rep.VolumesDeleted, v.Name)
		rep.SpaceReclaimed += uint64(size)
	}
	e.events.publish(events.VolumeEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(rep.SpaceReclaimed, 10)})
	return rep, nil
}
