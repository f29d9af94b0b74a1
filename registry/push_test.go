package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func (e *testEnv) ref(repo string) name.Reference {
	e.t.Helper()
	r, err := name.ParseReference(e.opts.Addr+"/"+repo, name.Insecure)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func creds(user, pw string) remote.Option {
	if user == "" {
		return remote.WithAuth(authn.Anonymous)
	}
	return remote.WithAuth(&authn.Basic{Username: user, Password: pw})
}

func (e *testEnv) push(repo, user, pw string, img v1.Image) error {
	return remote.Write(e.ref(repo), img, creds(user, pw), remote.WithContext(context.Background()))
}

func randomImage(t *testing.T, size int64, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// transportCode is the registry's first error code in err ("" if none).
func transportCode(err error) string {
	var te *transport.Error
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return string(te.Errors[0].Code)
	}
	if errors.As(err, &te) && te.StatusCode == http.StatusUnauthorized {
		return "UNAUTHORIZED" // a HEAD has no body
	}
	return ""
}

func TestPushPullPolicy(t *testing.T) {
	e := newEnv(t, nil)
	img := randomImage(t, 1024, 3)
	if err := e.push("alice/app:latest", "alice", alicePW, img); err != nil {
		t.Fatalf("alice pushes alice/app: %v", err)
	}
	for _, who := range []struct{ user, pw string }{{"alice", alicePW}, {"teacher", teacherPW}} {
		got, err := remote.Image(e.ref("alice/app:latest"), creds(who.user, who.pw))
		if err != nil {
			t.Fatalf("%s pulls alice/app: %v", who.user, err)
		}
		if err := validate.Image(got); err != nil {
			t.Errorf("%s pulls alice/app: invalid image: %v", who.user, err)
		}
		if digestOf(t, got) != digestOf(t, img) {
			t.Errorf("%s pulls alice/app: digest %s, pushed %s", who.user, digestOf(t, got), digestOf(t, img))
		}
	}

	// Another learner and anonymous may not read it; another learner may
	// not push into it.
	if _, err := remote.Image(e.ref("alice/app:latest"), creds("bob", bobPW)); transportCode(err) != "UNAUTHORIZED" && transportCode(err) != "DENIED" {
		t.Errorf("bob pulls alice/app: err = %v, want unauthorized/denied", err)
	}
	if _, err := remote.Image(e.ref("alice/app:latest"), creds("", "")); err == nil {
		t.Error("anonymous pulls alice/app: no error")
	}
	err := e.push("alice/app:bob", "bob", bobPW, randomImage(t, 100, 1))
	if err == nil {
		t.Fatal("bob pushes into alice/app: no error")
	}
	if c := transportCode(err); c != "DENIED" && c != "UNAUTHORIZED" {
		t.Errorf("bob pushes into alice/app: err = %v", err)
	}

	// The instructor publishes library/base; learners and anonymous pull it.
	base := randomImage(t, 2048, 2)
	if err := e.push("library/base:1", "teacher", teacherPW, base); err != nil {
		t.Fatalf("teacher pushes library/base: %v", err)
	}
	if err := e.push("library/base:2", "alice", alicePW, base); err == nil {
		t.Error("alice pushes library/base: no error")
	}
	for _, who := range []struct{ user, pw string }{{"alice", alicePW}, {"bob", bobPW}, {"", ""}} {
		got, err := remote.Image(e.ref("library/base:1"), creds(who.user, who.pw))
		if err != nil {
			t.Fatalf("%q pulls library/base: %v", who.user, err)
		}
		if err := validate.Image(got); err != nil {
			t.Errorf("%q pulls library/base: %v", who.user, err)
		}
	}

	// A learner's image built on the library one mounts the shared layers.
	if err := e.push("bob/derived:latest", "bob", bobPW, base); err != nil {
		t.Fatalf("bob pushes base layers into bob/derived: %v", err)
	}
}

func TestManifestMissingBlobRejected(t *testing.T) {
	e := newEnv(t, nil)
	img := randomImage(t, 512, 1)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	_, claims := e.token("alice", alicePW, "repository:alice/broken:pull,push")
	req, _ := http.NewRequest(http.MethodPut, e.url("/v2/alice/broken/manifests/latest"), bytes.NewReader(raw))
	req.Header.Set("Content-Type", string(mt))
	req.Header.Set("Authorization", "Bearer "+claims["_raw"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(buf.String(), "BLOB_UNKNOWN") {
		t.Errorf("PUT manifest with missing blobs = %d %s, want 400 MANIFEST_BLOB_UNKNOWN", resp.StatusCode, buf.String())
	}
}

func TestQuota(t *testing.T) {
	const limit = 256 << 10
	e := newEnv(t, func(o *Options) { o.Quota = limit })
	small := randomImage(t, 16<<10, 2)
	if err := e.push("alice/small:latest", "alice", alicePW, small); err != nil {
		t.Fatalf("push under quota: %v", err)
	}
	big := randomImage(t, 300<<10, 1)
	err := e.push("alice/big:latest", "alice", alicePW, big)
	if err == nil || !strings.Contains(err.Error(), "quota exceeded") || transportCode(err) != "DENIED" {
		t.Fatalf("push over quota: err = %v, want DENIED quota exceeded", err)
	}
	// Nothing of the refused push is visible or kept.
	if _, err := remote.Image(e.ref("alice/big:latest"), creds("alice", alicePW)); err == nil {
		t.Error("alice/big:latest exists after a refused push")
	}
	uploads := filepath.Join(e.opts.Dir, "storage/docker/registry/v2/repositories/alice/big/_uploads")
	// The cut-off upload is removed; an upload the client started in
	// parallel and abandoned may stay (empty) until the purge.
	ents, _ := os.ReadDir(uploads)
	for _, en := range ents {
		if fi, err := os.Stat(filepath.Join(uploads, en.Name(), "data")); err == nil && fi.Size() >= 64<<10 {
			t.Errorf("partial upload %s of %d bytes left", en.Name(), fi.Size())
		}
	}
	used, err := e.reg.quota.usage("alice")
	if err != nil {
		t.Fatal(err)
	}
	if used > limit {
		t.Errorf("usage after refused push = %d, over the %d limit", used, limit)
	}
	// Quotas are per learner; instructors have none.
	if err := e.push("bob/big:latest", "bob", bobPW, randomImage(t, 200<<10, 1)); err != nil {
		t.Errorf("bob's push under his own quota: %v", err)
	}
	if err := e.push("library/big:latest", "teacher", teacherPW, randomImage(t, 600<<10, 1)); err != nil {
		t.Errorf("instructor push: %v", err)
	}
	// The small image still pulls.
	if got, err := remote.Image(e.ref("alice/small:latest"), creds("alice", alicePW)); err != nil || validate.Image(got) != nil {
		t.Errorf("alice/small after refused push: %v", err)
	}
}

func TestRestartAndGC(t *testing.T) {
	e := newEnv(t, nil)
	keep := randomImage(t, 4096, 3)
	if err := e.push("alice/keep:v1", "alice", alicePW, keep); err != nil {
		t.Fatal(err)
	}
	// An orphan: a layer uploaded without any manifest referring to it.
	orphan, err := random.Layer(8192, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := name.NewRepository(e.opts.Addr+"/alice/keep", name.Insecure)
	if err := remote.WriteLayer(repo, orphan, creds("alice", alicePW)); err != nil {
		t.Fatal(err)
	}

	e.stop()
	// Offline GC while stopped; the lock keeps it off a running registry.
	res, err := GC(context.Background(), e.opts.Dir, GCOptions{})
	if err != nil {
		t.Fatalf("GC() = %v", err)
	}
	// The orphan layer is gone: it was the only unreferenced blob.
	if removed := res.BlobsBefore - res.BlobsAfter; removed != 1 {
		t.Errorf("GC removed %d blobs, want 1 (%s)", removed, res)
	}
	e.start()
	if _, err := GC(context.Background(), e.opts.Dir, GCOptions{}); !errors.Is(err, ErrLocked) {
		t.Errorf("GC on a running registry = %v, want ErrLocked", err)
	}

	got, err := remote.Image(e.ref("alice/keep:v1"), creds("alice", alicePW))
	if err != nil {
		t.Fatalf("pull after restart and GC: %v", err)
	}
	if err := validate.Image(got); err != nil {
		t.Errorf("image after restart and GC: %v", err)
	}
	if digestOf(t, got) != digestOf(t, keep) {
		t.Error("digest changed across restart")
	}
	od, _ := orphan.Digest()
	_, claims := e.token("alice", alicePW, "repository:alice/keep:pull")
	req, _ := http.NewRequest(http.MethodHead, e.url(fmt.Sprintf("/v2/alice/keep/blobs/%s", od)), nil)
	req.Header.Set("Authorization", "Bearer "+claims["_raw"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("HEAD orphan blob after GC = %d, want 404", resp.StatusCode)
	}

	// Online GC: nothing more to collect, the image stays.
	res, err = e.reg.GC(context.Background(), GCOptions{})
	if err != nil || res.BlobsBefore != res.BlobsAfter {
		t.Errorf("online GC = %s, %v; want nothing removed", res, err)
	}
}
