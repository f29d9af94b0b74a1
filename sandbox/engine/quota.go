package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/docker/go-units"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine/diskquota"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/opencontainers/go-digest"
)

// A sandbox's disk quota (Limits.Disk) bounds everything it writes: its
// workspace, its shell's and containers' writable layers and logs, its
// volumes and its build scratch (build contexts, RUN steps' layers) live
// on a file system of the quota's size (package diskquota: a loop-mounted
// ext4 image, DATA/sandboxes/<id>/disk.ext4 mounted at .../disk, the
// workspace a bind of .../disk/workspace), so a learner who fills it gets
// the kernel's "No space left on device" and nobody else notices. Images
// the sandbox builds, commits, loads or pulls live in the shared store
// (their blobs are shared and deduplicated): they are counted by
// accounting, the view's layers that are not the base images', when a
// layer is committed or an image loaded, and refused beyond the quota with
// the same words. Without loop devices (labd's container image) the disk
// is not mounted and the accounting covers everything (disk used by the
// workspace, containers and volumes, measured): the engine then refuses
// builds, commits, loads, copies and container starts beyond the quota,
// but a write in the shell itself is not stopped.
const (
	// DefaultSandboxDisk: 2 GiB. The images a lab builds on the shared
	// base images are a few MB to a few hundred; a learner's apt-get in a
	// build is the most. Files are sparse: 50 learners take what they
	// write, and 50 full sandboxes (100 GiB) fit this 252 GB disk.
	DefaultSandboxDisk int64 = 2 << 30
	// DefaultMaxSandboxDisk caps what a lab's front matter may ask for.
	DefaultMaxSandboxDisk int64 = 16 << 30
)

// diskQuota resolves the sandbox's quota: 0 is none.
func (l Limits) diskQuota(res sandbox.Resources) (quota int64, capped []string) {
	quota = pick(l.Disk, DefaultSandboxDisk)
	maxDisk := pick(l.MaxDisk, DefaultMaxSandboxDisk)
	if res.Disk > 0 {
		quota = res.Disk
		if maxDisk > 0 && quota > maxDisk {
			quota = maxDisk
			capped = append(capped, fmt.Sprintf("disk %s to %s", units.BytesSize(float64(res.Disk)), units.BytesSize(float64(maxDisk))))
		}
	}
	if quota > 0 && quota < diskquota.MinSize {
		quota = diskquota.MinSize
	}
	return quota, capped
}

// sandboxDisk is where a sandbox's engine keeps its files.
type sandboxDisk struct {
	root      string // the mounted file system; "" with accounting only
	workspace string
	quota     int64
}

// disks are the sandboxes' disks by view (Shared.Engine looks there).
type disks struct {
	mu    sync.Mutex
	views map[string]*sandboxDisk
	// kept are disks of ended sandboxes mounted for a while to read or
	// write their kept workspace (OpenWorkspace, kept.go): a sandbox's
	// disk is unmounted when it ends, so that ended sandboxes hold no
	// mount and no loop device.
	kept map[string]*keptDisk
	// dirs are the sandboxes' directories (DATA/sandboxes/<name>) by
	// name, as their disks were mounted there (sandboxDir).
	dirs  map[string]string
	avail error // diskquota.Available, once
	once  sync.Once
}

// mountDisk gives sandbox spec its disk before its engine opens, and
// returns what unmounts it (after the sandbox's containers have ended).
func (p *Provider) mountDisk(ctx context.Context, spec sandbox.Spec) (func() error, error) {
	s := p.Shared
	quota, capped := p.Limits.diskQuota(spec.Resources)
	if len(capped) > 0 {
		p.log().Warn("sandbox: the lab asks for more disk than this server's maximum; capped", "sandbox", spec.ID, "capped", capped[0])
	}
	if quota <= 0 || s.Runtime == nil {
		return func() error { return nil }, nil
	}
	d := &sandboxDisk{workspace: spec.Workspace, quota: quota}
	var unmountDisk func() error
	s.disks.once.Do(func() {
		if s.disks.avail = diskquota.Available(); s.disks.avail != nil {
			p.log().Warn("sandbox disks: no loop file systems, so disk quotas are kept by accounting: the engine refuses builds, loads and copies beyond them, but a learner's own writes are not stopped", "reason", s.disks.avail)
		}
	})
	if s.disks.avail == nil {
		dir := filepath.Dir(spec.Workspace)
		s.disks.mu.Lock()
		s.disks.takeOverKept(spec.ID) // Mount detaches it
		if s.disks.dirs == nil {
			s.disks.dirs = map[string]string{}
		}
		s.disks.dirs[spec.ID] = dir
		s.disks.mu.Unlock()
		md, err := diskquota.Mount(ctx, filepath.Join(dir, "disk.ext4"), filepath.Join(dir, "disk"), spec.Workspace, quota)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: its disk: %w", spec.ID, err)
		}
		d.root = md.Dir
		unmount := func() error {
			diskquota.Unmount(spec.Workspace)
			md.Close()
			return nil
		}
		if err := diskquota.BindWorkspace(ctx, filepath.Join(md.Dir, "workspace"), spec.Workspace); err != nil {
			_ = unmount()
			return nil, fmt.Errorf("sandbox %s: %w", spec.ID, err)
		}
		// Build scratch of a killed build; volumes made before quotas.
		errs := []error{sweepDir(filepath.Join(md.Dir, "build")),
			diskquota.MoveInto(ctx, filepath.Join(s.dir, "volumes", spec.ID), filepath.Join(md.Dir, "volumes"))}
		if err := errors.Join(errs...); err != nil {
			_ = unmount()
			return nil, fmt.Errorf("sandbox %s: its disk: %w", spec.ID, err)
		}
		unmountDisk = unmount
	}
	s.disks.mu.Lock()
	if s.disks.views == nil {
		s.disks.views = map[string]*sandboxDisk{}
	}
	s.disks.views[spec.ID] = d
	s.disks.mu.Unlock()
	return func() error {
		s.disks.mu.Lock()
		if s.disks.views[spec.ID] == d {
			delete(s.disks.views, spec.ID)
		}
		s.disks.mu.Unlock()
		if unmountDisk != nil {
			return unmountDisk()
		}
		return nil
	}, nil
}

// sandboxDir is sandbox name's directory: where its disk was mounted,
// else labd serve's layout (DATA/sandboxes beside DATA/engine).
func (s *Shared) sandboxDir(name string) string {
	s.disks.mu.Lock()
	defer s.disks.mu.Unlock()
	if d, ok := s.disks.dirs[name]; ok {
		return d
	}
	return filepath.Join(filepath.Dir(s.dir), "sandboxes", name)
}

func (s *Shared) diskOf(view string) *sandboxDisk {
	s.disks.mu.Lock()
	defer s.disks.mu.Unlock()
	return s.disks.views[view]
}

// containersDir is where e's new containers go: on the sandbox's disk.
// Containers made before it had one stay where they are.
func (e *Engine) containersDir() string {
	if e.disk != nil && e.disk.root != "" {
		return filepath.Join(e.disk.root, "containers")
	}
	return filepath.Join(e.shared.dir, "containers")
}

// volumesDir holds e's volumes.
func (e *Engine) volumesDir() string {
	if e.disk != nil && e.disk.root != "" {
		return filepath.Join(e.disk.root, "volumes")
	}
	return filepath.Join(e.shared.dir, "volumes", e.name)
}

// buildScratch is where e's builds unpack contexts and run steps.
func (s *Shared) buildScratch(view string) string {
	if d := s.diskOf(view); d != nil && d.root != "" {
		return filepath.Join(d.root, "build")
	}
	return s.buildDir()
}

// shellDir holds the writable layer of sandbox id's shell.
func (s *Shared) shellDir(id string) string {
	if d := s.diskOf(id); d != nil && d.root != "" {
		return filepath.Join(d.root, "shell")
	}
	return filepath.Join(s.dir, "shells", id)
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
	if d == nil || d.quota <= 0 {
		return nil
	}
	used := e.ownImageBytes()
	if d.root != "" {
		u, _, err := diskquota.Usage(d.root)
		if err == nil {
			used += u
		}
	} else {
		used += dirSize(d.workspace) + dirSize(e.volumesDir()) + e.containersBytes()
	}
	if used+adding > d.quota {
		return quotaError{quota: d.quota, used: used, adding: adding}
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
	if d.root != "" {
		if u, _, err := diskquota.Usage(d.root); err == nil {
			used += u
		}
	} else {
		used += dirSize(d.workspace) + dirSize(e.volumesDir()) + e.containersBytes()
	}
	return used, d.quota
}

// closeDisks unmounts the disks mounted for kept workspaces (Shared.Close:
// labd is stopping).
func (s *Shared) closeDisks() {
	s.disks.mu.Lock()
	kept := s.disks.kept
	s.disks.kept = nil
	s.disks.mu.Unlock()
	for _, k := range kept {
		k.d.Close()
	}
}

// sweepDisks unmounts every sandbox disk a killed labd left (no sandbox
// outlives labd; each is mounted again when its sandbox is next made).
func sweepDisks(sandboxesDir string) {
	ents, _ := os.ReadDir(sandboxesDir)
	for _, ent := range ents {
		dir := filepath.Join(sandboxesDir, ent.Name())
		diskquota.Unmount(filepath.Join(dir, "workspace"))
		diskquota.Unmount(filepath.Join(dir, "disk"))
	}
}
