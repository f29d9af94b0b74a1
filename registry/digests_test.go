package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// bearer gets a token for scopes.
func (e *testEnv) bearer(user, pw string, scopes ...string) string {
	e.t.Helper()
	status, claims := e.token(user, pw, scopes...)
	if status != http.StatusOK {
		e.t.Fatalf("token for %s %v: status %d", user, scopes, status)
	}
	return claims["_raw"].(string)
}

// do sends one registry request; hdr is name, value pairs.
func (e *testEnv) do(tok, method, target string, body []byte, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	if !strings.HasPrefix(target, "http") {
		target = e.url(target)
	}
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// uploadBlob pushes data as d in one PUT (POST, then PUT ?digest=).
func (e *testEnv) uploadBlob(tok, repo string, d digest.Digest, data []byte) *http.Response {
	e.t.Helper()
	resp, b := e.do(tok, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil)
	if resp.StatusCode != http.StatusAccepted {
		e.t.Fatalf("POST upload to %s = %d %s", repo, resp.StatusCode, b)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	loc = resp.Request.URL.ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	resp, _ = e.do(tok, http.MethodPut, loc.String(), data, "Content-Type", "application/octet-stream")
	return resp
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// sha512Image is an OCI image whose config, layer and manifest are all
// addressed by sha512.
type sha512Image struct {
	config, layer, manifest []byte
	configD, layerD, manD   digest.Digest
}

func newSHA512Image(t *testing.T, layerSize int) sha512Image {
	var im sha512Image
	im.layer = randomBytes(t, layerSize)
	im.layerD = digest.SHA512.FromBytes(im.layer)
	im.config = []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + digest.SHA512.FromBytes(im.layer).String() + `"]}}`)
	im.configD = digest.SHA512.FromBytes(im.config)
	m, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": im.configD, "size": len(im.config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": im.layerD, "size": len(im.layer)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	im.manifest = m
	im.manD = digest.SHA512.FromBytes(m)
	return im
}

func (e *testEnv) pushSHA512(tok, repo string, im sha512Image) {
	e.t.Helper()
	for _, b := range []struct {
		d    digest.Digest
		data []byte
	}{{im.configD, im.config}, {im.layerD, im.layer}} {
		resp := e.uploadBlob(tok, repo, b.d, b.data)
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != b.d.String() ||
			!strings.HasSuffix(resp.Header.Get("Location"), "/blobs/"+b.d.String()) {
			e.t.Fatalf("upload %s = %d, Docker-Content-Digest %q, Location %q", b.d, resp.StatusCode,
				resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Location"))
		}
	}
	resp, body := e.do(tok, http.MethodPut, "/v2/"+repo+"/manifests/"+im.manD.String(), im.manifest,
		"Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != im.manD.String() ||
		!strings.HasSuffix(resp.Header.Get("Location"), "/manifests/"+im.manD.String()) {
		e.t.Fatalf("PUT manifest by %s = %d %s, Docker-Content-Digest %q, Location %q", im.manD, resp.StatusCode, body,
			resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Location"))
	}
}

// checkSHA512 pulls the image back by its sha512 digests.
func (e *testEnv) checkSHA512(tok, repo string, im sha512Image) {
	e.t.Helper()
	for _, c := range []struct {
		path string
		d    digest.Digest
		data []byte
	}{
		{"/manifests/" + im.manD.String(), im.manD, im.manifest},
		{"/blobs/" + im.configD.String(), im.configD, im.config},
		{"/blobs/" + im.layerD.String(), im.layerD, im.layer},
	} {
		resp, body := e.do(tok, http.MethodGet, "/v2/"+repo+c.path, nil,
			"Accept", "application/vnd.oci.image.manifest.v1+json")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, c.data) || c.d.Validate() != nil ||
			digest.SHA512.FromBytes(body) != c.d || resp.Header.Get("Docker-Content-Digest") != c.d.String() {
			e.t.Errorf("GET %s%s = %d, %d bytes (want %d), Docker-Content-Digest %q", repo, c.path, resp.StatusCode,
				len(body), len(c.data), resp.Header.Get("Docker-Content-Digest"))
		}
	}
}

func (e *testEnv) blobPath(d digest.Digest) string {
	return filepath.Join(e.opts.Dir, "storage/docker/registry/v2/blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data")
}

// TestSHA512Content: content pushed by sha512 is stored, served, mounted,
// counted and collected under its sha512 digests, and the policy holds.
func TestSHA512Content(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.bearer("alice", alicePW, "repository:alice/five:pull,push,delete", "repository:alice/copy:pull,push")
	im := newSHA512Image(t, 64<<10)
	e.pushSHA512(tok, "alice/five", im)
	e.checkSHA512(tok, "alice/five", im)

	// A manifest whose body does not hash to the digest is refused.
	resp, body := e.do(tok, http.MethodPut, "/v2/alice/five/manifests/"+digest.SHA512.FromString("other").String(), im.manifest,
		"Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "DIGEST_INVALID") {
		t.Errorf("PUT manifest under a wrong sha512 digest = %d %s, want 400 DIGEST_INVALID", resp.StatusCode, body)
	}
	// Nor is the manifest visible under its sha256 digest: it exists by
	// the digest the client used.
	if resp, _ := e.do(tok, http.MethodHead, "/v2/alice/five/manifests/"+digest.FromBytes(im.manifest).String(), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD manifest by its sha256 digest = %d, want 404", resp.StatusCode)
	}

	// Cross-repository mount by sha512.
	resp, _ = e.do(tok, http.MethodPost, "/v2/alice/copy/blobs/uploads/?mount="+im.layerD.String()+"&from=alice/five", nil)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != im.layerD.String() {
		t.Fatalf("mount sha512 layer = %d, Docker-Content-Digest %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	if resp, body := e.do(tok, http.MethodGet, "/v2/alice/copy/blobs/"+im.layerD.String(), nil); resp.StatusCode != http.StatusOK || !bytes.Equal(body, im.layer) {
		t.Errorf("GET mounted sha512 layer = %d, %d bytes", resp.StatusCode, len(body))
	}

	// Another learner neither reads nor mounts it.
	bobTok := e.bearer("bob", bobPW, "repository:alice/five:pull", "repository:bob/x:pull,push")
	if resp, _ := e.do(bobTok, http.MethodGet, "/v2/alice/five/manifests/"+im.manD.String(), nil); resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob GETs alice's sha512 manifest = %d, want 401/403", resp.StatusCode)
	}
	if resp, _ := e.do(bobTok, http.MethodPost, "/v2/bob/x/blobs/uploads/?mount="+im.layerD.String()+"&from=alice/five", nil); resp.StatusCode == http.StatusCreated {
		t.Error("bob mounted a blob of alice/five")
	}

	// Stored once: the sha512 blobs are hard links of the sha256 files
	// distribution wrote, and the quota counts each once.
	want := int64(len(im.config) + len(im.layer) + len(im.manifest))
	if used, err := e.reg.quota.usage("alice"); err != nil || used != want {
		t.Errorf("alice's usage = %d, %v; want %d (config+layer+manifest once)", used, err, want)
	}

	// Collection keeps what only sha512 references reach, and removes
	// the sha256 twins nothing references.
	res, err := e.reg.GC(context.Background(), GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.BytesAfter != want {
		t.Errorf("after GC: %s; want %d bytes kept", res, want)
	}
	for _, d := range []digest.Digest{digest.FromBytes(im.layer), digest.FromBytes(im.config), digest.FromBytes(im.manifest)} {
		if _, err := os.Stat(e.blobPath(d)); !os.IsNotExist(err) {
			t.Errorf("sha256 twin %s after GC: %v", d, err)
		}
	}
	e.stop()
	e.start()
	e.checkSHA512(tok, "alice/five", im)

	// Deleted by its sha512 digest, it is gone, and the next collection
	// removes its blobs once no repository links them.
	if resp, body := e.do(tok, http.MethodDelete, "/v2/alice/five/manifests/"+im.manD.String(), nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE manifest by sha512 = %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.do(tok, http.MethodGet, "/v2/alice/five/manifests/"+im.manD.String(), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET deleted manifest = %d, want 404", resp.StatusCode)
	}
	if _, err := e.reg.GC(context.Background(), GCOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{im.manD, im.configD, im.layerD} {
		if _, err := os.Stat(e.blobPath(d)); !os.IsNotExist(err) {
			t.Errorf("blob %s after deleting its manifest and GC: %v", d, err)
		}
	}
}

// TestTagParameters: PUT /v2/<name>/manifests/<digest>?tag=a&tag=b tags
// the manifest, for sha256 and sha512 digests, and answers OCI-Tag.
func TestTagParameters(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.bearer("alice", alicePW, "repository:alice/tp:pull,push")
	im := newSHA512Image(t, 1024)
	e.pushSHA512(tok, "alice/tp", im)
	resp, body := e.do(tok, http.MethodPut, "/v2/alice/tp/manifests/"+im.manD.String()+"?tag=v1&tag=latest", im.manifest,
		"Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp.StatusCode != http.StatusCreated || strings.Join(resp.Header.Values("OCI-Tag"), ",") != "v1,latest" {
		t.Fatalf("PUT with tag parameters = %d %s, OCI-Tag %q", resp.StatusCode, body, resp.Header.Values("OCI-Tag"))
	}
	for _, tag := range []string{"v1", "latest"} {
		resp, body := e.do(tok, http.MethodGet, "/v2/alice/tp/manifests/"+tag, nil, "Accept", "application/vnd.oci.image.manifest.v1+json")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, im.manifest) || resp.Header.Get("Docker-Content-Digest") != im.manD.String() {
			t.Errorf("GET tag %s = %d, Docker-Content-Digest %q", tag, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
		}
	}
	resp, body = e.do(tok, http.MethodGet, "/v2/alice/tp/tags/list", nil)
	if !strings.Contains(string(body), `"latest"`) || !strings.Contains(string(body), `"v1"`) {
		t.Errorf("tags/list = %d %s", resp.StatusCode, body)
	}
	// A bad tag is refused before anything is stored.
	resp, body = e.do(tok, http.MethodPut, "/v2/alice/tp/manifests/"+im.manD.String()+"?tag=-bad", im.manifest,
		"Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "TAG_INVALID") {
		t.Errorf("PUT with tag -bad = %d %s, want 400 TAG_INVALID", resp.StatusCode, body)
	}
	// Tag parameters need push access like any PUT: bob's token has none.
	bobTok := e.bearer("bob", bobPW, "repository:alice/tp:pull,push")
	if resp, _ := e.do(bobTok, http.MethodPut, "/v2/alice/tp/manifests/"+im.manD.String()+"?tag=bob", im.manifest,
		"Content-Type", "application/vnd.oci.image.manifest.v1+json"); resp.StatusCode == http.StatusCreated {
		t.Error("bob tagged alice/tp")
	}
	if resp, _ := e.do(tok, http.MethodHead, "/v2/alice/tp/manifests/bob", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD tag bob = %d, want 404", resp.StatusCode)
	}
}
