package engine

import (
	"context"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	imagetypes "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"
	"github.com/opencontainers/go-digest"
)

// SystemDiskUsage implements api.DiskUsageBackend (`docker system df`).
// The classic builder keeps no build cache records apart from images, so
// BuildCache is always empty, as dockerd 20.10 reports it for classic
// builds.
func (e *Engine) SystemDiskUsage(ctx context.Context, kinds map[string]bool) (*types.DiskUsage, error) {
	du := &types.DiskUsage{}
	var ctrs []container.Summary
	if kinds["image"] || kinds["container"] {
		var err error
		if ctrs, err = e.ContainerList(ctx, container.ListOptions{All: true, Size: kinds["container"]}); err != nil {
			return nil, err
		}
	}
	if kinds["container"] {
		du.Containers = []*container.Summary{}
		for i := range ctrs {
			du.Containers = append(du.Containers, &ctrs[i])
		}
	}
	if kinds["image"] {
		imgs, err := e.Images(ctx, imagetypes.ListOptions{Filters: filters.NewArgs()})
		if err != nil {
			return nil, err
		}
		uses := map[string]int64{}
		for _, c := range ctrs {
			uses[c.ImageID]++
		}
		// A layer shared by several images counts once in LayersSize and
		// as shared in each image.
		layerImages := map[digest.Digest]int{}
		layerSize := map[digest.Digest]int64{}
		imgLayers := map[string][]digest.Digest{}
		for _, im := range imgs {
			info, err := e.view.Image(digest.Digest(im.ID))
			if err != nil {
				continue
			}
			for _, l := range info.Config.RootFS.DiffIDs {
				if _, ok := layerSize[l]; !ok {
					layerSize[l], _ = e.shared.Store.LayerSize(l)
				}
				layerImages[l]++
				imgLayers[im.ID] = append(imgLayers[im.ID], l)
			}
		}
		for _, s := range layerSize {
			du.LayersSize += s
		}
		du.Images = []*imagetypes.Summary{}
		for i := range imgs {
			im := &imgs[i]
			im.Containers = uses[im.ID]
			im.SharedSize = 0
			for _, l := range imgLayers[im.ID] {
				if layerImages[l] > 1 {
					im.SharedSize += layerSize[l]
				}
			}
			du.Images = append(du.Images, im)
		}
	}
	if kinds["volume"] {
		vols, err := e.VolumeList(ctx, filters.NewArgs())
		if err != nil {
			return nil, err
		}
		du.Volumes = []*volume.Volume{}
		for _, v := range vols {
			v.UsageData = &volume.UsageData{Size: dirSize(v.Mountpoint), RefCount: int64(len(e.volumeUsers(v.Name)))}
			du.Volumes = append(du.Volumes, v)
		}
	}
	if kinds["build-cache"] {
		du.BuildCache = []*build.CacheRecord{}
	}
	return du, nil
}

// countContainers fills Info's container counts (dockerd's rules: a
// paused container counts as paused only, running ones include
// restarting).
func (e *Engine) countContainers(info *system.Info) {
	for _, c := range e.ctrs.All() {
		c.Lock()
		info.Containers++
		switch {
		case c.Meta.State.Running:
			info.ContainersRunning++
		default:
			info.ContainersStopped++
		}
		c.Unlock()
	}
}
