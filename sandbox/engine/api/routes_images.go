package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/storage"
	"github.com/docker/docker/api/types/versions"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func (s *server) imagesList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := filtersParam(r)
	if err != nil {
		return err
	}
	version := apiVersion(ctx)
	if versions.LessThan(version, "1.41") {
		if p := r.Form.Get("filter"); p != "" {
			f.Add("reference", p)
		}
	}
	list, err := s.b.Images(ctx, image.ListOptions{All: boolValue(r, "all"), Filters: f})
	if err != nil {
		return err
	}
	if list == nil {
		list = []image.Summary{}
	}
	for i := range list {
		img := &list[i]
		if versions.LessThan(version, "1.43") {
			if len(img.RepoTags) == 0 && len(img.RepoDigests) == 0 {
				img.RepoTags = append(img.RepoTags, "<none>:<none>")
				img.RepoDigests = append(img.RepoDigests, "<none>@<none>")
			}
		} else {
			if img.RepoTags == nil {
				img.RepoTags = []string{}
			}
			if img.RepoDigests == nil {
				img.RepoDigests = []string{}
			}
		}
		if versions.LessThan(version, "1.44") {
			img.VirtualSize = img.Size //nolint:staticcheck // still sent to old clients, as dockerd does
		}
		if versions.LessThan(version, "1.48") {
			img.Descriptor = nil
		}
		if versions.LessThan(version, "1.51") {
			img.Containers = -1
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *server) imageInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	ii, err := s.b.ImageInspect(ctx, vars["name"])
	if err != nil {
		return err
	}
	resp := ii.Response
	if resp.RepoTags == nil {
		resp.RepoTags = []string{}
	}
	if resp.RepoDigests == nil {
		resp.RepoDigests = []string{}
	}
	version := apiVersion(ctx)
	if versions.LessThan(version, "1.44") {
		resp.VirtualSize = resp.Size //nolint:staticcheck // still sent to old clients, as dockerd does
		if resp.Created == "" {
			resp.Created = time.Time{}.Format(time.RFC3339Nano)
		}
	}
	if versions.GreaterThanOrEqualTo(version, "1.45") {
		resp.Container = ""        //nolint:staticcheck // dropped from 1.45 on, as dockerd does
		resp.ContainerConfig = nil //nolint:staticcheck // dropped from 1.45 on, as dockerd does
	}
	if versions.LessThan(version, "1.48") {
		resp.Descriptor = nil
	}
	if versions.LessThan(version, "1.50") {
		return writeJSON(w, http.StatusOK, legacyInspect(resp, ii.StoredConfig, version))
	}
	return writeJSON(w, http.StatusOK, resp)
}

// legacyImageInspect is the inspect document of dockerd before moby 28
// (types.ImageInspect), for clients before API 1.50: Config is the
// image's stored run config whole (Hostname, Image, the Attach and stdin
// flags, ...) where newer engines send its OCI subset. Container is sent
// even when empty, as dockerd 20.10 does, until API 1.45 drops it.
type legacyImageInspect struct {
	ID              string `json:"Id"`
	RepoTags        []string
	RepoDigests     []string
	Parent          string
	Comment         string
	Created         string            `json:",omitempty"`
	Container       *string           `json:",omitempty"`
	ContainerConfig *container.Config `json:",omitempty"`
	DockerVersion   string
	Author          string
	Config          *container.Config
	Architecture    string
	Variant         string `json:",omitempty"`
	Os              string
	OsVersion       string `json:",omitempty"`
	Size            int64
	VirtualSize     int64 `json:"VirtualSize,omitempty"`
	GraphDriver     storage.DriverData
	RootFS          image.RootFS
	Metadata        image.Metadata
	Descriptor      *ocispec.Descriptor     `json:"Descriptor,omitempty"`
	Manifests       []image.ManifestSummary `json:"Manifests,omitempty"`
}

func legacyInspect(resp *image.InspectResponse, stored *container.Config, version string) *legacyImageInspect {
	out := &legacyImageInspect{
		ID: resp.ID, RepoTags: resp.RepoTags, RepoDigests: resp.RepoDigests, Parent: resp.Parent,
		Comment: resp.Comment, Created: resp.Created,
		ContainerConfig: resp.ContainerConfig, //nolint:staticcheck // still sent to old clients, as dockerd does
		DockerVersion:   resp.DockerVersion, Author: resp.Author, Config: stored,
		Architecture: resp.Architecture, Variant: resp.Variant, Os: resp.Os, OsVersion: resp.OsVersion,
		Size: resp.Size, VirtualSize: resp.VirtualSize, //nolint:staticcheck // still sent to old clients, as dockerd does
		GraphDriver: resp.GraphDriver, RootFS: resp.RootFS, Metadata: resp.Metadata,
		Descriptor: resp.Descriptor, Manifests: resp.Manifests,
	}
	if versions.LessThan(version, "1.45") {
		c := resp.Container //nolint:staticcheck // still sent to old clients, as dockerd does
		out.Container = &c
	}
	return out
}

func (s *server) imageHistory(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	h, err := s.b.ImageHistory(ctx, vars["name"])
	if err != nil {
		return err
	}
	if h == nil {
		h = []image.HistoryResponseItem{}
	}
	return writeJSON(w, http.StatusOK, h)
}

// repoTagReference is dockerd's httputils.RepoTagReference.
func repoTagReference(repo, tag string) (reference.NamedTagged, error) {
	if repo == "" {
		return nil, errors.New("repository name must have at least one component")
	}
	ref, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return nil, err
	}
	if _, ok := ref.(reference.Digested); ok {
		return nil, errors.New("cannot import digest reference")
	}
	if tag != "" {
		return reference.WithTag(ref, tag)
	}
	nt, ok := reference.TagNameOnly(ref).(reference.NamedTagged)
	if !ok {
		return nil, fmt.Errorf("unexpected reference: %q", ref.String())
	}
	return nt, nil
}

func (s *server) imageTag(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	ref, err := repoTagReference(r.Form.Get("repo"), r.Form.Get("tag"))
	if err != nil {
		return InvalidParameterError(err)
	}
	if reference.FamiliarName(ref) == "sha256" {
		return InvalidParameterError(errors.New("refusing to create an ambiguous tag using digest algorithm as name"))
	}
	if err := s.b.ImageTag(ctx, vars["name"], ref.String()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (s *server) imageDelete(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	name := vars["name"]
	if strings.TrimSpace(name) == "" {
		return InvalidParameterError(errors.New("image name cannot be blank"))
	}
	list, err := s.b.ImageDelete(ctx, name, boolValue(r, "force"), !boolValue(r, "noprune"))
	if err != nil {
		return err
	}
	if list == nil {
		list = []image.DeleteResponse{}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *server) imagesPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := filtersParam(r)
	if err != nil {
		return err
	}
	rep, err := s.b.ImagesPrune(ctx, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

func (s *server) imagesGet(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	return s.save(ctx, w, r.Form["names"])
}

func (s *server) imageGet(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.save(ctx, w, []string{vars["name"]})
}

// flushWriter tracks whether the response has started, as dockerd's
// WriteFlusher does: until then an error is an HTTP error.
type flushWriter struct {
	w       http.ResponseWriter
	started bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.started = true
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

func (s *server) save(ctx context.Context, w http.ResponseWriter, names []string) error {
	w.Header().Set("Content-Type", "application/x-tar")
	fw := &flushWriter{w: w}
	if err := s.b.ImageSave(ctx, names, fw); err != nil {
		if !fw.started {
			// The tar type must not stick to a JSON error.
			w.Header().Del("Content-Type")
			return err
		}
		st := &jsonStream{w: w}
		_ = st.sendError(err)
	}
	return nil
}

func (s *server) imagesLoad(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	w.Header().Set("Content-Type", "application/json")
	st := newJSONStream(w)
	quiet := true
	if r.Form.Get("quiet") != "" {
		quiet = boolValue(r, "quiet")
	}
	// dockerd writes the same lines whether quiet or not for a plain tar
	// (quiet only hides progress bars), so the output is kept either way.
	_ = quiet
	if err := s.b.ImageLoad(ctx, r.Body, streamWriter{s: st}); err != nil {
		err = overLimit(r.Body, err)
		if big := (*bodyTooLarge)(nil); errors.As(err, &big) && !st.started() {
			// Nothing was loaded: a plain 413 that names the limit.
			w.Header().Del("Content-Type")
			return big
		}
		_ = st.sendError(err)
	}
	if !st.started() {
		w.WriteHeader(http.StatusOK)
	}
	return nil
}
