package engine

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/labd/labd/sandbox/engine/ctr"
)

// What a view keeps under the engine's directory (DATA/engine) once its
// sandbox has ended: the sandbox provider (sandbox/enginebox) removes it
// when a sandbox is reset or its files are removed, and a warm sandbox
// nobody was given leaves nothing.

// ForgetView releases what the engine keeps for a view whose sandbox is
// gone for good: its uid range (remap.go) and its records. Exported for
// the sandbox provider (sandbox/enginebox).
func (s *Shared) ForgetView(id string) error {
	var errs []error
	if s.UserNSEnabled() {
		pool, err := s.idPool()
		if err == nil {
			err = pool.Release(id)
		}
		errs = append(errs, err)
	}
	if err := os.Remove(filepath.Join(s.dir, "records", id+".jsonl")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ResetView removes what view keeps under the engine's directory, off
// any disk of its sandbox: its containers' and volumes' files, the view
// itself (its images and tags) and its records, so that its next engine
// is a fresh one. Exported for the sandbox provider (sandbox/enginebox,
// "Reset my sandbox"); the caller makes sure no engine of view is open.
func (s *Shared) ResetView(name string) error {
	var errs []error
	ctrs := ctr.NewStore(ctr.Hooks{})
	errs = append(errs, ctrs.Load(filepath.Join(s.dir, "containers"), name))
	for _, c := range ctrs.All() {
		errs = append(errs, os.RemoveAll(c.Dir))
	}
	errs = append(errs, os.RemoveAll(filepath.Join(s.dir, "volumes", name)),
		s.Store.RemoveView(name))
	if err := os.Remove(filepath.Join(s.dir, "records", name+".jsonl")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
