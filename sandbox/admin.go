package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// What an instructor sees of a class's sandboxes and may do to them
// (`labd admin sandboxes`, the instructor page): their use of the machine,
// and their removal with the learner's files.

// Usage is what a sandbox uses of the machine now.
type Usage struct {
	// Cgroup says Memory, CPUSeconds and Pids were read from the
	// sandbox's cgroup; false: unknown (a sandbox without one).
	Cgroup      bool    `json:"cgroup"`
	Memory      int64   `json:"memory_bytes"`       // charged now, page cache and tmpfs included
	MemoryLimit int64   `json:"memory_limit_bytes"` // 0: none
	CPUSeconds  float64 `json:"cpu_seconds"`        // since the sandbox was made
	Pids        int64   `json:"pids"`
	PidsLimit   int64   `json:"pids_limit"` // 0: none
	// Disk is what its files take: its disk's used bytes where it has one
	// (DiskQuota), else what a walk of its workspace found.
	Disk      int64 `json:"disk_bytes"`
	DiskQuota int64 `json:"disk_quota_bytes"` // 0: none
	// DiskWalked: Disk was measured by walking the workspace (no disk of
	// its own); DiskPartial: the walk stopped at its bound, Disk is less
	// than the whole.
	DiskWalked  bool `json:"disk_walked,omitempty"`
	DiskPartial bool `json:"disk_partial,omitempty"`
}

// UsageReporter is a Sandbox that can tell its Usage (the engine's).
type UsageReporter interface {
	Usage(ctx context.Context) (Usage, error)
}

// FileRemover is a Provider that keeps something of a sandbox beyond its
// directory (DATA/sandboxes/<name>) after Destroy: RemoveFiles releases
// it, so that the directory can go. name is the sandbox's own name
// (Spec.ID), not the learner's id it may have been given to.
type FileRemover interface {
	RemoveFiles(ctx context.Context, name string) error
}

// ErrBusy is returned (wrapped) when a sandbox cannot be stopped or
// removed now: it is being made, or it was started again meanwhile.
var ErrBusy = errors.New("sandbox busy")

// Instance is the name under which sandbox id's files live: id itself, or
// the warm sandbox it was once given (DATA/sandboxes/<id> is then a link).
func (m *Manager) Instance(id string) string { return m.instance(id) }

// Removed says what Remove took away.
type Removed struct {
	Stopped bool     // it was running and was destroyed first
	Paths   []string // what was removed from the data dir
}

// Remove destroys sandbox id if it runs (ReasonAdmin) and removes its
// files: its directory with the workspace, and for a sandbox that was
// warm the link by id and the warm sandbox's directory. ErrNotFound when
// there is neither a sandbox nor a directory; ErrBusy while it is being
// made, or when its learner started it again before the files went
// (nothing of the new one is removed).
func (m *Manager) Remove(ctx context.Context, id string) (Removed, error) {
	var out Removed
	if !ValidID(id) {
		return out, fmt.Errorf("remove sandbox %q: %w", id, ErrInvalidID)
	}
	if in, ok := m.Info(id); ok {
		if !in.Ready {
			return out, fmt.Errorf("remove sandbox %s: it is being made, try again in a moment: %w", id, ErrBusy)
		}
		if err := m.Destroy(ctx, id, ReasonAdmin); err != nil {
			return out, err
		}
		out.Stopped = true
	}
	sandboxes := filepath.Join(m.opts.DataDir, "sandboxes")
	link := filepath.Join(sandboxes, id)
	name := m.instance(id)
	dir := filepath.Join(sandboxes, name)
	if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
		if out.Stopped {
			return out, nil
		}
		return out, fmt.Errorf("sandbox %s: %w", id, ErrNotFound)
	}
	if _, ok := m.Info(id); ok {
		return out, fmt.Errorf("remove sandbox %s: its learner opened it again: %w", id, ErrBusy)
	}
	if fr, ok := m.p.(FileRemover); ok {
		if err := fr.RemoveFiles(ctx, name); err != nil {
			return out, fmt.Errorf("remove sandbox %s: %w", id, err)
		}
	}
	// A mount left in it (a provider that kept one) would go with the
	// rename and never be unmounted: refuse, saying which.
	if ms := mountsUnder(dir); len(ms) > 0 {
		return out, fmt.Errorf("remove sandbox %s: still mounted: %s", id, strings.Join(ms, ", "))
	}
	// The link first: a learner coming back meanwhile gets a fresh
	// directory by id, never the half-removed warm one.
	if name != id {
		if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
			return out, fmt.Errorf("remove sandbox %s: %w", id, err)
		}
		out.Paths = append(out.Paths, link)
	}
	// Renamed away before the (long) removal, so that a sandbox made by
	// id meanwhile never finds half of the old files.
	trash := filepath.Join(sandboxes, fmt.Sprintf(".removed-%s-%d", name, time.Now().UnixNano()))
	if err := os.Rename(dir, trash); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		return out, fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return out, fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	out.Paths = append(out.Paths, dir)
	return out, nil
}

// DirSize adds up the bytes of the files under dir (hard links once),
// visiting at most maxEntries entries or until ctx ends: partial then
// says the sum is short. It does not follow links nor cross into other
// file systems.
func DirSize(ctx context.Context, dir string, maxEntries int) (size int64, partial bool, err error) {
	root, err := os.Lstat(dir)
	if err != nil {
		return 0, false, err
	}
	dev := uint64(0)
	if st, ok := root.Sys().(*syscall.Stat_t); ok {
		dev = uint64(st.Dev)
	}
	seen := map[uint64]bool{}
	n := 0
	stop := errors.New("stop")
	werr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile, or unreadable: not counted
		}
		n++
		if n > maxEntries || (n%1024 == 0 && ctx.Err() != nil) {
			partial = true
			return stop
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if d.IsDir() {
			if ok && uint64(st.Dev) != dev {
				return filepath.SkipDir
			}
			return nil
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		if ok && st.Nlink > 1 {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		if ok {
			// Allocated, not apparent, size: a sparse file of 30 GB that
			// holds nothing takes nothing (du, not ls -l).
			size += st.Blocks * 512
		} else {
			size += fi.Size()
		}
		return nil
	})
	if werr != nil && werr != stop {
		return size, partial, werr
	}
	return size, partial, nil
}

// mountsUnder lists the mount points at or below dir in this process's
// mount namespace.
func mountsUnder(dir string) []string {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r // mountinfo has resolved paths
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// Field 5 is the mount point, with space, tab, newline and
		// backslash as octal escapes.
		mp := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// WorkspaceOpener is a Provider whose ended sandboxes' workspaces need
// preparing before they can be read (the engine's live on a disk image,
// unmounted when the sandbox ends). name is the sandbox's own name.
type WorkspaceOpener interface {
	OpenWorkspace(ctx context.Context, name, workspace string) (dir string, release func(), err error)
}

// OpenWorkspace returns the directory of sandbox id's workspace to read
// or write now, running or ended, and what to call when done.
func (m *Manager) OpenWorkspace(ctx context.Context, id string) (string, func(), error) {
	if sb, _, ok := m.Get(id); ok {
		return sb.Workspace(), func() {}, nil
	}
	name := m.instance(id)
	ws := m.WorkspaceDir(name)
	if o, ok := m.p.(WorkspaceOpener); ok {
		return o.OpenWorkspace(ctx, name, ws)
	}
	return ws, func() {}, nil
}
