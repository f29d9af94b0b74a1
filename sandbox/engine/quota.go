package engine

import (
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/docker/go-units"
	"github.com/labd/labd/sandbox/engine/diskquota"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/opencontainers/go-digest"
)

// Disk is a sandbox's disk as its engine sees it: where the engine keeps
// its containers, volumes and build scratch, and the quota it accounts
// images against. The sandbox provider (sandbox/enginebox) mounts the
// disk and owns the table of them; it hands each engine its own when
// the engine opens (Shared.EngineOnDisk). Without a mounted file system
// (no loop devices) the accounting covers everything: the engine then
// refuses builds, commits, loads, copies and container starts beyond the
// quota (checkDisk).
type Disk struct {
	Root      string // the mounted file system; "" with accounting only
	Workspace string
	Quota     int64
}

// containersDir is where e's new containers go: on the sandbox's disk.
// Containers made before it had one stay where they are.
func (e *Engine) containersDir() string {
	if e.disk != nil && e.disk.Root != "" {
		return filepath.Join(e.disk.Root, "containers")
	}
	return filepath.Join(e.shared.dir, "containers")
}

// volumesDir holds e's volumes.
func (e *Engine) volumesDir() string {
	if e.disk != nil && e.disk.Root != "" {
		return filepath.Join(e.disk.Root, "volumes")
	}
	return filepath.Join(e.shared.dir, "volumes", e.name)
}

// buildScratch is where the builds of an engine on disk d unpack
// contexts and run steps.
func (s *Shared) buildScratch(d *Disk) string {
	if d != nil && d.Root != "" {
		return filepath.Join(d.Root, "build")
	}
	return s.buildDir()
}

// ErrDiskQuota is what a write beyond a sandbox's disk quota is (as
// errors.Is): ENOSPC, the learner's "no space left on device".
var ErrDiskQuota = syscall.ENOSPC

// quotaError says which limit, its value and what to do, in Docker's
// words for a full disk.
type quotaError struct{ quota, used, adding int64 }

func (q quotaError) Error() string {
	return fmt.Sprintf("write /var/lib/docker: no space left on device: this sandbox's disk quota is %s (--sandbox-disk) and its files, containers, volumes and images use %s; this needs %s more: remove what you no longer need (rm in your home, docker image prune, docker system prune)",
		units.BytesSize(float64(q.quota)), units.BytesSize(float64(q.used)), units.BytesSize(float64(q.adding)))
}
func (quotaError) Is(err error) bool { return err == syscall.ENOSPC }

// checkDisk refuses adding bytes to the sandbox's images when its disk
// use and its own images would then exceed its quota.
func (e *Engine) checkDisk(adding int64) error {
	d := e.disk
	if d == nil || d.Quota <= 0 {
		return nil
	}
	used := e.ownImageBytes()
	if d.Root != "" {
		u, _, err := diskquota.Usage(d.Root)
		if err == nil {
			used += u
		}
	} else {
		used += dirSize(d.Workspace) + dirSize(e.volumesDir()) + e.containersBytes()
	}
	if used+adding > d.Quota {
		return quotaError{quota: d.Quota, used: used, adding: adding}
	}
	return nil
}

// containersBytes is what e's containers hold on disk (accounting only).
func (e *Engine) containersBytes() int64 {
	var n int64
	for _, c := range e.ctrs.All() {
		c.Lock()
		dir := c.Dir
		c.Unlock()
		n += dirSize(dir)
	}
	return n
}

// ownImageBytes is the size of the layers e's images have that no base
// image has: what the sandbox built, committed, loaded or pulled.
func (e *Engine) ownImageBytes() int64 {
	base := map[digest.Digest]bool{}
	if bv, err := e.shared.Store.View(image.BaseView); err == nil && bv != e.view {
		for _, l := range viewLayers(bv) {
			base[l] = true
		}
	}
	var n int64
	seen := map[digest.Digest]bool{}
	for _, l := range viewLayers(e.view) {
		if base[l] || seen[l] {
			continue
		}
		seen[l] = true
		if s, err := e.shared.Store.LayerSize(l); err == nil {
			n += s
		}
	}
	return n
}

func viewLayers(v *image.View) []digest.Digest {
	var out []digest.Digest
	for _, im := range v.List(true) {
		info, err := v.Image(digest.Digest(im.ID))
		if err != nil {
			continue
		}
		out = append(out, info.Config.RootFS.DiffIDs...)
	}
	return out
}

// DiskUsage reports sandbox view's disk: bytes used (its file system and
// its own images) and its quota (0: none).
func (e *Engine) DiskUsage() (used, quota int64) {
	d := e.disk
	if d == nil {
		return 0, 0
	}
	used = e.ownImageBytes()
	if d.Root != "" {
		if u, _, err := diskquota.Usage(d.Root); err == nil {
			used += u
		}
	} else {
		used += dirSize(d.Workspace) + dirSize(e.volumesDir()) + e.containersBytes()
	}
	return used, d.Quota
}
