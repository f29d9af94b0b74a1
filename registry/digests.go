package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Distribution v3.1 hashes every upload with sha256 and stores it under
// that digest only: a blob pushed as sha512:D lands in blobs/sha256/C
// with the repository link _layers/sha512/D pointing at sha256:C, its
// answers name sha256:C, a cross-repository mount of sha512:D links a
// blob that does not exist, a manifest PUT by sha512:D is refused
// (distribution compares D with the sha256 of the body), and garbage
// collection, which marks the digests manifests reference, deletes
// blobs/sha256/C because nothing references sha256:C.
//
// digests makes the content real under its sha512 digest, after
// distribution has accepted it (so authorization, validation and the
// quota are distribution's and labd's usual ones):
//
//   - an upload completed with ?digest=sha512:D: blobs/sha512/D/data is
//     made a hard link of blobs/sha256/C/data (no second copy) and the
//     repository link _layers/sha512/D points at sha512:D; the answer
//     names sha512:D.
//   - a manifest PUT by sha512:D whose body hashes to D is handed to
//     distribution as a PUT by its sha256 digest C (which validates and
//     stores it); then the manifest gets the same hard link and the
//     revision link _manifests/revisions/sha512/D, and the revision C the
//     PUT made is removed again unless it existed before, so the
//     manifest exists by the digest the client used.
//
// From then on distribution serves, mounts, deletes and collects sha512
// content natively: every lookup goes through links whose targets exist
// under their own digest. The leftover blobs/sha256/C of such content is
// unreferenced and goes at the next collection; until then it shares its
// inode with the sha512 twin, which the quota and GC figures count once.
//
// It also implements the tag parameters of a manifest PUT by digest
// (distribution-spec 1.1+dev: PUT /v2/<name>/manifests/<digest>?tag=a&tag=b
// tags the manifest with each and answers OCI-Tag), through distribution's
// own tag service.
type digests struct {
	root string // filesystem driver root
	tags func(ctx context.Context, repo string, tag string, d digest.Digest) error
	log  *slog.Logger

	// Manifest PUTs of one repository are serialised: whether revision C
	// existed before a sha512 PUT must not change under it.
	mu    sync.Mutex
	locks map[string]*repoLock
}

type repoLock struct {
	sync.Mutex
	n int
}

func (s *digests) lock(repo string) func() {
	s.mu.Lock()
	if s.locks == nil {
		s.locks = map[string]*repoLock{}
	}
	l := s.locks[repo]
	if l == nil {
		l = &repoLock{}
		s.locks[repo] = l
	}
	l.n++
	s.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.mu.Lock()
		if l.n--; l.n == 0 {
			delete(s.locks, repo)
		}
		s.mu.Unlock()
	}
}

func (s *digests) v2() string { return filepath.Join(s.root, "docker", "registry", "v2") }

// blobData is the data file of a blob in distribution's tree.
func (s *digests) blobData(d digest.Digest) string {
	e := d.Encoded()
	return filepath.Join(s.v2(), "blobs", d.Algorithm().String(), e[:2], e, "data")
}

func (s *digests) repoDir(repo string) string {
	return filepath.Join(s.v2(), "repositories", filepath.FromSlash(repo))
}

func (s *digests) revisionDir(repo string, d digest.Digest) string {
	return filepath.Join(s.repoDir(repo), "_manifests", "revisions", d.Algorithm().String(), d.Encoded())
}

func (s *digests) layerDir(repo string, d digest.Digest) string {
	return filepath.Join(s.repoDir(repo), "_layers", d.Algorithm().String(), d.Encoded())
}

// nonCanonical parses a digest the client named and reports whether it
// is one distribution does not store under (anything but sha256).
func nonCanonical(s string) (digest.Digest, bool) {
	d, err := digest.Parse(s)
	if err != nil || d.Algorithm() == digest.Canonical || !d.Algorithm().Available() {
		return "", false
	}
	return d, true
}

func (s *digests) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/v2/")
		if !ok || r.Method != http.MethodPut {
			next.ServeHTTP(w, r)
			return
		}
		if name, uuid, ok := uploadTarget(r.URL.Path); ok && uuid != "" {
			if d, ok := nonCanonical(r.URL.Query().Get("digest")); ok {
				w = &createdWriter{ResponseWriter: w, on: func(h http.Header) error { return s.blobCommitted(name, d, h) }}
			}
			next.ServeHTTP(w, r)
			return
		}
		i := strings.LastIndex(rest, "/manifests/")
		if i <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		name, ref := rest[:i], rest[i+len("/manifests/"):]
		if _, err := reference.WithName(name); err != nil {
			next.ServeHTTP(w, r)
			return
		}
		// The body is already in memory (referrers.wrap reads manifest
		// PUTs first), so a slow client cannot hold the lock.
		defer s.lock(name)()
		tags := r.URL.Query()["tag"]
		d, sha512 := nonCanonical(ref)
		if !sha512 && len(tags) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if len(tags) > 0 {
			if _, err := digest.Parse(ref); err != nil {
				errcode.ServeJSON(w, errcode.ErrorCodeTagInvalid.WithDetail("tag parameters need a PUT by digest"))
				return
			}
			for _, t := range tags {
				if !tagPattern.MatchString(t) {
					errcode.ServeJSON(w, errcode.ErrorCodeTagInvalid.WithDetail(t))
					return
				}
			}
		}
		named := digest.Digest(ref)
		var canonical digest.Digest
		removeCanonical := false
		if sha512 {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
			if err != nil {
				errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail(err))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			v := d.Verifier()
			v.Write(body)
			if !v.Verified() {
				// distribution answers DIGEST_INVALID for the mismatch.
				next.ServeHTTP(w, r)
				return
			}
			canonical = digest.FromBytes(body)
			_, err = os.Stat(filepath.Join(s.revisionDir(name, canonical), "link"))
			removeCanonical = err != nil
			r.URL.Path = "/v2/" + name + "/manifests/" + canonical.String()
			r.URL.RawPath = ""
		}
		w = &createdWriter{ResponseWriter: w, on: func(h http.Header) error {
			if sha512 {
				if err := s.manifestStored(name, d, canonical, removeCanonical, h); err != nil {
					return err
				}
			}
			for _, t := range tags {
				if err := s.tags(r.Context(), name, t, named); err != nil {
					return fmt.Errorf("tag %s: %w", t, err)
				}
				h.Add("OCI-Tag", t)
			}
			return nil
		}}
		next.ServeHTTP(w, r)
	})
}

// tagPattern is a whole tag (reference.TagRegexp is unanchored).
var tagPattern = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)

// blobCommitted runs when distribution has accepted an upload as d.
func (s *digests) blobCommitted(repo string, d digest.Digest, h http.Header) error {
	canonical, err := digest.Parse(h.Get("Docker-Content-Digest"))
	if err != nil {
		return fmt.Errorf("upload of %s: distribution answered digest %q", d, h.Get("Docker-Content-Digest"))
	}
	if canonical != d {
		if err := s.materialize(canonical, d); err != nil {
			return err
		}
		if err := writeLink(filepath.Join(s.layerDir(repo, d), "link"), d); err != nil {
			return err
		}
	}
	rename(h, canonical, d)
	return nil
}

// manifestStored runs when distribution has stored a manifest PUT by d
// as its sha256 digest canonical.
func (s *digests) manifestStored(repo string, d, canonical digest.Digest, removeCanonical bool, h http.Header) error {
	if err := s.materialize(canonical, d); err != nil {
		return err
	}
	if err := writeLink(filepath.Join(s.revisionDir(repo, d), "link"), d); err != nil {
		return err
	}
	if removeCanonical {
		if err := os.RemoveAll(s.revisionDir(repo, canonical)); err != nil {
			return fmt.Errorf("manifest %s: %w", d, err)
		}
	}
	rename(h, canonical, d)
	return nil
}

// rename makes an answer about canonical name d instead.
func rename(h http.Header, canonical, d digest.Digest) {
	h.Set("Docker-Content-Digest", d.String())
	if loc := h.Get("Location"); loc != "" {
		h.Set("Location", strings.Replace(loc, canonical.String(), d.String(), 1))
	}
}

// materialize stores the blob canonical also as d: a hard link, or a
// copy where the file system has none.
func (s *digests) materialize(canonical, d digest.Digest) error {
	src, dst := s.blobData(canonical), s.blobData(d)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("store %s: %w", d, err)
	}
	tmp := tmpName(dst)
	if err := os.Link(src, tmp); err != nil {
		if err := copyFile(src, tmp); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("store %s: %w", d, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store %s: %w", d, err)
	}
	return nil
}

var tmpSeq atomic.Uint64

// tmpName is a name beside path no concurrent request uses.
func tmpName(path string) string {
	return fmt.Sprintf("%s.tmp-%d-%d", path, os.Getpid(), tmpSeq.Add(1))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeLink writes one of distribution's link files (the target digest,
// no newline), atomically.
func writeLink(path string, target digest.Digest) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("link %s: %w", target, err)
	}
	tmp := tmpName(path)
	if err := os.WriteFile(tmp, []byte(target.String()), 0o644); err != nil {
		return fmt.Errorf("link %s: %w", target, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("link %s: %w", target, err)
	}
	return nil
}

// createdWriter calls on when distribution answers 201 Created, before
// the answer leaves; if on fails, the client gets a 500 instead.
type createdWriter struct {
	http.ResponseWriter
	on      func(http.Header) error
	done    bool
	swallow bool
}

func (w *createdWriter) WriteHeader(code int) {
	if w.done {
		return
	}
	w.done = true
	if code == http.StatusCreated {
		if err := w.on(w.Header()); err != nil {
			h := w.Header()
			for k := range h {
				delete(h, k)
			}
			errcode.ServeJSON(w.ResponseWriter, errcode.ErrorCodeUnknown.WithDetail(err.Error()))
			w.swallow = true
			return
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *createdWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *createdWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// tagger tags manifests through distribution's tag service on the same
// storage (the tag parameters of a manifest PUT).
func tagger(ns distribution.Namespace) func(ctx context.Context, repo, tag string, d digest.Digest) error {
	return func(ctx context.Context, repo, tag string, d digest.Digest) error {
		named, err := reference.WithName(repo)
		if err != nil {
			return err
		}
		r, err := ns.Repository(ctx, named)
		if err != nil {
			return err
		}
		return r.Tags(ctx).Tag(ctx, tag, v1.Descriptor{Digest: d})
	}
}
