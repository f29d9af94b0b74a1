package registry

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/docker/go-units"

	"github.com/labd/labd/registry/accounts"
)

// quota caps what each learner namespace stores. Usage is the size of
// the distinct blobs linked into the namespace's repositories (layers,
// configs, manifests) plus its uploads in progress, read from
// distribution's tree; on top of it, every byte an upload request reads
// is counted as it arrives. An upload that would cross the limit is cut
// off, answered with "denied: quota exceeded ...", and its partial data
// removed, so nothing half-written stays behind.
type quota struct {
	limit    int64 // < 0: none
	root     string
	accounts Accounts
	log      *slog.Logger

	mu   sync.Mutex
	read map[string]*atomic.Int64 // namespace -> bytes read by uploads, ever
}

// v2 is distribution's tree under the filesystem driver's root.
func (q *quota) v2() string { return filepath.Join(q.root, "docker", "registry", "v2") }

func (q *quota) counter(ns string) *atomic.Int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.read == nil {
		q.read = map[string]*atomic.Int64{}
	}
	c := q.read[ns]
	if c == nil {
		c = new(atomic.Int64)
		q.read[ns] = c
	}
	return c
}

// uploadTarget splits /v2/<name>/blobs/uploads[/<uuid>] into name and uuid.
func uploadTarget(path string) (name, uuid string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/blobs/uploads")
	if i <= 0 {
		return "", "", false
	}
	name, tail := rest[:i], strings.TrimPrefix(rest[i+len("/blobs/uploads"):], "/")
	if strings.Contains(tail, "/") {
		return "", "", false
	}
	return name, tail, true
}

func (q *quota) wrap(next http.Handler) http.Handler {
	if q.limit < 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost, http.MethodPatch, http.MethodPut:
		default:
			next.ServeHTTP(w, r)
			return
		}
		name, uuid, ok := uploadTarget(r.URL.Path)
		ns, _, nested := strings.Cut(name, "/")
		if !ok || !nested {
			next.ServeHTTP(w, r)
			return
		}
		role, err := q.accounts.Role(r.Context(), ns)
		if err != nil || role != accounts.Learner {
			next.ServeHTTP(w, r)
			return
		}
		started := time.Now()
		held, err := q.holding(ns)
		if err != nil {
			q.log.Error("registry quota", "namespace", ns, "err", err)
			errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail("quota check failed"))
			return
		}
		used := held.bytes
		if r.Method == http.MethodPost && r.URL.Query().Get("mount") != "" {
			// A mount adds a blob without sending it; one the namespace
			// already stores costs nothing. Past the quota, turn it into a
			// plain upload: the bytes then meet the limit.
			if d := r.URL.Query().Get("mount"); !held.has(q, d) && used+q.blobSize(d) > q.limit {
				qs := r.URL.Query()
				qs.Del("mount")
				qs.Del("from")
				r.URL.RawQuery = qs.Encode()
			}
			next.ServeHTTP(w, r)
			return
		}
		if d := r.URL.Query().Get("digest"); d != "" && held.has(q, d) {
			// An upload that names content the namespace already stores
			// adds nothing once committed: its bytes (up to that blob's
			// size; more cannot match the digest) are not charged again.
			used = max(0, used-q.blobSize(d))
		}
		c := q.counter(ns)
		lr := &limitedBody{ReadCloser: r.Body, count: c, start: c.Load(), base: used, limit: q.limit}
		r.Body = lr
		qw := &quotaWriter{ResponseWriter: w, body: lr, ns: ns, used: held.bytes, limit: q.limit}
		next.ServeHTTP(qw, r)
		if !lr.tripped.Load() {
			return
		}
		if !qw.wrote {
			qw.WriteHeader(http.StatusForbidden)
		}
		q.discard(name, uuid, started)
	})
}

// discard removes the partial upload of a request cut off by the quota.
// A monolithic POST has no upload ID yet: remove the repository's uploads
// started since the request began.
func (q *quota) discard(name, uuid string, since time.Time) {
	dir := filepath.Join(q.v2(), "repositories", filepath.FromSlash(name), "_uploads")
	if uuid != "" {
		if err := os.RemoveAll(filepath.Join(dir, filepath.Base(uuid))); err != nil {
			q.log.Warn("registry quota: remove upload", "repository", name, "err", err)
		}
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := os.Stat(filepath.Join(dir, e.Name(), "startedat")); err == nil && !fi.ModTime().Before(since.Add(-time.Second)) {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// blobFile stats a stored blob's data file.
func (q *quota) blobFile(dgst string) (os.FileInfo, bool) {
	alg, hex, ok := strings.Cut(dgst, ":")
	if !ok || len(hex) < 2 || strings.ContainsAny(dgst, "/.") {
		return nil, false
	}
	fi, err := os.Stat(filepath.Join(q.v2(), "blobs", alg, hex[:2], hex, "data"))
	return fi, err == nil
}

// blobSize is the size of a stored blob, 0 if unknown.
func (q *quota) blobSize(dgst string) int64 {
	if fi, ok := q.blobFile(dgst); ok {
		return fi.Size()
	}
	return 0
}

// fileID identifies a data file: blobs stored under two digests (sha512
// content, see digests.go) are hard links of one file and count once.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), st.Ino}, true
}

// holding is what a namespace stores: each distinct blob its
// repositories link (layers, configs, manifests) once, plus its uploads
// in progress.
type holding struct {
	bytes   int64
	digests map[string]bool
	files   map[fileID]bool
}

// has reports whether the namespace already stores the blob dgst (under
// that digest or as the same file under another).
func (h *holding) has(q *quota, dgst string) bool {
	if h.digests[dgst] {
		return true
	}
	fi, ok := q.blobFile(dgst)
	if !ok {
		return false
	}
	id, ok := idOf(fi)
	return ok && h.files[id]
}

// usage sums a namespace's distinct linked blobs and its uploads.
func (q *quota) usage(ns string) (int64, error) {
	h, err := q.holding(ns)
	return h.bytes, err
}

func (q *quota) holding(ns string) (*holding, error) {
	h := &holding{digests: map[string]bool{}, files: map[fileID]bool{}}
	add := func(d string) {
		if h.digests[d] {
			return
		}
		h.digests[d] = true
		fi, ok := q.blobFile(d)
		if !ok {
			return
		}
		if id, ok := idOf(fi); ok {
			if h.files[id] {
				return
			}
			h.files[id] = true
		}
		h.bytes += fi.Size()
	}
	addLinks := func(dir string) error {
		algs, err := os.ReadDir(dir)
		if err != nil {
			return ignoreMissing(err)
		}
		for _, a := range algs {
			hexes, err := os.ReadDir(filepath.Join(dir, a.Name()))
			if err != nil {
				return ignoreMissing(err)
			}
			for _, x := range hexes {
				add(a.Name() + ":" + x.Name())
			}
		}
		return nil
	}
	err := filepath.WalkDir(filepath.Join(q.v2(), "repositories", ns), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return ignoreMissing(err)
		}
		if !d.IsDir() {
			return nil
		}
		switch d.Name() {
		case "_layers":
			if err := addLinks(p); err != nil {
				return err
			}
			return fs.SkipDir
		case "_manifests":
			if err := addLinks(filepath.Join(p, "revisions")); err != nil {
				return err
			}
			return fs.SkipDir
		case "_uploads":
			ups, err := os.ReadDir(p)
			if err != nil {
				return ignoreMissing(err)
			}
			for _, u := range ups {
				if fi, err := os.Stat(filepath.Join(p, u.Name(), "data")); err == nil {
					h.bytes += fi.Size()
				}
			}
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage of %s: %w", ns, err)
	}
	return h, nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

var errQuota = errors.New("quota exceeded")

// limitedBody counts an upload's bytes into its namespace's counter and
// fails once the namespace would pass its limit. Bytes other uploads of
// the namespace read since this one started count too.
type limitedBody struct {
	io.ReadCloser
	count       *atomic.Int64
	start, base int64
	limit       int64
	tripped     atomic.Bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.tripped.Load() {
		return 0, errQuota
	}
	n, err := b.ReadCloser.Read(p)
	if n > 0 && b.base+b.count.Add(int64(n))-b.start > b.limit {
		b.tripped.Store(true)
		return n, errQuota
	}
	return n, err
}

// quotaWriter replaces distribution's answer to a request the quota cut
// off with a "denied" error that says why.
type quotaWriter struct {
	http.ResponseWriter
	body        *limitedBody
	ns          string
	used, limit int64
	wrote       bool
	swallow     bool
}

func (w *quotaWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	if !w.body.tripped.Load() {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.swallow = true
	h := w.ResponseWriter.Header()
	for k := range h {
		delete(h, k)
	}
	errcode.ServeJSON(w.ResponseWriter, errcode.ErrorCodeDenied.WithMessage(fmt.Sprintf(
		"quota exceeded: %s stores %s of its %s; this upload does not fit",
		w.ns, units.BytesSize(float64(w.used)), units.BytesSize(float64(w.limit)))))
}

func (w *quotaWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func (w *quotaWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
