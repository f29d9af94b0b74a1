package image

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/labd/labd/sandbox/engine/layer"
)

// BaseView is the view whose images every other view shows as pulled.
const BaseView = "base"

// Store is the shared on-disk image store. It is safe for concurrent use
// by the goroutines of one process (one mutex guards the metadata; layer
// extraction runs outside it). Two processes must not open the same
// directory at once.
type Store struct {
	root string

	mu      sync.Mutex
	views   map[string]*View
	configs map[digest.Digest]*Config // parsed config cache
	layers  map[digest.Digest]int64   // diffID -> size, for layers present
	// fresh holds what this process wrote that no view references yet
	// (a build in progress): GC keeps it until the process ends.
	fresh map[digest.Digest]struct{}
	// active counts staging operations running outside mu; GC empties
	// tmp/ only when there are none.
	active int
	// readOnly: opened by OpenReadOnly, in a directory another process
	// may be writing; nothing may be staged, written or removed.
	readOnly bool
}

// LayerInfo describes a stored layer.
type LayerInfo struct {
	DiffID digest.Digest
	// Size is dockerd's layer size (docker history, docker images): the
	// sizes of the extracted non-directory entries, hard links once.
	Size int64
	// Empty reports a change-less layer (EmptyTarDiffID); builders record
	// such a step as empty_layer and leave it out of rootfs.diff_ids.
	Empty bool
}

// Open opens (creating if needed) the store in dir, normally
// <data>/engine, and removes staging leftovers of a killed process.
func Open(dir string) (*Store, error) {
	s := &Store{
		root:    dir,
		views:   map[string]*View{},
		configs: map[digest.Digest]*Config{},
		layers:  map[digest.Digest]int64{},
		fresh:   map[digest.Digest]struct{}{},
	}
	if err := os.RemoveAll(s.path("tmp")); err != nil {
		return nil, fmt.Errorf("open image store: clean tmp: %w", err)
	}
	for _, d := range []string{"blobs/sha256", "layers", "views", "tmp"} {
		if err := os.MkdirAll(s.path(d), 0o700); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	return s, nil
}

// OpenReadOnly opens the existing store in dir for reading only (labd
// test --data copies base images out of it) without its lock: it removes
// nothing (tmp/ may hold the staging files of the process writing the
// store, e.g. labd serve), creates nothing, and every write, Load or GC
// fails with ErrReadOnly. What it reads was committed by rename (blobs
// are content-addressed, view files replaced whole), so a concurrent
// writer never shows it a partial file; an image the writer deletes
// meanwhile makes the read fail, not the store.
func OpenReadOnly(dir string) (*Store, error) {
	for _, d := range []string{"blobs/sha256", "layers", "views"} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no image store in %s (no %s): %w", dir, d, fs.ErrNotExist)
		}
		if err != nil {
			return nil, fmt.Errorf("open image store %s: %w", dir, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("open image store %s: %s is not a directory", dir, d)
		}
	}
	return &Store{
		root:     dir,
		views:    map[string]*View{},
		configs:  map[digest.Digest]*Config{},
		layers:   map[digest.Digest]int64{},
		fresh:    map[digest.Digest]struct{}{},
		readOnly: true,
	}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.root }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *Store) blobPath(d digest.Digest) string { return s.path("blobs", "sha256", d.Encoded()) }

func validDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest %q: only sha256 is supported", d)
	}
	return nil
}

// tempFile creates a staging file in tmp/. Every write to the store
// stages through it or stageDir, so those two refuse a read-only store.
func (s *Store) tempFile() (*os.File, error) {
	if s.readOnly {
		return nil, s.errReadOnly()
	}
	return os.CreateTemp(s.path("tmp"), "blob-")
}

// stageDir creates a staging directory in tmp/.
func (s *Store) stageDir(prefix string) (string, error) {
	if s.readOnly {
		return "", s.errReadOnly()
	}
	return os.MkdirTemp(s.path("tmp"), prefix)
}

func (s *Store) errReadOnly() error { return fmt.Errorf("%s: %w", s.root, ErrReadOnly) }

// begin marks a staging operation; call the returned func when done.
func (s *Store) begin() func() {
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	}
}

// PutBlob stores r's bytes content-addressed and returns their digest and
// length; storing existing content writes nothing new.
func (s *Store) PutBlob(r io.Reader) (digest.Digest, int64, error) {
	defer s.begin()()
	f, err := s.tempFile()
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	d := digest.NewDigest(digest.SHA256, h)
	if err := s.commitBlob(f.Name(), d); err != nil {
		return "", 0, err
	}
	return d, n, nil
}

// commitBlob renames a complete, synced staging file to its blob path
// unless the blob exists already.
func (s *Store) commitBlob(tmp string, d digest.Digest) error {
	dst := s.blobPath(d)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("put blob %s: %w", d, err)
	}
	return syncDir(filepath.Dir(dst))
}

// OpenBlob opens a stored blob.
func (s *Store) OpenBlob(d digest.Digest) (*os.File, error) {
	if err := validDigest(d); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	return f, err
}

// HasBlob reports whether a blob is stored.
func (s *Store) HasBlob(d digest.Digest) bool {
	if validDigest(d) != nil {
		return false
	}
	_, err := os.Stat(s.blobPath(d))
	return err == nil
}

// LayerDir returns the extracted directory of a layer, to be used as an
// overlay lowerdir. It does not check that the layer exists.
func (s *Store) LayerDir(diffID digest.Digest) string { return s.path("layers", diffID.Encoded()) }

// OpenLayer opens a layer's uncompressed tar (for save and push).
func (s *Store) OpenLayer(diffID digest.Digest) (io.ReadCloser, error) {
	if _, err := s.LayerSize(diffID); err != nil {
		return nil, err
	}
	return s.OpenBlob(diffID)
}

type layerMeta struct {
	Size int64 `json:"size"`
}

// LayerSize returns a present layer's size (see LayerInfo.Size).
func (s *Store) LayerSize(diffID digest.Digest) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.layerSizeLocked(diffID)
}

func (s *Store) layerSizeLocked(diffID digest.Digest) (int64, error) {
	if err := validDigest(diffID); err != nil {
		return 0, err
	}
	if size, ok := s.layers[diffID]; ok {
		return size, nil
	}
	// A layer is present when its blob, its metadata and its directory
	// are: the directory is renamed into place last.
	b, err := os.ReadFile(s.LayerDir(diffID) + ".json")
	if err == nil {
		var m layerMeta
		if err = json.Unmarshal(b, &m); err == nil {
			if _, err = os.Stat(s.LayerDir(diffID)); err == nil && s.HasBlob(diffID) {
				s.layers[diffID] = m.Size
				return m.Size, nil
			}
		}
	}
	return 0, fmt.Errorf("layer %s: %w", diffID, ErrNotFound)
}

// HasLayer reports whether a layer is fully stored.
func (s *Store) HasLayer(diffID digest.Digest) bool {
	_, err := s.LayerSize(diffID)
	return err == nil
}

// PutLayer stores an uncompressed layer tar: its blob and its extracted
// directory. Storing an existing layer writes nothing new.
func (s *Store) PutLayer(ctx context.Context, r io.Reader) (LayerInfo, error) {
	defer s.begin()()
	f, err := s.tempFile()
	if err != nil {
		return LayerInfo{}, fmt.Errorf("put layer: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	dir, err := s.stageDir("layer-")
	if err != nil {
		return LayerInfo{}, fmt.Errorf("put layer: %w", err)
	}
	defer os.RemoveAll(dir)
	h := sha256.New()
	size, err := layer.Apply(ctx, io.TeeReader(r, io.MultiWriter(f, h)), dir)
	if err != nil {
		return LayerInfo{}, fmt.Errorf("put layer: %w", err)
	}
	diffID := digest.NewDigest(digest.SHA256, h)
	return s.commitLayer(f, dir, diffID, size)
}

// CommitLayer turns a container's overlay upper directory into a stored
// layer (Diff, then extract). An unchanged upper directory gives
// Empty=true and stores nothing.
func (s *Store) CommitLayer(ctx context.Context, upperDir string) (LayerInfo, error) {
	return s.CommitShiftedLayer(ctx, upperDir, nil)
}

// CommitShiftedLayer is CommitLayer for the upper directory of a
// container that ran in a user namespace: its owners are host ids, shifted
// back (layer.DiffShifted) so the layer is the one the same change makes
// without one. A nil shift is CommitLayer.
func (s *Store) CommitShiftedLayer(ctx context.Context, upperDir string, shift *layer.IDShift) (LayerInfo, error) {
	defer s.begin()()
	f, err := s.tempFile()
	if err != nil {
		return LayerInfo{}, fmt.Errorf("commit layer: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var diffID digest.Digest
	if shift != nil {
		diffID, _, err = layer.DiffShifted(ctx, upperDir, f, *shift)
	} else {
		diffID, _, err = layer.Diff(ctx, upperDir, f)
	}
	if err != nil {
		return LayerInfo{}, fmt.Errorf("commit layer: %w", err)
	}
	if diffID == EmptyTarDiffID {
		return LayerInfo{DiffID: diffID, Empty: true}, nil
	}
	if size, err := s.LayerSize(diffID); err == nil {
		s.markFresh(diffID)
		return LayerInfo{DiffID: diffID, Size: size}, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return LayerInfo{}, fmt.Errorf("commit layer: %w", err)
	}
	dir, err := s.stageDir("layer-")
	if err != nil {
		return LayerInfo{}, fmt.Errorf("commit layer: %w", err)
	}
	defer os.RemoveAll(dir)
	size, err := layer.Apply(ctx, f, dir)
	if err != nil {
		return LayerInfo{}, fmt.Errorf("commit layer: %w", err)
	}
	return s.commitLayer(f, dir, diffID, size)
}

// commitLayer moves a staged tar and extracted directory into place:
// blob, then metadata, then the directory (the commit point).
func (s *Store) commitLayer(f *os.File, dir string, diffID digest.Digest, size int64) (LayerInfo, error) {
	info := LayerInfo{DiffID: diffID, Size: size, Empty: diffID == EmptyTarDiffID}
	s.markFresh(diffID)
	if s.HasLayer(diffID) {
		return info, nil
	}
	if err := f.Sync(); err != nil {
		return LayerInfo{}, fmt.Errorf("put layer %s: %w", diffID, err)
	}
	if err := s.commitBlob(f.Name(), diffID); err != nil {
		return LayerInfo{}, err
	}
	meta, _ := json.Marshal(layerMeta{Size: size})
	if err := s.writeFileAtomic(s.LayerDir(diffID)+".json", meta); err != nil {
		return LayerInfo{}, fmt.Errorf("put layer %s: %w", diffID, err)
	}
	// Another goroutine may have committed the same layer meanwhile.
	if err := os.Rename(dir, s.LayerDir(diffID)); err != nil && !s.HasLayer(diffID) {
		return LayerInfo{}, fmt.Errorf("put layer %s: %w", diffID, err)
	}
	if err := syncDir(s.path("layers")); err != nil {
		return LayerInfo{}, fmt.Errorf("put layer %s: %w", diffID, err)
	}
	s.mu.Lock()
	s.layers[diffID] = size
	s.mu.Unlock()
	return info, nil
}

func (s *Store) markFresh(d digest.Digest) {
	s.mu.Lock()
	s.fresh[d] = struct{}{}
	s.mu.Unlock()
}

// PutImage stores an image config exactly as given and returns the image
// ID. Every layer it lists must be stored already. The image becomes
// visible only when a view adds it (View.Add, Load).
func (s *Store) PutImage(ctx context.Context, rawConfig []byte) (digest.Digest, error) {
	c, err := ParseConfig(rawConfig)
	if err != nil {
		return "", err
	}
	for _, d := range c.DiffIDs() {
		if !s.HasLayer(d) {
			return "", fmt.Errorf("put image: layer %s: %w", d, ErrNotFound)
		}
	}
	id, _, err := s.PutBlob(strings.NewReader(string(rawConfig)))
	if err != nil {
		return "", fmt.Errorf("put image: %w", err)
	}
	s.mu.Lock()
	s.configs[id] = c
	s.fresh[id] = struct{}{}
	s.mu.Unlock()
	return id, nil
}

// RawConfig returns an image's config bytes.
func (s *Store) RawConfig(id digest.Digest) ([]byte, error) {
	f, err := s.OpenBlob(id)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Config returns an image's parsed config (shared: do not modify it;
// copy it first, e.g. through RawConfig and ParseConfig).
func (s *Store) Config(id digest.Digest) (*Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.configLocked(id)
}

func (s *Store) configLocked(id digest.Digest) (*Config, error) {
	if c, ok := s.configs[id]; ok {
		return c, nil
	}
	if err := validDigest(id); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(s.blobPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	c, err := ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	s.configs[id] = c
	return c, nil
}

// Layers returns the layer directories of an image for an overlay
// lowerdir, top layer first.
func (s *Store) Layers(id digest.Digest) ([]string, error) {
	c, err := s.Config(id)
	if err != nil {
		return nil, err
	}
	ids := c.DiffIDs()
	dirs := make([]string, 0, len(ids))
	for i := len(ids) - 1; i >= 0; i-- {
		if !s.HasLayer(ids[i]) {
			return nil, fmt.Errorf("image %s: layer %s: %w", id, ids[i], ErrNotFound)
		}
		dirs = append(dirs, s.LayerDir(ids[i]))
	}
	return dirs, nil
}

// imageSize is dockerd's image size: the sum of its layers' sizes.
func (s *Store) imageSize(c *Config) int64 {
	var n int64
	for _, d := range c.DiffIDs() {
		size, _ := s.LayerSize(d)
		n += size
	}
	return n
}

// writeFileAtomic writes data to path via tmp/, fsync and rename.
func (s *Store) writeFileAtomic(path string, data []byte) error {
	f, err := s.tempFile()
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
