package enginebox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/labd/labd/sandbox/engine/diskquota"
	"github.com/labd/labd/sandbox/engine/mountinfo"
)

// ResetFiles implements sandbox.Resetter ("Reset my sandbox"): what an
// ended sandbox keeps of its engine goes — its images and tags (the
// view), containers, volumes, records and the shell's writable layer —
// so that its next start is a fresh engine. With keepWorkspace the
// workspace (and the disk holding it) stays; without, the sandbox's
// directory goes too. Refused while the sandbox runs.
func (p *Provider) ResetFiles(ctx context.Context, name string, keepWorkspace bool) error {
	s := p.Shared
	if err := p.checkEnded("reset", name); err != nil {
		return err
	}
	dir := p.sandboxDir(name)
	var errs []error
	if keepWorkspace {
		errs = append(errs, clearDisk(ctx, dir))
	} else {
		errs = append(errs, p.RemoveFiles(ctx, name), p.forget(name))
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	// What lives beside the disk (or everything, without one): the
	// engine's containers, volumes, view and records, and the shell's
	// layer.
	errs = append(errs, s.ResetView(name),
		os.RemoveAll(filepath.Join(s.Dir(), "shells", name)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset sandbox %s: %w", name, err)
	}
	return nil
}

// clearDisk empties the engine's part of a sandbox's disk (containers,
// volumes, shell layer, build scratch), keeping its workspace: mounted
// for the moment, unless a reader has it mounted.
func clearDisk(ctx context.Context, dir string) error {
	image := filepath.Join(dir, "disk.ext4")
	fi, err := os.Stat(image)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no disk: nothing of the engine in the directory
	}
	if err != nil {
		return err
	}
	mnt := filepath.Join(dir, "disk")
	if !mountinfo.IsMount(mnt) {
		d, err := diskquota.Mount(ctx, image, mnt, "", max(fi.Size(), diskquota.MinSize))
		if err != nil {
			return fmt.Errorf("mount its disk: %w", err)
		}
		defer d.Close()
	}
	var errs []error
	for _, sub := range []string{"containers", "volumes", "shell", "build"} {
		errs = append(errs, os.RemoveAll(filepath.Join(mnt, sub)))
	}
	return errors.Join(errs...)
}
