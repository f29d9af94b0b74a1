package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/opencontainers/go-digest"
)

// v1Image is moby's image.V1Image, the "json" file of each layer
// directory in a docker-save tar, fields in moby's order.
type v1Image struct {
	ID              string            `json:"id,omitempty"`
	Parent          string            `json:"parent,omitempty"`
	Comment         string            `json:"comment,omitempty"`
	Created         time.Time         `json:"created"`
	Container       string            `json:"container,omitempty"`
	ContainerConfig container.Config  `json:"container_config,omitempty"`
	DockerVersion   string            `json:"docker_version,omitempty"`
	Author          string            `json:"author,omitempty"`
	Config          *container.Config `json:"config,omitempty"`
	Architecture    string            `json:"architecture,omitempty"`
	Variant         string            `json:"variant,omitempty"`
	OS              string            `json:"os,omitempty"`
	Size            int64             `json:",omitempty"`
}

func v1Of(c *Config) v1Image {
	v := v1Image{Comment: c.Comment, Created: c.Created, Container: c.Container, DockerVersion: c.DockerVersion,
		Author: c.Author, Config: c.Config, Architecture: c.Architecture, Variant: c.Variant, OS: c.OS, Size: c.Size}
	if c.ContainerConfig != nil {
		v.ContainerConfig = *c.ContainerConfig
	}
	return v
}

// v1ID is moby's v1.CreateID: the legacy layer ID of a docker-save tar.
func v1ID(img v1Image, chainID, parent digest.Digest) (digest.Digest, error) {
	img.ID = ""
	b, err := json.Marshal(img)
	if err != nil {
		return "", err
	}
	var m map[string]*json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return "", err
	}
	raw := func(v any) *json.RawMessage {
		b, _ := json.Marshal(v)
		r := json.RawMessage(b)
		return &r
	}
	m["layer_id"] = raw(chainID)
	if parent != "" {
		m["parent"] = raw(parent)
	}
	b, err = json.Marshal(m)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(b), nil
}

type saveImage struct {
	id     digest.Digest
	cfg    *Config
	refs   []reference.NamedTagged
	layers []string // legacy layer dir names
}

// Save writes the images named by refs (names, name:tag, IDs, prefixes)
// as a docker-save tar in dockerd 20.10's structure: <v1 id>/{VERSION,
// json,layer.tar}, <image id hex>.json, manifest.json and repositories.
// A bare name saves every tag of that repository.
func (v *View) Save(ctx context.Context, refs []string, w io.Writer) error {
	imgs, err := v.saveSelection(refs)
	if err != nil {
		return err
	}
	type entry struct {
		hdr  tar.Header
		data []byte
		blob digest.Digest // layer.tar content
	}
	entries := map[string]entry{}
	dirOf := map[digest.Digest]string{} // diffID -> first layer.tar path
	reposLegacy := map[string]map[string]string{}
	var manifest []manifestItem
	fileHdr := func(name string, size int64, mtime time.Time) tar.Header {
		return tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o100644, Uname: "root", Gname: "root",
			ModTime: mtime.Truncate(time.Second), Format: tar.FormatPAX}
	}
	ids := map[digest.Digest]bool{}
	for _, im := range imgs {
		ids[im.id] = true
	}
	for _, im := range imgs {
		diffIDs := im.cfg.DiffIDs()
		if len(diffIDs) == 0 {
			return errors.New("empty export - not implemented")
		}
		created := im.cfg.Created
		var parent digest.Digest
		for i := range diffIDs {
			legacy := v1Image{Created: epoch()}
			if i == len(diffIDs)-1 {
				legacy = v1Of(im.cfg)
			}
			chain := ChainID(diffIDs[:i+1])
			id, err := v1ID(legacy, chain, parent)
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
			legacy.ID = id.Encoded()
			if parent != "" {
				legacy.Parent = parent.Encoded()
			}
			legacy.OS = im.cfg.OS
			dir := id.Encoded()
			im.layers = append(im.layers, dir)
			parent = id
			if _, done := entries[dir+"/"]; done {
				continue
			}
			js, err := json.Marshal(legacy)
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
			size, err := v.s.blobSize(diffIDs[i])
			if err != nil {
				return fmt.Errorf("save: layer %s: %w", diffIDs[i], err)
			}
			dh := tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o40755, Uname: "root", Gname: "root",
				ModTime: created.Truncate(time.Second), Format: tar.FormatPAX}
			entries[dir+"/"] = entry{hdr: dh}
			entries[dir+"/VERSION"] = entry{hdr: fileHdr(dir+"/VERSION", 3, created), data: []byte("1.0")}
			entries[dir+"/json"] = entry{hdr: fileHdr(dir+"/json", int64(len(js)), created), data: js}
			if first, ok := dirOf[diffIDs[i]]; ok {
				// dockerd links a repeated layer to its first copy (with
				// the current time as mtime; the created time keeps saves
				// reproducible).
				entries[dir+"/layer.tar"] = entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: dir + "/layer.tar",
					Linkname: "../" + first, Mode: 0o120777, Uname: "root", Gname: "root", ModTime: created.Truncate(time.Second), Format: tar.FormatPAX}}
				continue
			}
			entries[dir+"/layer.tar"] = entry{hdr: fileHdr(dir+"/layer.tar", size, created), blob: diffIDs[i]}
			dirOf[diffIDs[i]] = dir + "/layer.tar"
		}
		raw, err := v.s.RawConfig(im.id)
		if err != nil {
			return fmt.Errorf("save: %w", err)
		}
		name := im.id.Encoded() + ".json"
		entries[name] = entry{hdr: fileHdr(name, int64(len(raw)), created), data: raw}
		item := manifestItem{Config: name}
		for _, r := range im.refs {
			fam := reference.FamiliarName(r)
			if reposLegacy[fam] == nil {
				reposLegacy[fam] = map[string]string{}
			}
			reposLegacy[fam][r.Tag()] = im.layers[len(im.layers)-1]
			item.RepoTags = append(item.RepoTags, reference.FamiliarString(r))
		}
		for _, l := range im.layers {
			item.Layers = append(item.Layers, l+"/layer.tar")
		}
		v.s.mu.Lock()
		if p := v.imagesLocked()[im.id].Parent; p != "" && ids[p] && p != im.id {
			item.Parent = p
		}
		v.s.mu.Unlock()
		manifest = append(manifest, item)
	}
	encode := func(x any) ([]byte, error) {
		b, err := json.Marshal(x)
		return append(b, '\n'), err // json.Encoder's trailing newline
	}
	if len(reposLegacy) > 0 {
		b, err := encode(reposLegacy)
		if err != nil {
			return fmt.Errorf("save: %w", err)
		}
		entries["repositories"] = entry{hdr: fileHdr("repositories", int64(len(b)), time.Unix(0, 0)), data: b}
	}
	b, err := encode(manifest)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	entries["manifest.json"] = entry{hdr: fileHdr("manifest.json", int64(len(b)), time.Unix(0, 0)), data: b}

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	// filepath.Walk order: lexical per directory ("x/" sorts as "x").
	sort.Slice(names, func(i, j int) bool { return walkKey(names[i]) < walkKey(names[j]) })
	tw := tar.NewWriter(w)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := entries[n]
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("save: %w", err)
		}
		switch {
		case e.blob != "":
			f, err := v.s.OpenLayer(e.blob)
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
		case e.data != nil:
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("save: %w", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

func walkKey(name string) string {
	return strings.ReplaceAll(path.Clean(name), "/", "\x00")
}

func (s *Store) blobSize(d digest.Digest) (int64, error) {
	f, err := s.OpenBlob(d)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// saveSelection is moby's tarexport parseNames.
func (v *View) saveSelection(names []string) ([]*saveImage, error) {
	var order []*saveImage
	byID := map[digest.Digest]*saveImage{}
	add := func(id digest.Digest, ref reference.Named) error {
		im, ok := byID[id]
		if !ok {
			c, err := v.s.Config(id)
			if err != nil {
				return err
			}
			im = &saveImage{id: id, cfg: c}
			byID[id] = im
			order = append(order, im)
		}
		if ref == nil {
			return nil
		}
		if _, ok := ref.(reference.Canonical); ok {
			return nil
		}
		tagged, ok := reference.TagNameOnly(ref).(reference.NamedTagged)
		if !ok {
			return nil
		}
		for _, t := range im.refs {
			if t.String() == tagged.String() {
				return nil
			}
		}
		im.refs = append(im.refs, tagged)
		return nil
	}
	for _, name := range names {
		ref, err := reference.ParseAnyReference(name)
		if err != nil {
			return nil, &invalidRefError{err: err}
		}
		named, isNamed := ref.(reference.Named)
		if !isNamed || reference.IsNameOnly(named) {
			if isNamed {
				v.s.mu.Lock()
				var matched []string
				for r := range v.refsLocked(v.imagesLocked()) {
					if rn, err := reference.ParseNormalizedNamed(r); err == nil && rn.Name() == named.Name() {
						if _, c := rn.(reference.Canonical); !c {
							matched = append(matched, r)
						}
					}
				}
				v.s.mu.Unlock()
				sort.Strings(matched)
				if len(matched) > 0 {
					for _, r := range matched {
						rn, _ := reference.ParseNormalizedNamed(r)
						id, err := v.Resolve(r)
						if err != nil {
							return nil, err
						}
						if err := add(id, rn); err != nil {
							return nil, err
						}
					}
					continue
				}
			}
			id, err := v.Resolve(name)
			if errors.Is(err, ErrNotFound) && isNamed {
				// dockerd 20.10 searches image IDs for the name as
				// given, and says so without a tag.
				return nil, noSuchImage(name)
			}
			if err != nil {
				return nil, err
			}
			if err := add(id, nil); err != nil {
				return nil, err
			}
			continue
		}
		id, err := v.Resolve(name)
		if errors.Is(err, ErrNotFound) {
			// dockerd 20.10's reference store answers a tag or digest it
			// does not hold so.
			return nil, &notFoundError{msg: "reference does not exist"}
		}
		if err != nil {
			return nil, err
		}
		if isImageIDPrefix(id.String(), name) {
			named = nil
		}
		if err := add(id, named); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func epoch() time.Time { return time.Unix(0, 0).UTC() }
