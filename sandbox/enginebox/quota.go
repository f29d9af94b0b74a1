package enginebox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/docker/go-units"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/diskquota"
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
// the same words (the engine's accounting, sandbox/engine/quota.go, of the
// engine.Disk the provider gives each sandbox's engine). Without loop devices (labd's container image) the disk
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

// disks are the sandboxes' disks by view (create gives each engine its
// own: Shared.EngineOnDisk).
type disks struct {
	mu    sync.Mutex
	views map[string]*engine.Disk
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
	d := &engine.Disk{Workspace: spec.Workspace, Quota: quota}
	var unmountDisk func() error
	p.disks.once.Do(func() {
		if p.disks.avail = diskquota.Available(); p.disks.avail != nil {
			p.log().Warn("sandbox disks: no loop file systems, so disk quotas are kept by accounting: the engine refuses builds, loads and copies beyond them, but a learner's own writes are not stopped", "reason", p.disks.avail)
		}
	})
	if p.disks.avail == nil {
		dir := filepath.Dir(spec.Workspace)
		p.disks.mu.Lock()
		p.disks.takeOverKept(spec.ID) // Mount detaches it
		if p.disks.dirs == nil {
			p.disks.dirs = map[string]string{}
		}
		p.disks.dirs[spec.ID] = dir
		p.disks.mu.Unlock()
		md, err := diskquota.Mount(ctx, filepath.Join(dir, "disk.ext4"), filepath.Join(dir, "disk"), spec.Workspace, quota)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: its disk: %w", spec.ID, err)
		}
		d.Root = md.Dir
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
		errs := []error{engine.SweepDir(filepath.Join(md.Dir, "build")),
			diskquota.MoveInto(ctx, filepath.Join(s.Dir(), "volumes", spec.ID), filepath.Join(md.Dir, "volumes"))}
		if err := errors.Join(errs...); err != nil {
			_ = unmount()
			return nil, fmt.Errorf("sandbox %s: its disk: %w", spec.ID, err)
		}
		unmountDisk = unmount
	}
	p.disks.mu.Lock()
	if p.disks.views == nil {
		p.disks.views = map[string]*engine.Disk{}
	}
	p.disks.views[spec.ID] = d
	p.disks.mu.Unlock()
	return func() error {
		p.disks.mu.Lock()
		if p.disks.views[spec.ID] == d {
			delete(p.disks.views, spec.ID)
		}
		p.disks.mu.Unlock()
		if unmountDisk != nil {
			return unmountDisk()
		}
		return nil
	}, nil
}

// sandboxDir is sandbox name's directory: where its disk was mounted,
// else labd serve's layout (DATA/sandboxes beside DATA/engine).
func (p *Provider) sandboxDir(name string) string {
	p.disks.mu.Lock()
	defer p.disks.mu.Unlock()
	if d, ok := p.disks.dirs[name]; ok {
		return d
	}
	return filepath.Join(filepath.Dir(p.Shared.Dir()), "sandboxes", name)
}

func (p *Provider) diskOf(view string) *engine.Disk {
	p.disks.mu.Lock()
	defer p.disks.mu.Unlock()
	return p.disks.views[view]
}

// shellDir holds the writable layer of sandbox id's shell.
func (p *Provider) shellDir(id string) string {
	if d := p.diskOf(id); d != nil && d.Root != "" {
		return filepath.Join(d.Root, "shell")
	}
	return filepath.Join(p.Shared.Dir(), "shells", id)
}

// closeDisks unmounts the disks mounted for kept workspaces (Shared.Close,
// through Shared.OnClose: labd is stopping).
func (p *Provider) closeDisks() {
	p.disks.mu.Lock()
	kept := p.disks.kept
	p.disks.kept = nil
	p.disks.mu.Unlock()
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
