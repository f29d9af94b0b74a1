package registry

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
)

// TestQuotaOncePerLearner: a blob counts once per learner, whichever of
// their repositories link it; mounting it or re-uploading it by digest
// into another of their repositories costs nothing, even at the limit.
// Blobs shared with other namespaces count in full for each.
func TestQuotaOncePerLearner(t *testing.T) {
	const limit = 256 << 10
	e := newEnv(t, func(o *Options) { o.Quota = limit })
	img := randomImage(t, 150<<10, 1)
	if err := e.push("alice/one:latest", "alice", alicePW, img); err != nil {
		t.Fatal(err)
	}
	used, err := e.reg.quota.usage("alice")
	if err != nil || used < 150<<10 || used > limit {
		t.Fatalf("usage after the first push = %d, %v", used, err)
	}

	// The same image into alice/two: the client mounts its layers from
	// alice/one (150 KiB more would not fit).
	pulled, err := remote.Image(e.ref("alice/one:latest"), creds("alice", alicePW))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(e.ref("alice/two:latest"), pulled, creds("alice", alicePW)); err != nil {
		t.Fatalf("push of the same image into alice/two: %v", err)
	}
	// Uploaded again by digest into alice/three: its bytes are not
	// charged twice either.
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	data, _ := io.ReadAll(rc)
	rc.Close()
	tok := e.bearer("alice", alicePW, "repository:alice/three:pull,push")
	if resp := e.uploadBlob(tok, "alice/three", digest.Digest(ld.String()), data); resp.StatusCode != http.StatusCreated {
		t.Errorf("re-upload of a layer alice stores = %d, want 201", resp.StatusCode)
	}
	if after, err := e.reg.quota.usage("alice"); err != nil || after != used {
		t.Errorf("usage after mount and re-upload = %d, %v; want %d", after, err, used)
	}

	// New content still meets the limit.
	err = e.push("alice/four:latest", "alice", alicePW, randomImage(t, 150<<10, 1))
	if err == nil || !strings.Contains(err.Error(), "quota exceeded") {
		t.Errorf("push of new content over the limit: err = %v, want quota exceeded", err)
	}

	// Shared with another namespace: it counts for each. The instructor
	// publishes a base, bob builds on it (mounting its layers).
	base := randomImage(t, 100<<10, 1)
	if err := e.push("library/base:1", "teacher", teacherPW, base); err != nil {
		t.Fatal(err)
	}
	pb, err := remote.Image(e.ref("library/base:1"), creds("bob", bobPW))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(e.ref("bob/derived:1"), pb, creds("bob", bobPW)); err != nil {
		t.Fatal(err)
	}
	bl, _ := base.Layers()
	size, _ := bl[0].Size()
	if bobUsed, err := e.reg.quota.usage("bob"); err != nil || bobUsed < size {
		t.Errorf("bob's usage = %d, %v; want at least the shared layer's %d bytes", bobUsed, err, size)
	}
}
