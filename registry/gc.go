package registry

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// GCOptions tune a garbage collection.
type GCOptions struct {
	// RemoveUntagged also deletes manifests no tag points to (and then
	// their blobs), as `registry garbage-collect --delete-untagged`.
	RemoveUntagged bool
	DryRun         bool
}

// GCResult says what a collection removed.
type GCResult struct {
	BlobsBefore, BlobsAfter int
	BytesBefore, BytesAfter int64
	Took                    time.Duration
}

func (g GCResult) String() string {
	return fmt.Sprintf("%d blobs removed (%d bytes), %d kept (%d bytes) in %s",
		g.BlobsBefore-g.BlobsAfter, g.BytesBefore-g.BytesAfter, g.BlobsAfter, g.BytesAfter, g.Took.Round(time.Millisecond))
}

// GC collects the running registry's unreferenced blobs. Writes wait
// while it runs (reads go on), and it waits for writes in progress.
// A push between its blobs and its manifest is not a write in progress:
// scheduled collections wait for GCIdle without writes for that reason;
// call GC directly only when no push is under way.
func (r *Registry) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	r.gate.Lock()
	defer r.gate.Unlock()
	return markAndSweep(ctx, r.storage, opts)
}

// GC collects the registry in dir (DATA/registry) while no labd serves
// it; it fails with ErrLocked if one does.
func GC(ctx context.Context, dir string, opts GCOptions) (GCResult, error) {
	lock, err := lockDir(dir)
	if err != nil {
		return GCResult{}, err
	}
	defer lock.Close()
	return markAndSweep(ctx, filepath.Join(dir, "storage"), opts)
}

func markAndSweep(ctx context.Context, root string, opts GCOptions) (GCResult, error) {
	start := time.Now()
	var res GCResult
	var err error
	res.BlobsBefore, res.BytesBefore, err = countBlobs(root)
	if err != nil {
		return res, err
	}
	driver := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100})
	ns, err := storage.NewRegistry(ctx, driver, storage.EnableDelete)
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	if err := storage.MarkAndSweep(ctx, driver, ns, storage.GCOpts{
		DryRun: opts.DryRun, RemoveUntagged: opts.RemoveUntagged, Quiet: true,
	}); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	res.BlobsAfter, res.BytesAfter, err = countBlobs(root)
	res.Took = time.Since(start)
	return res, err
}

// countBlobs counts the stored blobs and their bytes; a file stored
// under two digests (hard links, see digests.go) is two blobs but its
// bytes count once.
func countBlobs(root string) (int, int64, error) {
	var n int
	var size int64
	files := map[fileID]bool{}
	err := filepath.WalkDir(filepath.Join(root, "docker", "registry", "v2", "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return ignoreMissing(err)
		}
		if !d.IsDir() && d.Name() == "data" {
			fi, err := d.Info()
			if err != nil {
				return ignoreMissing(err)
			}
			n++
			if id, ok := idOf(fi); ok {
				if files[id] {
					return nil
				}
				files[id] = true
			}
			size += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("count blobs: %w", err)
	}
	return n, size, nil
}

// gcStamp records when the last collection ran, so restarts do not
// postpone the schedule.
func (r *Registry) gcStamp() string { return filepath.Join(r.opts.Dir, "gc.stamp") }

// gcLoop runs due collections once no write has come for GCIdle.
func (r *Registry) gcLoop() {
	defer r.wg.Done()
	last := time.Now()
	if fi, err := os.Stat(r.gcStamp()); err == nil {
		last = fi.ModTime()
	} else {
		os.WriteFile(r.gcStamp(), nil, 0o600)
	}
	tick := min(r.opts.GCIdle, r.opts.GCInterval, time.Minute)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		if time.Since(last) < r.opts.GCInterval || time.Since(time.Unix(0, r.lastWrite.Load())) < r.opts.GCIdle {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-r.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		res, err := r.GC(ctx, GCOptions{})
		cancel()
		last = time.Now()
		os.Chtimes(r.gcStamp(), last, last)
		if err != nil {
			r.log.Error("registry gc", "err", err)
			continue
		}
		r.log.Info("registry gc", "removed_blobs", res.BlobsBefore-res.BlobsAfter, "removed_bytes", res.BytesBefore-res.BytesAfter, "took", res.Took)
	}
}
