package enginebox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine/diskquota"
)

// An ended sandbox's workspace lives in its disk image, unmounted: the
// instructor's Files view of it mounts the disk while it reads, and the
// last reader unmounts it again. A sandbox started meanwhile takes the
// mount over (its own Mount replaces it); the readers' release then
// leaves it alone.

// keptDisk is a disk mounted for OpenWorkspace.
type keptDisk struct {
	d    *diskquota.Disk
	refs int
}

// takeOverKept forgets name's kept mount, if any: the caller (mountDisk)
// is about to mount the disk for its sandbox. p.disks.mu is held.
func (d *disks) takeOverKept(name string) {
	delete(d.kept, name)
}

// dropKept unmounts a reader's mount of name's disk, if any (the sandbox
// is going away).
func (p *Provider) dropKept(name string) {
	p.disks.mu.Lock()
	k := p.disks.kept[name]
	delete(p.disks.kept, name)
	p.disks.mu.Unlock()
	if k != nil {
		k.d.Close()
	}
}

// checkEnded refuses an operation on the files of a sandbox that runs.
func (p *Provider) checkEnded(op, name string) error {
	if !sandbox.ValidID(name) {
		return fmt.Errorf("%s sandbox %q: %w", op, name, sandbox.ErrInvalidID)
	}
	p.disks.mu.Lock()
	_, live := p.disks.views[name]
	p.disks.mu.Unlock()
	if live {
		return fmt.Errorf("%s sandbox %s: it is running", op, name)
	}
	return nil
}

// OpenWorkspace implements sandbox.WorkspaceOpener: the workspace of
// sandbox name (at workspace while it runs) to read or write now, and
// what to call when done.
func (p *Provider) OpenWorkspace(ctx context.Context, name, workspace string) (string, func(), error) {
	nothing := func() {}
	dir := filepath.Dir(workspace)
	image := filepath.Join(dir, "disk.ext4")
	p.disks.mu.Lock()
	defer p.disks.mu.Unlock()
	if _, live := p.disks.views[name]; live {
		return workspace, nothing, nil
	}
	fi, err := os.Stat(image)
	if errors.Is(err, os.ErrNotExist) {
		return workspace, nothing, nil // no disk: the workspace is a directory
	}
	if err != nil {
		return "", nil, fmt.Errorf("workspace of sandbox %s: %w", name, err)
	}
	k := p.disks.kept[name]
	if k == nil {
		md, err := diskquota.Mount(ctx, image, filepath.Join(dir, "disk"), "", max(fi.Size(), diskquota.MinSize))
		if err != nil {
			return "", nil, fmt.Errorf("workspace of sandbox %s: mount its disk: %w", name, err)
		}
		k = &keptDisk{d: md}
		// Mounts still kept when labd stops go with the engine.
		p.closeOnce.Do(func() { p.Shared.OnClose(p.closeDisks) })
		if p.disks.kept == nil {
			p.disks.kept = map[string]*keptDisk{}
		}
		p.disks.kept[name] = k
	}
	k.refs++
	var once sync.Once
	release := func() {
		once.Do(func() {
			p.disks.mu.Lock()
			defer p.disks.mu.Unlock()
			k.refs--
			if k.refs == 0 && p.disks.kept[name] == k {
				delete(p.disks.kept, name)
				k.d.Close()
			}
		})
	}
	return filepath.Join(k.d.Dir, "workspace"), release, nil
}

var _ sandbox.WorkspaceOpener = (*Provider)(nil)
