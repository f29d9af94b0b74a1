package distribution

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/opencontainers/go-digest"
)

// trap is a loopback listener that counts the connections it gets: a host
// the engine must never reach.
type trap struct {
	ln    net.Listener
	conns atomic.Int64
}

func newTrap(t *testing.T) *trap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &trap{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.conns.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return tr
}

func (tr *trap) addr() string { return tr.ln.Addr().String() }

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func portOf(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// fakeImage is an image as a registry serves it.
type fakeImage struct {
	config, manifest []byte
	layers           [][]byte // gzip blobs
	diffIDs          []digest.Digest
}

// layerTar is a layer tar holding one file.
func layerTar(t *testing.T, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// configFor is an image config listing diffIDs.
func configFor(t *testing.T, label string, diffIDs []digest.Digest) []byte {
	t.Helper()
	c := &image.Config{Architecture: "amd64", OS: "linux", Created: time.Unix(1700000000, 0).UTC(),
		Config: &container.Config{Cmd: []string{"sh"}, Labels: map[string]string{"l": label}},
		RootFS: &image.RootFS{Type: "layers", DiffIDs: diffIDs}}
	raw, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// makeImage is an image whose layer blobs are the gzip of tars and whose
// config says diffIDs (nil: the tars' true diffIDs), or config raw when
// given.
func makeImage(t *testing.T, tars [][]byte, diffIDs []digest.Digest, raw []byte) *fakeImage {
	t.Helper()
	im := &fakeImage{}
	for i, l := range tars {
		im.layers = append(im.layers, gzipped(t, l))
		if diffIDs == nil {
			im.diffIDs = append(im.diffIDs, digest.FromBytes(l))
		} else {
			im.diffIDs = append(im.diffIDs, diffIDs[i])
		}
	}
	im.config = raw
	if im.config == nil {
		im.config = configFor(t, "fake", im.diffIDs)
	}
	m := &Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest,
		Config: &Descriptor{MediaType: MediaTypeConfig, Size: int64(len(im.config)), Digest: digest.FromBytes(im.config).String()}}
	for _, l := range im.layers {
		m.Layers = append(m.Layers, Descriptor{MediaType: MediaTypeLayer, Size: int64(len(l)), Digest: digest.FromBytes(l).String()})
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	im.manifest = b
	return im
}

// fakeRegistry serves images by repository and tag over plain HTTP on
// loopback, optionally behind a token realm and with blob redirects.
type fakeRegistry struct {
	srv  *httptest.Server
	host string

	mu       sync.Mutex
	images   map[string]*fakeImage // "repo:tag"
	blobs    map[digest.Digest][]byte
	hosts    []string // Host headers seen
	blobGets map[digest.Digest]int

	realm          string        // bearer realm ("" = no auth); "SELF" = this registry's /token
	blobRedirect   string        // base URL blob GETs redirect to
	uploadLocation string        // Location of a new upload
	gated          digest.Digest // GETs of this blob signal gateHit, then wait for gate to close
	gate           chan struct{}
	gateHit        chan struct{}
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	r := &fakeRegistry{images: map[string]*fakeImage{}, blobs: map[digest.Digest][]byte{}, blobGets: map[digest.Digest]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	r.host = r.srv.Listener.Addr().String()
	return r
}

func (r *fakeRegistry) add(repoTag string, im *fakeImage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.images[repoTag] = im
	r.blobs[digest.FromBytes(im.config)] = im.config
	for _, l := range im.layers {
		r.blobs[digest.FromBytes(l)] = l
	}
}

// holdBlob makes GETs of blob d wait until the returned release is
// called (at the latest by the test's cleanup); each GET first sends on
// hit.
func (r *fakeRegistry) holdBlob(t *testing.T, d digest.Digest) (hit <-chan struct{}, release func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gated, r.gate, r.gateHit = d, make(chan struct{}), make(chan struct{}, 8)
	var once sync.Once
	gate := r.gate
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return r.gateHit, release
}

func (r *fakeRegistry) gets(d digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[d]
}

func (r *fakeRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.hosts = append(r.hosts, req.Host)
	realm := r.realm
	r.mu.Unlock()
	if req.URL.Path == "/token" {
		_ = json.NewEncoder(w).Encode(map[string]string{"token": "t0k"})
		return
	}
	if realm != "" && req.Header.Get("Authorization") != "Bearer t0k" {
		if realm == "SELF" {
			realm = "http://" + req.Host + "/token"
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`",service="fake"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	p := strings.TrimPrefix(req.URL.Path, "/v2/")
	switch {
	case req.URL.Path == "/v2/":
		w.WriteHeader(http.StatusOK)
	case strings.Contains(p, "/manifests/"):
		repo, ref, _ := strings.Cut(p, "/manifests/")
		r.mu.Lock()
		im := r.images[repo+":"+ref]
		if im == nil {
			for k, v := range r.images {
				if strings.HasPrefix(k, repo+":") && digest.FromBytes(v.manifest).String() == ref {
					im = v
				}
			}
		}
		r.mu.Unlock()
		if im == nil {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
			return
		}
		w.Header().Set("Content-Type", MediaTypeManifest)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(im.manifest).String())
		if req.Method == http.MethodGet {
			_, _ = w.Write(im.manifest)
		}
	case strings.HasSuffix(p, "/blobs/uploads/") && req.Method == http.MethodPost:
		w.Header().Set("Location", r.uploadLocation)
		w.WriteHeader(http.StatusAccepted)
	case strings.Contains(p, "/blobs/"):
		_, ds, _ := strings.Cut(p, "/blobs/")
		d := digest.Digest(ds)
		r.mu.Lock()
		b, ok := r.blobs[d]
		redirect, gated, gate, hit := r.blobRedirect, r.gated, r.gate, r.gateHit
		if req.Method == http.MethodGet {
			r.blobGets[d]++
		}
		r.mu.Unlock()
		if !ok || req.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if redirect != "" && req.Method == http.MethodGet {
			http.Redirect(w, req, redirect+"/"+d.Encoded(), http.StatusTemporaryRedirect)
			return
		}
		if d == gated {
			hit <- struct{}{}
			<-gate
		}
		_, _ = w.Write(b)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// blobServer serves blobs by encoded digest at /<hex>, counting requests.
type blobServer struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newBlobServer(t *testing.T, blobs map[digest.Digest][]byte) *blobServer {
	t.Helper()
	b := &blobServer{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b.hits.Add(1)
		for d, body := range blobs {
			if "/"+d.Encoded() == req.URL.Path {
				_, _ = w.Write(body)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// testClient is a registry client on a fresh store.
func testClient(t *testing.T, opts Options) (*Client, *image.Store) {
	t.Helper()
	store, err := image.Open(filepath.Join(t.TempDir(), "engine"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(store, opts, "20.10.24")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, store
}

func testView(t *testing.T, s *image.Store, name string) *image.View {
	t.Helper()
	v, err := s.View(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// messages collects an operation's JSON messages as text lines.
type messages struct {
	mu    sync.Mutex
	lines []string
}

func (m *messages) out(j *jsonmessage.JSONMessage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := j.Status
	if j.ID != "" {
		l = j.ID + ": " + l
	}
	m.lines = append(m.lines, l)
	return nil
}

func (m *messages) text() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.lines, "\n")
}

func pull(t *testing.T, c *Client, v *image.View, ref string) (digest.Digest, *messages, error) {
	t.Helper()
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		t.Fatal(err)
	}
	n = reference.TagNameOnly(n)
	m := &messages{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := c.Pull(ctx, PullRequest{View: v, Ref: n, Out: m.out})
	return id, m, err
}

// putImage stores an image of the given layer tars and makes it visible
// in v; it returns the image ID.
func putImage(t *testing.T, v *image.View, label string, tars ...[]byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	var diffIDs []digest.Digest
	for _, l := range tars {
		info, err := v.Store().PutLayer(ctx, bytes.NewReader(l))
		if err != nil {
			t.Fatal(err)
		}
		diffIDs = append(diffIDs, info.DiffID)
	}
	id, err := v.Store().PutImage(ctx, configFor(t, label, diffIDs))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Add(id, "", true); err != nil {
		t.Fatal(err)
	}
	return id
}
