package enginebox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine/diskquota"
)

// What an instructor sees of a sandbox (`labd admin sandboxes`): its
// cgroup's counters and limits, and its disk.

var (
	_ sandbox.UsageReporter = (*engineSandbox)(nil)
	_ sandbox.FileRemover   = (*Provider)(nil)
)

// usageWalkMax bounds the walk of a workspace without a disk of its own:
// a listing of fifty sandboxes stays quick whatever a learner unpacked.
const usageWalkMax = 200_000

// Usage implements sandbox.UsageReporter: memory, CPU and processes from
// the sandbox's cgroup (its shell, containers and build steps together),
// disk from its disk (quota.go) or, without one, a bounded walk of its
// workspace.
func (s *engineSandbox) Usage(ctx context.Context) (sandbox.Usage, error) {
	var u sandbox.Usage
	if s.group != nil {
		gu, err := s.group.Usage()
		if err != nil {
			return u, err
		}
		u.Cgroup = true
		u.Memory, u.Pids = int64(gu.Memory), int64(gu.Pids)
		u.CPUSeconds = float64(gu.CPU) / 1e9
		u.MemoryLimit, u.PidsLimit = groupLimits(s.group.Dirs())
	}
	if used, quota := s.eng.DiskUsage(); quota > 0 {
		u.Disk, u.DiskQuota = used, quota
		return u, nil
	}
	if ws := s.workspace(); ws != "" {
		n, partial, err := sandbox.DirSize(ctx, ws, usageWalkMax)
		if err != nil {
			return u, fmt.Errorf("disk use of sandbox %s: %w", s.id, err)
		}
		u.Disk, u.DiskWalked, u.DiskPartial = n, true, partial
	}
	return u, nil
}

// workspace is the shell's workspace ("" before the shell exists).
func (s *engineSandbox) workspace() string {
	if s.Sandbox == nil {
		return ""
	}
	return s.Workspace()
}

// groupLimits reads the memory and pids limits of a cgroup (dirs as
// runtime.Group.Dirs: by controller on v1, "" on v2); 0 where there is
// none or it cannot be read.
func groupLimits(dirs map[string]string) (memory, pids int64) {
	read := func(dir, file string) int64 {
		if dir == "" {
			return 0
		}
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return 0
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// "max" (v2), or v1's page-rounded "unlimited" (near MaxInt64).
		if err != nil || v <= 0 || v >= 1<<62 {
			return 0
		}
		return v
	}
	if d, ok := dirs[""]; ok && d != "" && dirs["memory"] == "" {
		return read(d, "memory.max"), read(d, "pids.max")
	}
	return read(dirs["memory"], "memory.limit_in_bytes"), read(dirs["pids"], "pids.max")
}

// RemoveFiles implements sandbox.FileRemover: a mount of the destroyed
// sandbox's disk for a reader (kept.go) is undone here, and whatever a
// killed labd left mounted in the sandbox's directory with it, so that
// the directory (disk image included) can be removed. A sandbox that had
// a disk kept its containers, volumes and shell layer on it: its uid
// range and its records go too (forget). Refused while the
// sandbox runs. What stays under DATA/engine: the sandbox's view (its
// images and tags; the engine has no removal of a view), and without a
// disk its containers' and volumes' files and its uid range, whose ids
// those files carry.
func (p *Provider) RemoveFiles(ctx context.Context, name string) error {
	s := p.Shared
	if err := p.checkEnded("remove files of", name); err != nil {
		return err
	}
	dir := p.sandboxDir(name)
	_, statErr := os.Stat(filepath.Join(dir, "disk.ext4"))
	hadDisk := statErr == nil
	var errs []error
	if hadDisk {
		errs = append(errs, p.forget(name)) // a reader's mount of the disk first
	} else {
		p.dropKept(name)
	}
	diskquota.Unmount(filepath.Join(dir, "workspace"))
	diskquota.Unmount(filepath.Join(dir, "disk"))
	if err := ctx.Err(); err != nil {
		return err
	}
	// The shell's writable layer of a sandbox without a disk.
	if err := os.RemoveAll(filepath.Join(s.Dir(), "shells", name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove files of sandbox %s: %w", name, err)
	}
	return nil
}
