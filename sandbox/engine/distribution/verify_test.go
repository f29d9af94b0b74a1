package distribution

import (
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/sandbox/engine/image"
	"github.com/opencontainers/go-digest"
)

// victimSetup is a store where view "victim" holds an image with a secret
// layer, and a registry the attacker controls.
type victimSetup struct {
	c        *Client
	store    *image.Store
	reg      *fakeRegistry
	victimID digest.Digest
	secret   digest.Digest // the victim's layer
	fakeTar  []byte
}

func newVictimSetup(t *testing.T) *victimSetup {
	t.Helper()
	reg := newFakeRegistry(t)
	c, store := testClient(t, Options{HubStandIn: reg.host})
	secretTar := layerTar(t, "secret", "VICTIM-SECRET")
	victim := testView(t, store, "victim")
	id := putImage(t, victim, "victim", secretTar)
	return &victimSetup{c: c, store: store, reg: reg, victimID: id, secret: digest.FromBytes(secretTar), fakeTar: layerTar(t, "innocent", "x")}
}

// checkNoAccess: the attacker's view got nothing of the victim's.
func (vs *victimSetup) checkNoAccess(t *testing.T, v *image.View) {
	t.Helper()
	if n := len(v.List(true)); n != 0 {
		t.Errorf("the attacker's view has %d images", n)
	}
	if v.HasLayer(vs.secret) {
		t.Error("the attacker's view reaches the victim's layer")
	}
	if _, err := v.Image(vs.victimID); err == nil {
		t.Error("the attacker's view has the victim's image")
	}
	for _, r := range vs.c.Blobs(vs.secret) {
		if r.Digest == digest.FromBytes(gzipped(t, vs.fakeTar)) {
			t.Errorf("the attacker's blob is recorded as holding the victim's layer: %+v", r)
		}
	}
}

// TestPullVerifiesClaimedLayers: a manifest pairing the attacker's blob
// with the victim's diffID (in a new config, or in the victim's very
// config) makes the engine download and hash the blob, and the pull fails:
// the store holding the diffID is no proof.
func TestPullVerifiesClaimedLayers(t *testing.T) {
	tests := []struct {
		name   string
		config func(vs *victimSetup) []byte
	}{
		{"config claiming the layer", func(vs *victimSetup) []byte {
			return configFor(t, "evil", []digest.Digest{vs.secret})
		}},
		{"the victim's own config", func(vs *victimSetup) []byte {
			raw, err := vs.store.RawConfig(vs.victimID)
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := newVictimSetup(t)
			img := makeImage(t, [][]byte{vs.fakeTar}, []digest.Digest{vs.secret}, tc.config(vs))
			vs.reg.add("evil/claim:1", img)
			attacker := testView(t, vs.store, "attacker")
			_, m, err := pull(t, vs.c, attacker, vs.reg.host+"/evil/claim:1")
			if err == nil || !strings.Contains(err.Error(), "filesystem layer verification failed") {
				t.Fatalf("pull of a claimed layer = %v; want a verification failure\n%s", err, m.text())
			}
			if strings.Contains(m.text(), "Already exists") {
				t.Errorf("the pull said a layer it never checked already exists:\n%s", m.text())
			}
			if n := vs.reg.gets(digest.FromBytes(img.layers[0])); n != 1 {
				t.Errorf("the claimed blob was downloaded %d times, want 1", n)
			}
			vs.checkNoAccess(t, attacker)
			// The victim still has their image.
			if _, err := testView(t, vs.store, "victim").Image(vs.victimID); err != nil {
				t.Errorf("victim's image: %v", err)
			}
		})
	}
}

// TestPullReuse: what a pull may take from the store without a download:
// a layer the view already sees, or a blob this engine hashed before (the
// class's pull-through cache); a stranger's first pull of a blob the store
// has only through another view downloads it.
func TestPullReuse(t *testing.T) {
	reg := newFakeRegistry(t)
	c, store := testClient(t, Options{HubStandIn: reg.host})
	baseTar := layerTar(t, "base", "shared")
	ownTar := layerTar(t, "own", "mine")
	base := makeImage(t, [][]byte{baseTar}, nil, nil)
	reg.add("class/base:1", base)
	own := makeImage(t, [][]byte{ownTar}, nil, nil)
	reg.add("alice/own:1", own)
	baseBlob, ownBlob := digest.FromBytes(base.layers[0]), digest.FromBytes(own.layers[0])
	alice := testView(t, store, "alice")
	putImage(t, alice, "built", ownTar)

	tests := []struct {
		view      string
		ref       string
		blob      digest.Digest
		wantGets  int
		wantReuse bool
	}{
		{"alice", "alice/own:1", ownBlob, 0, true},    // her own layer: no download, as dockerd
		{"bob", "alice/own:1", ownBlob, 1, false},     // in the store through alice only: downloaded
		{"carol", "alice/own:1", ownBlob, 1, true},    // hashed by bob's pull: reused
		{"alice", "class/base:1", baseBlob, 1, false}, // first pull of the class
		{"bob", "class/base:1", baseBlob, 1, true},    // the pull-through cache
	}
	for _, tc := range tests {
		v := testView(t, store, tc.view)
		_, m, err := pull(t, c, v, reg.host+"/"+tc.ref)
		if err != nil {
			t.Fatalf("%s pulls %s: %v", tc.view, tc.ref, err)
		}
		if got := reg.gets(tc.blob); got != tc.wantGets {
			t.Errorf("%s pulls %s: blob downloaded %d times in all, want %d", tc.view, tc.ref, got, tc.wantGets)
		}
		if got := !strings.Contains(m.text(), "Pull complete"); got != tc.wantReuse {
			t.Errorf("%s pulls %s: reused = %v, want %v\n%s", tc.view, tc.ref, got, tc.wantReuse, m.text())
		}
	}
}

// TestPullConcurrentClaims: two pulls of one blob at once share one
// download, and each checks the content against its own config: the one
// claiming the victim's diffID fails, the honest one succeeds.
func TestPullConcurrentClaims(t *testing.T) {
	vs := newVictimSetup(t)
	honest := makeImage(t, [][]byte{vs.fakeTar}, nil, nil)
	evil := makeImage(t, [][]byte{vs.fakeTar}, []digest.Digest{vs.secret}, nil)
	vs.reg.add("evil/honest:1", honest)
	vs.reg.add("evil/claim:1", evil)
	blob := digest.FromBytes(honest.layers[0])
	started, release := vs.reg.holdBlob(t, blob)
	first, second := testView(t, vs.store, "attacker-1"), testView(t, vs.store, "attacker-2")
	errs := make(chan error, 2)
	go func() {
		_, _, err := pull(t, vs.c, first, vs.reg.host+"/evil/honest:1")
		errs <- err
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the honest pull never asked for the blob")
	}
	go func() {
		_, _, err := pull(t, vs.c, second, vs.reg.host+"/evil/claim:1")
		errs <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		vs.c.mu.Lock()
		f := vs.c.flights[blob]
		joined := f != nil && f.waiters == 2
		vs.c.mu.Unlock()
		if joined {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second pull did not join the download")
		}
		time.Sleep(5 * time.Millisecond)
	}
	release()
	var failed, ok int
	for range 2 {
		if err := <-errs; err == nil {
			ok++
		} else if strings.Contains(err.Error(), "filesystem layer verification failed") {
			failed++
		} else {
			t.Errorf("pull: %v", err)
		}
	}
	if ok != 1 || failed != 1 {
		t.Errorf("%d pulls succeeded, %d failed verification; want 1 and 1", ok, failed)
	}
	if vs.reg.gets(blob) != 1 {
		t.Errorf("the blob was downloaded %d times, want once", vs.reg.gets(blob))
	}
	vs.checkNoAccess(t, second)
	if len(first.List(true)) != 1 {
		t.Error("the honest pull left no image")
	}
}
