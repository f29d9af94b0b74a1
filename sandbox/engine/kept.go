package engine

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
// is about to mount the disk for its sandbox. s.disks.mu is held.
func (d *disks) takeOverKept(name string) {
	delete(d.kept, name)
}

// dropKept unmounts a reader's mount of name's disk, if any (the sandbox
// is going away).
func (s *Shared) dropKept(name string) {
	s.disks.mu.Lock()
	k := s.disks.kept[name]
	delete(s.disks.kept, name)
	s.disks.mu.Unlock()
	if k != nil {
		k.d.Close()
	}
}

// checkEnded refuses an operation on the files of a sandbox that runs.
func (s *Shared) checkEnded(op, name string) error {
	if !sandbox.ValidID(name) {
		return fmt.Errorf("%s sandbox %q: %w", op, name, sandbox.ErrInvalidID)
	}
	s.disks.mu.Lock()
	_, live := s.disks.views[name]
	s.disks.mu.Unlock()
	if live {
		return fmt.Errorf("%s sandbox %s: it is running", op, name)
	}
	return nil
}

// OpenWorkspace implements sandbox.WorkspaceOpener: the workspace of
// sandbox name (at workspace while it runs) to read or write now, and
// what to call when done.
func (p *Provider) OpenWorkspace(ctx context.Context, name, workspace string) (string, func(), error) {
	s := p.Shared
	nothing := func() {}
	dir := filepath.Dir(workspace)
	image := filepath.Join(dir, "disk.ext4")
	s.disks.mu.Lock()
	defer s.disks.mu.Unlock()
	if _, live := s.disks.views[name]; live {
		return workspace, nothing, nil
	}
	fi, err := os.Stat(image)
	if errors.Is(err, os.ErrNotExist) {
		return workspace, nothing, nil // no disk: the workspace is a directory
	}
	if err != nil {
		return "", nil, fmt.Errorf("workspace of sandbox %s: %w", name, err)
	}
	k := s.disks.kept[name]
	if k == nil {
		md, err := diskquota.Mount(ctx, image, filepath.Join(dir, "disk"), "", max(fi.Size(), diskquota.MinSize))
		if err != nil {
			return "", nil, fmt.Errorf("workspace of sandbox %s: mount its disk: %w", name, err)
		}
		k = &keptDisk{d: md}
		if s.disks.kept == nil {
			s.disks.kept = map[string]*keptDisk{}
		}
		s.disks.kept[name] = k
	}
	k.refs++
	var once sync.Once
	release := func() {
		once.Do(func() {
			s.disks.mu.Lock()
			defer s.disks.mu.Unlock()
			k.refs--
			if k.refs == 0 && s.disks.kept[name] == k {
				delete(s.disks.kept, name)
				k.d.Close()
			}
		})
	}
	return filepath.Join(k.d.Dir, "workspace"), release, nil
}

var _ sandbox.WorkspaceOpener = (*Provider)(nil)
