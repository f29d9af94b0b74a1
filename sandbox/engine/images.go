package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	imagetypes "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/storage"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/image"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
)

func familiarRef(ref string) string {
	if r, err := reference.ParseNormalizedNamed(ref); err == nil {
		return reference.FamiliarString(r)
	}
	return ref
}

var imageFilters = map[string]bool{"dangling": true, "label": true, "before": true, "since": true, "reference": true, "until": true}

// Images implements api.Backend (GET /images/json).
func (e *Engine) Images(ctx context.Context, opts imagetypes.ListOptions) ([]imagetypes.Summary, error) {
	f := opts.Filters
	if err := f.Validate(imageFilters); err != nil {
		return nil, api.InvalidParameterError(err)
	}
	var danglingOnly, notDangling bool
	if f.Contains("dangling") {
		d, err := f.GetBoolOrDefault("dangling", false)
		if err != nil {
			return nil, api.InvalidParameterError(err)
		}
		danglingOnly, notDangling = d, !d
	}
	var before, since time.Time
	for key, dst := range map[string]*time.Time{"before": &before, "since": &since} {
		var err error
		_ = f.WalkValues(key, func(v string) error {
			id, rerr := e.view.Resolve(v)
			if rerr != nil {
				err = mapErr(rerr)
				return err
			}
			info, ierr := e.view.Image(id)
			if ierr != nil {
				err = mapErr(ierr)
				return err
			}
			*dst = info.Created
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	list := e.view.List(opts.All || danglingOnly)
	out := []imagetypes.Summary{}
	for _, s := range list {
		if danglingOnly && !s.Dangling || notDangling && s.Dangling {
			continue
		}
		if !before.IsZero() && !s.Created.Before(before) {
			continue
		}
		if !since.IsZero() && !s.Created.After(since) {
			continue
		}
		if f.Contains("label") && !f.MatchKVList("label", s.Labels) {
			continue
		}
		tags := s.RepoTags
		if f.Contains("reference") {
			var kept []string
			for _, t := range tags {
				if matchReference(f, t) {
					kept = append(kept, t)
				}
			}
			if len(kept) == 0 {
				continue
			}
			tags = kept
		}
		out = append(out, imagetypes.Summary{
			ID:          s.ID.String(),
			ParentID:    s.ParentID.String(),
			RepoTags:    tags,
			RepoDigests: s.RepoDigests,
			Created:     s.Created.Unix(),
			Size:        s.Size,
			SharedSize:  -1,
			Containers:  -1,
			Labels:      s.Labels,
		})
	}
	return out, nil
}

// matchReference is dockerd's reference filter: a pattern against the
// familiar name and name:tag.
func matchReference(f filters.Args, tag string) bool {
	ref, err := reference.ParseNormalizedNamed(tag)
	if err != nil {
		return false
	}
	for _, pat := range f.Get("reference") {
		if ok, _ := reference.FamiliarMatch(pat, ref); ok {
			return true
		}
	}
	return false
}

func (e *Engine) resolve(name string) (image.ImageInfo, error) {
	id, err := e.view.Resolve(name)
	if err != nil {
		return image.ImageInfo{}, mapErr(err)
	}
	info, err := e.view.Image(id)
	return info, mapErr(err)
}

// ImageInspect implements api.Backend.
func (e *Engine) ImageInspect(ctx context.Context, name string) (*api.ImageInspect, error) {
	info, err := e.resolve(name)
	if err != nil {
		if errors.Is(err, image.ErrNotFound) {
			// dockerd 20.10's LookupImage wraps the lookup's error with the
			// name as given: "no such image: x: No such image: x:latest".
			return nil, api.NotFoundError(fmt.Errorf("no such image: %s: %w", name, err))
		}
		return nil, err
	}
	c := info.Config
	var layers []string
	for _, d := range c.DiffIDs() {
		layers = append(layers, d.String())
	}
	// dockerd keeps the container config as a value, so an image without
	// one (imported, or from a builder that omits it) still shows an
	// empty object.
	cc := c.ContainerConfig
	if cc == nil {
		cc = &container.Config{}
	}
	resp := &imagetypes.InspectResponse{
		ID:              info.ID.String(),
		RepoTags:        info.RepoTags,
		RepoDigests:     info.RepoDigests,
		Parent:          info.Parent.String(),
		Comment:         c.Comment,
		Created:         c.Created.Format(time.RFC3339Nano),
		Container:       c.Container,
		ContainerConfig: cc,
		DockerVersion:   c.DockerVersion,
		Author:          c.Author,
		Config:          ociConfig(c.Config),
		Architecture:    c.Architecture,
		Variant:         c.Variant,
		Os:              c.OS,
		OsVersion:       c.OSVersion,
		Size:            info.Size,
		GraphDriver:     graphDriver(e.shared.Store, c.DiffIDs()),
		RootFS:          imagetypes.RootFS{Type: "layers", Layers: layers},
		Metadata:        imagetypes.Metadata{LastTagTime: info.LastTagTime},
	}
	if c.Created.IsZero() {
		resp.Created = ""
	}
	return &api.ImageInspect{Response: resp, StoredConfig: c.Config}, nil
}

func graphDriver(s *image.Store, diffIDs []digest.Digest) storage.DriverData {
	dd := storage.DriverData{Name: "overlay2", Data: map[string]string{}}
	if len(diffIDs) == 0 {
		return dd
	}
	top := s.LayerDir(diffIDs[len(diffIDs)-1])
	dd.Data["UpperDir"] = top
	var lowers []string
	for i := len(diffIDs) - 2; i >= 0; i-- {
		lowers = append(lowers, s.LayerDir(diffIDs[i]))
	}
	if len(lowers) > 0 {
		dd.Data["LowerDir"] = strings.Join(lowers, ":")
	}
	return dd
}

// ociConfig converts the image's run config to the type inspect uses.
func ociConfig(c *container.Config) *dockerspec.DockerOCIImageConfig {
	if c == nil {
		return nil
	}
	out := &dockerspec.DockerOCIImageConfig{}
	out.User = c.User
	out.Env = c.Env
	out.Entrypoint = c.Entrypoint
	out.Cmd = c.Cmd
	out.WorkingDir = c.WorkingDir
	out.Labels = c.Labels
	out.StopSignal = c.StopSignal
	out.ArgsEscaped = c.ArgsEscaped //nolint:staticcheck // part of the config dockerd reports
	out.OnBuild = c.OnBuild
	out.Shell = c.Shell
	if len(c.ExposedPorts) > 0 {
		out.ExposedPorts = map[string]struct{}{}
		for p := range c.ExposedPorts {
			out.ExposedPorts[string(p)] = struct{}{}
		}
	}
	if len(c.Volumes) > 0 {
		out.Volumes = c.Volumes
	}
	if h := c.Healthcheck; h != nil {
		out.Healthcheck = &dockerspec.HealthcheckConfig{
			Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries,
		}
	}
	return out
}

// ImageHistory implements api.Backend with dockerd's rules: one row per
// history entry, newest first; IDs along the local parent chain, then
// <missing>.
func (e *Engine) ImageHistory(ctx context.Context, name string) ([]imagetypes.HistoryResponseItem, error) {
	info, err := e.resolve(name)
	if err != nil {
		return nil, err
	}
	c := info.Config
	diffIDs := c.DiffIDs()
	var rows []imagetypes.HistoryResponseItem
	n := 0
	for _, h := range c.History {
		var size int64
		if !h.EmptyLayer {
			if n >= len(diffIDs) {
				return nil, fmt.Errorf("too many non-empty layers in History section")
			}
			size, _ = e.shared.Store.LayerSize(diffIDs[n])
			n++
		}
		var created int64
		if !h.Created.IsZero() {
			created = h.Created.Unix()
		}
		rows = append([]imagetypes.HistoryResponseItem{{
			ID: "<missing>", Created: created, CreatedBy: h.CreatedBy, Comment: h.Comment, Size: size,
		}}, rows...)
	}
	cur := info
	for i := range rows {
		rows[i].ID = cur.ID.String()
		if len(cur.RepoTags) > 0 {
			rows[i].Tags = cur.RepoTags // dockerd sends null when untagged
		}
		if cur.Parent == "" {
			break
		}
		next, err := e.view.Image(cur.Parent)
		if err != nil {
			break
		}
		cur = next
	}
	return rows, nil
}

// ImageTag implements api.Backend.
func (e *Engine) ImageTag(ctx context.Context, source, ref string) error {
	id, err := e.view.Resolve(source)
	if err != nil {
		return mapErr(err)
	}
	if err := e.view.Tag(id, ref); err != nil {
		return mapErr(err)
	}
	e.imageEvent(events.ActionTag, id.String(), familiarRef(ref))
	return nil
}

// imageIDs is the set of images visible in the view.
func (e *Engine) imageIDs() map[string]bool {
	ids := map[string]bool{}
	for _, s := range e.view.List(true) {
		ids[s.ID.String()] = true
	}
	return ids
}

// ImageDelete implements api.Backend.
func (e *Engine) ImageDelete(ctx context.Context, name string, force, prune bool) ([]imagetypes.DeleteResponse, error) {
	before := e.imageIDs()
	recs, err := e.view.Delete(name, force, !prune)
	if err != nil {
		return nil, mapErr(err)
	}
	out := e.deleteRecords(recs, before)
	e.gc(ctx)
	return out, nil
}

func (e *Engine) deleteRecords(recs []image.DeleteRecord, images map[string]bool) []imagetypes.DeleteResponse {
	out := make([]imagetypes.DeleteResponse, 0, len(recs))
	for _, r := range recs {
		out = append(out, imagetypes.DeleteResponse{Untagged: r.Untagged, Deleted: r.Deleted})
		switch {
		case r.Untagged != "":
			e.imageEvent(events.ActionUnTag, "", r.Untagged)
		case images[r.Deleted]:
			e.imageEvent(events.ActionDelete, r.Deleted, r.Deleted)
		}
	}
	return out
}

// gc frees blobs no view uses any more; a failure only delays that.
func (e *Engine) gc(ctx context.Context) {
	if _, err := e.shared.Store.GC(ctx); err != nil {
		e.shared.log.Warn("engine gc", "err", err)
	}
}

// ImagesPrune implements api.Backend.
func (e *Engine) ImagesPrune(ctx context.Context, f filters.Args) (*imagetypes.PruneReport, error) {
	if err := f.Validate(map[string]bool{"dangling": true, "label": true, "label!": true, "until": true}); err != nil {
		return nil, api.InvalidParameterError(err)
	}
	danglingOnly := true
	if f.Contains("dangling") {
		d, err := f.GetBoolOrDefault("dangling", true)
		if err != nil {
			return nil, api.InvalidParameterError(err)
		}
		danglingOnly = d
	}
	before := e.imageIDs()
	rep, err := e.view.Prune(ctx, danglingOnly)
	if err != nil {
		return nil, mapErr(err)
	}
	e.gc(ctx)
	return &imagetypes.PruneReport{ImagesDeleted: e.deleteRecords(rep.ImagesDeleted, before), SpaceReclaimed: rep.SpaceReclaimed}, nil
}

// BuildCachePrune implements api.Backend. The classic builder's cache is
// the intermediate images themselves, which image prune removes, so
// there is nothing separate to free (dockerd without BuildKit answers the
// same).
func (e *Engine) BuildCachePrune(ctx context.Context, opts build.CachePruneOptions) (*build.CachePruneReport, error) {
	return &build.CachePruneReport{}, nil
}

// ImageSave implements api.Backend.
func (e *Engine) ImageSave(ctx context.Context, names []string, w io.Writer) error {
	if err := e.view.Save(ctx, names, w); err != nil {
		return mapErr(err)
	}
	for _, n := range names {
		if id, err := e.view.Resolve(n); err == nil {
			e.imageEvent(events.ActionSave, id.String(), n)
		}
	}
	return nil
}

// ImageLoad implements api.Backend.
func (e *Engine) ImageLoad(ctx context.Context, r io.Reader, out io.Writer) error {
	// A load's size is bounded by --max-load; it is counted against the
	// disk quota once loaded (quota.go), and refused when already full.
	if err := e.checkDisk(0); err != nil {
		return err
	}
	before := e.imageIDs()
	err := e.view.Load(ctx, r, func(line string) { _, _ = io.WriteString(out, line) })
	if err != nil {
		return mapErr(err)
	}
	for id := range e.imageIDs() {
		if !before[id] {
			e.imageEvent(events.ActionLoad, id, id)
		}
	}
	return nil
}

// Info implements api.Backend.
func (e *Engine) Info(ctx context.Context) (*system.Info, error) {
	host, _ := os.Hostname()
	all := e.view.List(true)
	info := &system.Info{
		ID:                 "labd-" + e.name,
		Images:             len(all),
		Driver:             "overlay2",
		DriverStatus:       [][2]string{{"Backing Filesystem", "extfs"}, {"Supports d_type", "true"}, {"Native Overlay Diff", "true"}},
		Plugins:            system.PluginsInfo{Volume: []string{"local"}, Network: []string{"bridge", "host", "null"}, Log: []string{"json-file"}},
		MemoryLimit:        true,
		SwapLimit:          true,
		CPUCfsPeriod:       true,
		CPUCfsQuota:        true,
		CPUShares:          true,
		CPUSet:             true,
		PidsLimit:          true,
		IPv4Forwarding:     true,
		Debug:              false,
		NFd:                0,
		NGoroutines:        goruntime.NumGoroutine(),
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		LoggingDriver:      "json-file",
		CgroupDriver:       "cgroupfs",
		CgroupVersion:      cgroupVersion(),
		NEventsListener:    0,
		OperatingSystem:    "labd engine",
		OSType:             "linux",
		OSVersion:          "",
		Architecture:       archName(),
		IndexServerAddress: "https://index.docker.io/v1/",
		NCPU:               goruntime.NumCPU(),
		MemTotal:           memTotal(),
		DockerRootDir:      e.shared.dir,
		Name:               host,
		ServerVersion:      Version,
		Runtimes:           map[string]system.RuntimeWithStatus{"runc": {Runtime: system.Runtime{Path: "runc"}}},
		DefaultRuntime:     "runc",
		Swarm:              swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive},
		InitBinary:         "docker-init",
		SecurityOptions:    []string{"name=cgroupns"},
		Labels:             []string{},
		Warnings:           []string{},
	}
	e.countContainers(info)
	return info, nil
}

func archName() string {
	switch goruntime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return goruntime.GOARCH
}

func cgroupVersion() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "2"
	}
	return "1"
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "MemTotal:") {
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "MemTotal:")), "%d", &kb)
		}
	}
	return kb * 1024
}
