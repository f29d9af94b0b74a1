package registry

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/opencontainers/go-digest"
)

// Distribution v3.1 has no referrers API (OCI distribution-spec 1.1). The
// registry adds it: GET /v2/<name>/referrers/<digest>[?artifactType=]
// lists the repository's manifests whose subject is <digest>, read from
// distribution's tree, and a manifest PUT with a subject answers with
// the OCI-Subject header so clients know the API is there.
type referrers struct {
	root   string // filesystem driver root
	access distauth.AccessController
}

const ociIndex = "application/vnd.oci.image.index.v1+json"

// maxManifest matches distribution's limit on manifest bodies.
const maxManifest = 4 << 20

func (rf *referrers) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/v2/")
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if i := strings.LastIndex(rest, "/referrers/"); i > 0 && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			rf.serve(w, r, rest[:i], rest[i+len("/referrers/"):])
			return
		}
		if i := strings.LastIndex(rest, "/manifests/"); i > 0 && r.Method == http.MethodPut {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
			if err != nil {
				errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail(err))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			var m struct {
				Subject *struct{ Digest string } `json:"subject"`
			}
			if json.Unmarshal(body, &m) == nil && m.Subject != nil && m.Subject.Digest != "" {
				w = &subjectWriter{ResponseWriter: w, subject: m.Subject.Digest}
			}
		}
		next.ServeHTTP(w, r)
	})
}

type subjectWriter struct {
	http.ResponseWriter
	subject string
	done    bool
}

func (w *subjectWriter) WriteHeader(code int) {
	if !w.done && code == http.StatusCreated {
		w.Header().Set("OCI-Subject", w.subject)
	}
	w.done = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *subjectWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *subjectWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

func (rf *referrers) serve(w http.ResponseWriter, r *http.Request, name, subject string) {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	_, err := rf.access.Authorized(r, distauth.Access{
		Resource: distauth.Resource{Type: "repository", Name: name}, Action: "pull",
	})
	if err != nil {
		if ch, ok := err.(distauth.Challenge); ok {
			ch.SetHeaders(r, w)
			errcode.ServeJSON(w, errcode.ErrorCodeUnauthorized.WithDetail(err.Error()))
			return
		}
		errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail(err.Error()))
		return
	}
	want, err := digest.Parse(subject)
	if err != nil || strings.Contains(name, "..") {
		errcode.ServeJSON(w, errcode.ErrorCodeUnsupported.WithMessage("invalid digest").WithDetail(subject))
		return
	}
	filter := r.URL.Query().Get("artifactType")
	list := []descriptor{}
	v2 := filepath.Join(rf.root, "docker", "registry", "v2")
	revs := filepath.Join(v2, "repositories", filepath.FromSlash(name), "_manifests", "revisions")
	algs, _ := os.ReadDir(revs)
	for _, a := range algs {
		hexes, _ := os.ReadDir(filepath.Join(revs, a.Name()))
		for _, h := range hexes {
			if _, err := os.Stat(filepath.Join(revs, a.Name(), h.Name(), "link")); err != nil {
				continue // deleted manifest
			}
			if len(h.Name()) < 2 {
				continue
			}
			b, err := os.ReadFile(filepath.Join(v2, "blobs", a.Name(), h.Name()[:2], h.Name(), "data"))
			if err != nil {
				continue
			}
			var m struct {
				MediaType    string `json:"mediaType"`
				ArtifactType string `json:"artifactType"`
				Config       *struct {
					MediaType string `json:"mediaType"`
				} `json:"config"`
				Subject *struct {
					Digest string `json:"digest"`
				} `json:"subject"`
				Annotations map[string]string `json:"annotations"`
			}
			if json.Unmarshal(b, &m) != nil || m.Subject == nil || m.Subject.Digest != want.String() {
				continue
			}
			at := m.ArtifactType
			if at == "" && m.Config != nil {
				at = m.Config.MediaType
			}
			if filter != "" && at != filter {
				continue
			}
			list = append(list, descriptor{
				MediaType: m.MediaType, Digest: a.Name() + ":" + h.Name(), Size: int64(len(b)),
				ArtifactType: at, Annotations: m.Annotations,
			})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Digest < list[j].Digest })
	body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": ociIndex, "manifests": list})
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", ociIndex)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}
