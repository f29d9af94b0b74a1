package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// manifestItem is one entry of a docker-save manifest.json.
type manifestItem struct {
	Config   string
	RepoTags []string
	Layers   []string
	Parent   digest.Digest `json:",omitempty"`
}

// archive is a loaded outer tar staged on disk: regular files under
// their index, links resolved by name, never by the host filesystem.
type archive struct {
	dir   string
	files map[string]string // clean name -> staged path
	links map[string]string // clean name -> symlink target (as written)
}

func stageArchive(ctx context.Context, r io.Reader, dir string) (*archive, error) {
	a := &archive{dir: dir, files: map[string]string{}, links: map[string]string{}}
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return a, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		name, err := cleanArchivePath(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeXGlobalHeader:
		case tar.TypeReg:
			p := filepath.Join(dir, strconv.Itoa(n))
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("read archive %s: %w", name, err)
			}
			a.files[name] = p
		case tar.TypeSymlink:
			a.links[name] = hdr.Linkname
		case tar.TypeLink:
			target, err := cleanArchivePath(hdr.Linkname)
			if err != nil {
				return nil, err
			}
			p, ok := a.files[target]
			if !ok {
				return nil, fmt.Errorf("invalid archive: hard link %q to missing %q", hdr.Name, hdr.Linkname)
			}
			a.files[name] = p
		default:
			return nil, fmt.Errorf("invalid archive: unexpected entry %q (type %q)", hdr.Name, hdr.Typeflag)
		}
	}
}

func cleanArchivePath(name string) (string, error) {
	c := path.Clean(name)
	if path.IsAbs(c) || c == ".." || len(c) >= 3 && c[:3] == "../" {
		return "", fmt.Errorf("invalid archive: path %q outside the archive", name)
	}
	return c, nil
}

// open returns a staged file, following symlinks inside the archive only.
func (a *archive) open(name string) (*os.File, error) {
	c, err := cleanArchivePath(name)
	if err != nil {
		return nil, err
	}
	for range 16 {
		if p, ok := a.files[c]; ok {
			return os.Open(p)
		}
		t, ok := a.links[c]
		if !ok {
			return nil, fmt.Errorf("invalid archive: %s missing", name)
		}
		if path.IsAbs(t) {
			return nil, fmt.Errorf("invalid archive: %s links outside the archive", name)
		}
		if c, err = cleanArchivePath(path.Join(path.Dir(c), t)); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("invalid archive: too many links at %s", name)
}

func (a *archive) readFile(name string, limit int64) ([]byte, error) {
	f, err := a.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("invalid archive: %s too large", name)
	}
	return b, nil
}

func (a *archive) has(name string) bool {
	_, f := a.files[name]
	_, l := a.links[name]
	return f || l
}

const maxJSON = 16 << 20

// loadedImage is an image of the archive, stored but not yet visible.
type loadedImage struct {
	id     digest.Digest
	tags   []reference.NamedTagged
	parent digest.Digest
	config *Config
}

// Load imports a docker-save tar (manifest.json) or an OCI-layout tar
// (index.json) into the view, like docker load, and calls out with
// Docker's lines ("Loaded image: busybox:latest\n", or "Loaded image ID:
// sha256:…\n" for an untagged image). The archive is checked completely
// (paths, digests, diffIDs) before anything becomes visible; on error no
// image or tag is added (stored layers are left for GC).
func (v *View) Load(ctx context.Context, r io.Reader, out func(string)) error {
	if out == nil {
		out = func(string) {}
	}
	done := v.s.begin()
	dir, err := v.s.stageDir("load-")
	if err != nil {
		done()
		return fmt.Errorf("load: %w", err)
	}
	defer os.RemoveAll(dir)
	a, err := stageArchive(ctx, r, dir)
	var imgs []loadedImage
	if err == nil {
		switch {
		case a.has("manifest.json"):
			imgs, err = v.loadDockerSave(ctx, a)
		case a.has("index.json"):
			imgs, err = v.loadOCI(ctx, a)
		default:
			err = errors.New("invalid archive: no manifest.json or index.json")
		}
	}
	done()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}

	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	ids := map[digest.Digest]bool{}
	for _, im := range imgs {
		ids[im.id] = true
	}
	var lines []string
	for _, im := range imgs {
		parent := im.parent
		if parent != "" && !ids[parent] {
			parent = "" // moby keeps a parent link only inside the archive
		}
		m := ImageMeta{Parent: parent, Created: im.config.Created}
		if old, ok := v.st.Images[im.id]; ok {
			m.BuiltLocally = old.BuiltLocally
			if m.Parent == "" {
				m.Parent = old.Parent
			}
		}
		v.addLocked(im.id, m)
		refs := v.refsLocked(v.imagesLocked())
		for _, t := range im.tags {
			if old, ok := refs[t.String()]; ok && old != im.id {
				lines = append(lines, fmt.Sprintf("The image %s already exists, renaming the old one with ID %s to empty string\n", reference.FamiliarString(t), old))
			}
			v.st.Refs[t.String()] = im.id
			delete(v.st.HiddenRefs, t.String())
			lines = append(lines, fmt.Sprintf("Loaded image: %s\n", reference.FamiliarString(t)))
		}
		if len(im.tags) == 0 {
			lines = append(lines, fmt.Sprintf("Loaded image ID: %s\n", im.id))
		}
	}
	if err := v.saveLocked(); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	for _, l := range lines {
		out(l)
	}
	return nil
}

func parseTags(tags []string) ([]reference.NamedTagged, error) {
	var out []reference.NamedTagged
	for _, t := range tags {
		named, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			return nil, fmt.Errorf("invalid tag %q: %w", t, err)
		}
		tagged, ok := named.(reference.NamedTagged)
		if !ok {
			return nil, fmt.Errorf("invalid tag %q", t)
		}
		out = append(out, tagged)
	}
	return out, nil
}

func (v *View) loadDockerSave(ctx context.Context, a *archive) ([]loadedImage, error) {
	b, err := a.readFile("manifest.json", maxJSON)
	if err != nil {
		return nil, err
	}
	var items []manifestItem
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, fmt.Errorf("invalid manifest.json: %w", err)
	}
	var out []loadedImage
	// Check everything cheap first so a bad entry stores nothing.
	type item struct {
		raw  []byte
		cfg  *Config
		tags []reference.NamedTagged
	}
	checked := make([]item, len(items))
	for i, m := range items {
		raw, err := a.readFile(m.Config, maxJSON)
		if err != nil {
			return nil, err
		}
		cfg, err := ParseConfig(raw)
		if err != nil {
			return nil, err
		}
		if len(m.Layers) != len(cfg.DiffIDs()) {
			return nil, fmt.Errorf("invalid manifest, layers length mismatch: expected %d, got %d", len(cfg.DiffIDs()), len(m.Layers))
		}
		for _, l := range m.Layers {
			f, err := a.open(l)
			if err != nil {
				return nil, err
			}
			f.Close()
		}
		tags, err := parseTags(m.RepoTags)
		if err != nil {
			return nil, err
		}
		checked[i] = item{raw: raw, cfg: cfg, tags: tags}
	}
	for i, m := range items {
		for j, l := range m.Layers {
			want := checked[i].cfg.DiffIDs()[j]
			// Every layer is read and hashed, also one the store holds:
			// the store is shared by every learner, so a diffID the
			// archive claims proves nothing, and skipping known layers
			// would tell which ones another learner has.
			f, err := a.open(l)
			if err != nil {
				return nil, err
			}
			info, err := v.s.putMaybeCompressed(ctx, f)
			f.Close()
			if err != nil {
				return nil, err
			}
			if info.DiffID != want {
				return nil, fmt.Errorf("invalid diffID for layer %d: expected %q, got %q", j, want, info.DiffID)
			}
		}
		id, err := v.s.PutImage(ctx, checked[i].raw)
		if err != nil {
			return nil, err
		}
		out = append(out, loadedImage{id: id, tags: checked[i].tags, parent: m.Parent, config: checked[i].cfg})
	}
	return out, nil
}

// putMaybeCompressed stores a layer tar given plain or gzip-compressed.
func (s *Store) putMaybeCompressed(ctx context.Context, r io.Reader) (LayerInfo, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(2)
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return LayerInfo{}, fmt.Errorf("layer: %w", err)
		}
		defer zr.Close()
		return s.PutLayer(ctx, zr)
	}
	return s.PutLayer(ctx, br)
}

func (v *View) loadOCI(ctx context.Context, a *archive) ([]loadedImage, error) {
	b, err := a.readFile("index.json", maxJSON)
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("invalid index.json: %w", err)
	}
	var out []loadedImage
	var walk func(descs []ocispec.Descriptor, depth int) error
	walk = func(descs []ocispec.Descriptor, depth int) error {
		if depth > 4 {
			return errors.New("invalid archive: nested indexes too deep")
		}
		for _, d := range descs {
			switch d.MediaType {
			case ocispec.MediaTypeImageIndex, "application/vnd.docker.distribution.manifest.list.v2+json":
				raw, err := a.readBlob(d)
				if err != nil {
					return err
				}
				var sub ocispec.Index
				if err := json.Unmarshal(raw, &sub); err != nil {
					return fmt.Errorf("invalid index %s: %w", d.Digest, err)
				}
				// A nested index names its images through the parent's annotations.
				for i := range sub.Manifests {
					if sub.Manifests[i].Annotations == nil {
						sub.Manifests[i].Annotations = d.Annotations
					}
				}
				if err := walk(sub.Manifests, depth+1); err != nil {
					return err
				}
			case ocispec.MediaTypeImageManifest, "application/vnd.docker.distribution.manifest.v2+json":
				if d.Platform != nil && d.Platform.OS != "" && d.Platform.OS != "linux" {
					continue
				}
				im, err := v.loadOCIManifest(ctx, a, d)
				if err != nil {
					return err
				}
				out = append(out, im)
			}
		}
		return nil
	}
	if err := walk(idx.Manifests, 0); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("invalid archive: no image manifest in index.json")
	}
	return out, nil
}

// readBlob reads a small blob of an OCI layout and checks its digest.
func (a *archive) readBlob(d ocispec.Descriptor) ([]byte, error) {
	if err := validDigest(d.Digest); err != nil {
		return nil, fmt.Errorf("invalid archive: %w", err)
	}
	raw, err := a.readFile(path.Join("blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()), maxJSON)
	if err != nil {
		return nil, err
	}
	if got := digest.FromBytes(raw); got != d.Digest {
		return nil, fmt.Errorf("invalid archive: blob %s has digest %s", d.Digest, got)
	}
	return raw, nil
}

func (v *View) loadOCIManifest(ctx context.Context, a *archive, d ocispec.Descriptor) (loadedImage, error) {
	raw, err := a.readBlob(d)
	if err != nil {
		return loadedImage{}, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return loadedImage{}, fmt.Errorf("invalid manifest %s: %w", d.Digest, err)
	}
	rawCfg, err := a.readBlob(m.Config)
	if err != nil {
		return loadedImage{}, err
	}
	cfg, err := ParseConfig(rawCfg)
	if err != nil {
		return loadedImage{}, err
	}
	if len(m.Layers) != len(cfg.DiffIDs()) {
		return loadedImage{}, fmt.Errorf("invalid manifest, layers length mismatch: expected %d, got %d", len(cfg.DiffIDs()), len(m.Layers))
	}
	for j, l := range m.Layers {
		want := cfg.DiffIDs()[j]
		if err := validDigest(l.Digest); err != nil {
			return loadedImage{}, fmt.Errorf("invalid archive: %w", err)
		}
		f, err := a.open(path.Join("blobs", "sha256", l.Digest.Encoded()))
		if err != nil {
			return loadedImage{}, err
		}
		// Always stored and hashed, as in loadDockerSave.
		h := sha256.New()
		info, err := v.s.putMaybeCompressed(ctx, io.TeeReader(f, h))
		if err == nil {
			_, err = io.Copy(h, f) // the rest after the compressed stream
		}
		f.Close()
		if err != nil {
			return loadedImage{}, err
		}
		if got := digest.NewDigest(digest.SHA256, h); got != l.Digest {
			return loadedImage{}, fmt.Errorf("invalid archive: layer blob %s has digest %s", l.Digest, got)
		}
		if info.DiffID != want {
			return loadedImage{}, fmt.Errorf("invalid diffID for layer %d: expected %q, got %q", j, want, info.DiffID)
		}
	}
	var tags []string
	if n := d.Annotations["io.containerd.image.name"]; n != "" {
		tags = append(tags, n)
	} else if n := d.Annotations[ocispec.AnnotationRefName]; n != "" {
		if _, err := reference.ParseNormalizedNamed(n); err == nil {
			if named, _ := reference.ParseNormalizedNamed(n); named != nil {
				if _, ok := named.(reference.NamedTagged); ok {
					tags = append(tags, n)
				}
			}
		}
	}
	parsed, err := parseTags(tags)
	if err != nil {
		return loadedImage{}, err
	}
	id, err := v.s.PutImage(ctx, rawCfg)
	if err != nil {
		return loadedImage{}, err
	}
	return loadedImage{id: id, tags: parsed, config: cfg}, nil
}
