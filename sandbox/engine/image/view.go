package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// View is the part of the store one Docker daemon would show: tags and
// images with their store metadata. Views share blobs and layers. A View
// is safe for concurrent use.
type View struct {
	s    *Store
	name string
	st   viewState  // guarded by s.mu
	ctrs Containers // guarded by s.mu
}

type viewState struct {
	// Refs maps a normalised reference (docker.io/library/busybox:latest,
	// or name@sha256:… for repo digests) to an image ID.
	Refs   map[string]digest.Digest    `json:"refs"`
	Images map[digest.Digest]ImageMeta `json:"images"`
	// Hidden base images and references, removed in this view only.
	Hidden     map[digest.Digest]bool `json:"hidden,omitempty"`
	HiddenRefs map[string]bool        `json:"hidden_refs,omitempty"`
	// LastTagTime is when Tag last named each image: dockerd's image
	// metadata "lastUpdated", shown by inspect as Metadata.LastTagTime.
	LastTagTime map[digest.Digest]time.Time `json:"last_tag_time,omitempty"`
}

// ImageMeta is what the store keeps about an image beside its config.
type ImageMeta struct {
	// Parent is the image this one was built on (classic builder, commit,
	// or a docker-save manifest's Parent); "" for pulled/loaded bases.
	Parent digest.Digest `json:"parent,omitempty"`
	// BuiltLocally marks images the classic cache may use.
	BuiltLocally bool `json:"built_locally,omitempty"`
	// Created is the config's created time (cached).
	Created time.Time `json:"created"`
}

// Containers tells the store which containers use an image, for delete
// conflicts; the engine sets it with SetContainers.
type Containers interface {
	// ContainersUsing lists the view's containers created from image id.
	ContainersUsing(id digest.Digest) []ContainerUse
}

// ContainerUse is one container using an image.
type ContainerUse struct {
	ID      string
	Running bool
}

var viewNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// View returns the named view, loading it from disk the first time.
// Views are created empty on first use.
func (s *Store) View(name string) (*View, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewLocked(name)
}

func (s *Store) viewLocked(name string) (*View, error) {
	if v, ok := s.views[name]; ok {
		return v, nil
	}
	if !viewNameRE.MatchString(name) {
		return nil, fmt.Errorf("view name %q: invalid", name)
	}
	v := &View{s: s, name: name}
	st, err := readViewFile(s.path("views", name+".json"))
	if err != nil {
		return nil, fmt.Errorf("view %s: %w", name, err)
	}
	v.st = st
	s.views[name] = v
	return v, nil
}

func readViewFile(path string) (viewState, error) {
	st := viewState{}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return st, err
	}
	if err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return st, err
		}
	}
	if st.Refs == nil {
		st.Refs = map[string]digest.Digest{}
	}
	if st.Images == nil {
		st.Images = map[digest.Digest]ImageMeta{}
	}
	if st.Hidden == nil {
		st.Hidden = map[digest.Digest]bool{}
	}
	if st.HiddenRefs == nil {
		st.HiddenRefs = map[string]bool{}
	}
	if st.LastTagTime == nil {
		st.LastTagTime = map[digest.Digest]time.Time{}
	}
	return st, nil
}

// Name returns the view's name.
func (v *View) Name() string { return v.name }

// Store returns the store the view belongs to.
func (v *View) Store() *Store { return v.s }

// SetContainers installs the hook used for "image is being used by
// container" conflicts.
func (v *View) SetContainers(c Containers) {
	v.s.mu.Lock()
	v.ctrs = c
	v.s.mu.Unlock()
}

func (v *View) saveLocked() error {
	b, err := json.Marshal(v.st)
	if err != nil {
		return err
	}
	if err := v.s.writeFileAtomic(v.s.path("views", v.name+".json"), b); err != nil {
		return fmt.Errorf("save view %s: %w", v.name, err)
	}
	return nil
}

// base returns the base view's state, or nil for the base view itself.
func (v *View) baseLocked() *viewState {
	if v.name == BaseView {
		return nil
	}
	b, err := v.s.viewLocked(BaseView)
	if err != nil {
		return nil
	}
	return &b.st
}

// imagesLocked returns the images visible in the view.
func (v *View) imagesLocked() map[digest.Digest]ImageMeta {
	out := make(map[digest.Digest]ImageMeta, len(v.st.Images))
	if b := v.baseLocked(); b != nil {
		for id, m := range b.Images {
			if !v.st.Hidden[id] {
				m.BuiltLocally = false
				out[id] = m
			}
		}
	}
	for id, m := range v.st.Images {
		out[id] = m
	}
	return out
}

// refsLocked returns the references visible in the view.
func (v *View) refsLocked(images map[digest.Digest]ImageMeta) map[string]digest.Digest {
	out := make(map[string]digest.Digest, len(v.st.Refs))
	if b := v.baseLocked(); b != nil {
		for r, id := range b.Refs {
			if _, ok := images[id]; ok && !v.st.HiddenRefs[r] {
				out[r] = id
			}
		}
	}
	for r, id := range v.st.Refs {
		out[r] = id
	}
	return out
}

// Add makes a stored image (PutImage) visible in the view with its store
// metadata. Adding an image again updates its metadata.
func (v *View) Add(id, parent digest.Digest, builtLocally bool) error {
	c, err := v.s.Config(id)
	if err != nil {
		return fmt.Errorf("add image: %w", err)
	}
	for _, d := range c.DiffIDs() {
		if !v.s.HasLayer(d) {
			return fmt.Errorf("add image %s: layer %s: %w", id, d, ErrNotFound)
		}
	}
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	v.addLocked(id, ImageMeta{Parent: parent, BuiltLocally: builtLocally, Created: c.Created})
	return v.saveLocked()
}

func (v *View) addLocked(id digest.Digest, m ImageMeta) {
	v.st.Images[id] = m
	delete(v.st.Hidden, id)
}

// Tag points ref (name[:tag], normalised; tag "latest" by default) at an
// image visible in the view, moving the tag if it exists, and records the
// image's LastTagTime: dockerd's TagImageWithReference, behind `docker
// tag` and `docker build -t`.
func (v *View) Tag(id digest.Digest, ref string) error {
	return v.tag(id, ref, true)
}

// AddTag is Tag without the LastTagTime: dockerd's pull and load add to
// the reference store only, so their images inspect with a zero
// Metadata.LastTagTime.
func (v *View) AddTag(id digest.Digest, ref string) error {
	return v.tag(id, ref, false)
}

func (v *View) tag(id digest.Digest, ref string, stamp bool) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return &invalidRefError{err: fmt.Errorf("invalid reference format: %w", stripRefPrefix(err))}
	}
	if _, ok := named.(reference.Canonical); ok {
		return &invalidRefError{err: errors.New("refusing to create a tag with a digest reference")}
	}
	return v.addRef(id, reference.TagNameOnly(named), stamp)
}

// AddRepoDigest records name@sha256:… for an image (after a push or pull).
func (v *View) AddRepoDigest(id digest.Digest, ref string) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return &invalidRefError{err: err}
	}
	c, ok := named.(reference.Canonical)
	if !ok {
		return &invalidRefError{err: fmt.Errorf("%s: not a digest reference", ref)}
	}
	return v.addRef(id, c, false)
}

func (v *View) addRef(id digest.Digest, named reference.Named, stamp bool) error {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	if _, ok := v.imagesLocked()[id]; !ok {
		return noSuchImage(id.String())
	}
	v.st.Refs[named.String()] = id
	delete(v.st.HiddenRefs, named.String())
	if stamp {
		v.st.LastTagTime[id] = time.Now().UTC()
	}
	return v.saveLocked()
}

// Untag removes a reference from the view without deleting the image.
func (v *View) Untag(ref string) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return &invalidRefError{err: err}
	}
	if _, ok := named.(reference.Canonical); !ok {
		named = reference.TagNameOnly(named)
	}
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	if _, ok := v.refsLocked(v.imagesLocked())[named.String()]; !ok {
		return noSuchImage(reference.FamiliarString(named))
	}
	v.removeRefLocked(named.String())
	return v.saveLocked()
}

func (v *View) removeRefLocked(r string) {
	delete(v.st.Refs, r)
	if b := v.baseLocked(); b != nil {
		if _, ok := b.Refs[r]; ok {
			v.st.HiddenRefs[r] = true
		}
	}
}

// Resolve finds an image the way dockerd does: a full ID (with or without
// "sha256:"), a reference (name[:tag], name@digest), then a unique ID
// prefix. Unknown or ambiguous prefixes give ErrNotFound with Docker's
// "No such image: X" (dockerd 20.10 reports an ambiguous image prefix as
// not found too); a malformed name gives ErrInvalidReference.
func (v *View) Resolve(refOrID string) (digest.Digest, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return v.resolveLocked(refOrID)
}

func (v *View) resolveLocked(refOrID string) (digest.Digest, error) {
	images := v.imagesLocked()
	ref, err := reference.ParseAnyReference(refOrID)
	if err != nil {
		return "", &invalidRefError{err: fmt.Errorf("invalid reference format: %w", stripRefPrefix(err))}
	}
	named, ok := ref.(reference.Named)
	if !ok {
		dg, ok := ref.(reference.Digested)
		if ok {
			if _, found := images[dg.Digest()]; found {
				return dg.Digest(), nil
			}
		}
		return "", noSuchImage(reference.FamiliarString(ref))
	}
	key := named
	if _, canonical := named.(reference.Canonical); canonical {
		if t, tagged := named.(reference.Tagged); tagged {
			_ = t
			c := named.(reference.Canonical)
			key, _ = reference.WithDigest(reference.TrimNamed(c), c.Digest())
		}
	} else {
		key = reference.TagNameOnly(named)
	}
	if id, ok := v.refsLocked(images)[key.String()]; ok {
		return id, nil
	}
	if id, ok := searchPrefix(images, refOrID); ok {
		return id, nil
	}
	return "", noSuchImage(reference.FamiliarString(key))
}

// searchPrefix is moby's digestset lookup: a full sha256 digest, or a
// unique hex prefix of an ID.
func searchPrefix(images map[digest.Digest]ImageMeta, term string) (digest.Digest, bool) {
	if term == "" {
		return "", false
	}
	if d, err := digest.Parse(term); err == nil {
		_, ok := images[d]
		return d, ok
	}
	if strings.Contains(term, ":") {
		return "", false
	}
	var found digest.Digest
	for id := range images {
		if strings.HasPrefix(id.Encoded(), term) {
			if found != "" {
				return "", false
			}
			found = id
		}
	}
	return found, found != ""
}

// reference's errors read "invalid reference format: repository name
// must be lowercase"; keep one prefix.
func stripRefPrefix(err error) error {
	if errors.Is(err, reference.ErrNameContainsUppercase) || strings.HasSuffix(err.Error(), "must be lowercase") {
		// dockerd 20.10's wording, without the name newer versions add.
		return reference.ErrNameContainsUppercase
	}
	msg := strings.TrimPrefix(err.Error(), "invalid reference format: ")
	msg = strings.TrimPrefix(msg, "invalid reference format")
	if msg == "" {
		return errors.New("invalid reference format")
	}
	return errors.New(msg)
}

// ImageInfo is an image as seen in a view.
type ImageInfo struct {
	ID           digest.Digest
	Config       *Config // shared: do not modify
	Parent       digest.Digest
	BuiltLocally bool
	Created      time.Time
	Size         int64     // sum of layer sizes
	RepoTags     []string  // familiar, sorted
	RepoDigests  []string  // familiar, sorted
	LastTagTime  time.Time // last Tag of the image (zero if never)
}

// Image returns an image visible in the view.
func (v *View) Image(id digest.Digest) (ImageInfo, error) {
	c, err := v.s.Config(id)
	if err != nil {
		return ImageInfo{}, noSuchImage(id.String())
	}
	v.s.mu.Lock()
	images := v.imagesLocked()
	m, ok := images[id]
	var tags, digests []string
	var tagged time.Time
	if ok {
		tags, digests = refsOf(v.refsLocked(images), id)
		tagged = v.st.LastTagTime[id]
		if b := v.baseLocked(); tagged.IsZero() && b != nil {
			tagged = b.LastTagTime[id]
		}
	}
	v.s.mu.Unlock()
	if !ok {
		return ImageInfo{}, noSuchImage(id.String())
	}
	return ImageInfo{ID: id, Config: c, Parent: m.Parent, BuiltLocally: m.BuiltLocally, Created: c.Created,
		Size: v.s.imageSize(c), RepoTags: tags, RepoDigests: digests, LastTagTime: tagged}, nil
}

// refsOf returns an image's tags and repo digests, familiar and sorted.
func refsOf(refs map[string]digest.Digest, id digest.Digest) (tags, digests []string) {
	for r, rid := range refs {
		if rid != id {
			continue
		}
		named, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			continue
		}
		if _, ok := named.(reference.Canonical); ok {
			digests = append(digests, reference.FamiliarString(named))
		} else {
			tags = append(tags, reference.FamiliarString(named))
		}
	}
	sort.Strings(tags)
	sort.Strings(digests)
	return tags, digests
}

// Children returns the built-locally images whose parent is parent ("" for
// FROM scratch): the classic cache's candidates.
func (v *View) Children(parent digest.Digest) []digest.Digest {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	var out []digest.Digest
	for id, m := range v.imagesLocked() {
		if m.Parent == parent && m.BuiltLocally {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func hasChildren(images map[digest.Digest]ImageMeta, id digest.Digest) bool {
	for _, m := range images {
		if m.Parent == id {
			return true
		}
	}
	return false
}

// Tags returns the view's tags (familiar form) and their images.
func (v *View) Tags() map[string]digest.Digest {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	out := map[string]digest.Digest{}
	for r, id := range v.refsLocked(v.imagesLocked()) {
		named, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			continue
		}
		if _, ok := named.(reference.Canonical); !ok {
			out[reference.FamiliarString(named)] = id
		}
	}
	return out
}

// Summary is one row of GET /images/json.
type Summary struct {
	ID          digest.Digest
	ParentID    digest.Digest
	RepoTags    []string // nil when untagged (Docker shows <none>:<none>)
	RepoDigests []string
	Created     time.Time
	Size        int64
	Labels      map[string]string
	Dangling    bool // untagged and without children
}

// List returns the images of the view, newest first. Unless all is set,
// untagged images with children (build intermediates) are left out.
func (v *View) List(all bool) []Summary {
	v.s.mu.Lock()
	images := v.imagesLocked()
	refs := v.refsLocked(images)
	v.s.mu.Unlock()
	var out []Summary
	for id, m := range images {
		tags, digests := refsOf(refs, id)
		untagged := tags == nil && digests == nil
		children := hasChildren(images, id)
		if untagged && children && !all {
			continue
		}
		sm := Summary{ID: id, ParentID: m.Parent, RepoTags: tags, RepoDigests: digests, Created: m.Created,
			Dangling: untagged && !children}
		if c, err := v.s.Config(id); err == nil {
			sm.Size = v.s.imageSize(c)
			if c.Config != nil {
				sm.Labels = c.Config.Labels
			}
		}
		out = append(out, sm)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// RemoveView forgets the named view: its tags and images. Blobs and layers
// stay for GC (other views share them). The base view cannot go; the
// caller makes sure no engine uses the view.
func (s *Store) RemoveView(name string) error {
	if name == BaseView || !viewNameRE.MatchString(name) {
		return fmt.Errorf("remove view %q: not a sandbox's view", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.views, name)
	if err := os.Remove(s.path("views", name+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove view %s: %w", name, err)
	}
	return nil
}
