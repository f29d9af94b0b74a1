package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// ociArchive builds an OCI-layout archive of one image whose config claims
// diffID for the (gzip-compressed) layer.
func ociArchive(t *testing.T, layer []byte, diffID digest.Digest, name string) []archEntry {
	t.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer)
	zw.Close()
	cfg := `{"architecture":"amd64","created":"2024-01-01T00:00:00Z","os":"linux","rootfs":{"type":"layers","diff_ids":["` + diffID.String() + `"]}}`
	cfgD := digest.FromString(cfg)
	layerD := digest.FromBytes(gz.Bytes())
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfgD.String() + `","size":` + itoa(len(cfg)) + `},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + layerD.String() + `","size":` + itoa(gz.Len()) + `}]}`
	mD := digest.FromString(manifest)
	index := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + mD.String() + `","size":` + itoa(len(manifest)) + `,"annotations":{"io.containerd.image.name":"` + name + `"}}]}`
	return []archEntry{
		{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`},
		{name: "blobs/sha256/" + cfgD.Encoded(), body: cfg},
		{name: "blobs/sha256/" + mD.Encoded(), body: manifest},
		{name: "blobs/sha256/" + layerD.Encoded(), body: gz.String()},
		{name: "index.json", body: index},
	}
}

// TestLoadClaimedLayer: an archive whose config claims a layer another
// view (another learner) has, with other content, fails exactly as one
// claiming a digest nobody has, in both archive formats; the loader gets
// neither an image nor the layer, and the owner's layer is unchanged.
func TestLoadClaimedLayer(t *testing.T) {
	ctx := context.Background()
	secret := layerTar(t, "secret", "VICTIM-SECRET")
	fake := layerTar(t, "innocent", "x")
	formats := []struct {
		name  string
		build func(claim digest.Digest) []archEntry
	}{
		{"docker-save", func(claim digest.Digest) []archEntry {
			e, _ := dockerSave(t, fake, claim, []string{"claim:latest"})
			return e
		}},
		{"oci-layout", func(claim digest.Digest) []archEntry {
			return ociArchive(t, fake, claim, "docker.io/library/claim:latest")
		}},
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			s := openStore(t)
			victim := view(t, s, "victim")
			putImage(t, victim, "", true, 100, secret)
			known := digest.FromBytes(secret)
			if !s.HasLayer(known) {
				t.Fatal("the victim's layer is not stored")
			}
			random := digest.FromString("nobody has this layer")
			attacker := view(t, s, "attacker")
			errs := map[string]string{}
			for label, claim := range map[string]digest.Digest{"known": known, "random": random} {
				err := attacker.Load(ctx, bytes.NewReader(archiveTar(t, f.build(claim))), nil)
				if err == nil {
					t.Fatalf("load claiming the %s layer succeeded", label)
				}
				if !strings.Contains(err.Error(), "invalid diffID for layer 0") {
					t.Errorf("load claiming the %s layer: %v; want the diffID refusal", label, err)
				}
				errs[label] = strings.ReplaceAll(err.Error(), claim.String(), "CLAIM")
			}
			if errs["known"] != errs["random"] {
				t.Errorf("a claimed layer the store has fails unlike an unknown one:\nknown:  %s\nrandom: %s", errs["known"], errs["random"])
			}
			if n := len(attacker.List(true)); n != 0 {
				t.Errorf("the failed loads left %d images in the loader's view", n)
			}
			if _, err := attacker.Resolve("claim:latest"); err == nil {
				t.Error("the failed load left a tag")
			}
			if attacker.HasLayer(known) {
				t.Error("the loader's view reaches the victim's layer")
			}
			if !victim.HasLayer(known) || !s.HasLayer(known) {
				t.Error("the victim lost their layer")
			}
			var out bytes.Buffer
			rc, err := s.OpenLayer(known)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = out.ReadFrom(rc)
			rc.Close()
			if !bytes.Equal(out.Bytes(), secret) {
				t.Error("the victim's layer blob changed")
			}
		})
	}
}

// TestLoadKnownLayerReadAgain: a layer the store holds is still read and
// hashed on load: the same content loads, other content under its diffID
// fails.
func TestLoadKnownLayerReadAgain(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	owner := view(t, s, "owner")
	layer := layerTar(t, "f", "data")
	putImage(t, owner, "", true, 100, layer)
	other := view(t, s, "other")
	tests := []struct {
		name    string
		content []byte
		wantErr string
	}{
		{"same content", layer, ""},
		{"other content", layerTar(t, "f", "DATA"), "invalid diffID for layer 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			entries, id := dockerSave(t, tc.content, digest.FromBytes(layer), []string{"copy:1"})
			err := other.Load(ctx, bytes.NewReader(archiveTar(t, entries)), nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Load = %v", err)
				}
				if got, err := other.Resolve("copy:1"); err != nil || got != id {
					t.Errorf("Resolve = %v, %v; want %v", got, err, id)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Load = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
