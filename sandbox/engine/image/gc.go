package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// GCReport says what GC removed.
type GCReport struct {
	Blobs  int   // blobs removed
	Layers int   // extracted layer directories removed
	Bytes  int64 // blob bytes freed
}

// GC removes blobs and layer directories that no view references, and
// staging leftovers. What this process stored but has not yet added to a
// view (a build in progress) is kept until the store is reopened.
func (s *Store) GC(ctx context.Context) (GCReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rep GCReport
	if s.readOnly {
		// It would remove the writer's blobs not yet in a view.
		return rep, fmt.Errorf("gc: %w", s.errReadOnly())
	}
	keep := map[digest.Digest]bool{}
	for d := range s.fresh {
		keep[d] = true
	}
	entries, err := os.ReadDir(s.path("views"))
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		st, err := readViewFile(s.path("views", e.Name()))
		if err != nil {
			// A view we cannot read may reference anything: keep all.
			return rep, fmt.Errorf("gc: view %s: %w", name, err)
		}
		for id := range st.Images {
			keep[id] = true
			c, err := s.configLocked(id)
			if err != nil {
				continue
			}
			for _, d := range c.DiffIDs() {
				keep[d] = true
			}
		}
	}
	blobs, err := os.ReadDir(s.path("blobs", "sha256"))
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	for _, b := range blobs {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, b.Name())
		if keep[d] {
			continue
		}
		info, _ := b.Info()
		if err := os.Remove(s.blobPath(d)); err != nil {
			return rep, fmt.Errorf("gc: %w", err)
		}
		rep.Blobs++
		if info != nil {
			rep.Bytes += info.Size()
		}
		delete(s.configs, d)
	}
	layers, err := os.ReadDir(s.path("layers"))
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	for _, l := range layers {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		hex := strings.TrimSuffix(l.Name(), ".json")
		d := digest.NewDigestFromEncoded(digest.SHA256, hex)
		if keep[d] {
			continue
		}
		delete(s.layers, d)
		if err := os.RemoveAll(filepath.Join(s.path("layers"), l.Name())); err != nil {
			return rep, fmt.Errorf("gc: %w", err)
		}
		if l.IsDir() {
			rep.Layers++
		}
	}
	if s.active == 0 {
		tmp, _ := os.ReadDir(s.path("tmp"))
		for _, t := range tmp {
			_ = os.RemoveAll(filepath.Join(s.path("tmp"), t.Name()))
		}
	}
	return rep, nil
}
