package image

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// testdata/dockerd-save holds the metadata of a `docker save` made by
// dockerd 20.10.24 of an image built with the classic builder (one
// imported layer plus one RUN layer).
const (
	goldenID       = "sha256:28d1518048d932335b500a2254ca90f6cb8c1c77a3f11a52ccecba571eaca6f2"
	goldenBaseV1ID = "da8e13e3853a4a2269208da30cbe82276d596b099a007f4230a639fc809e1de3"
	goldenTopV1ID  = "1b2507bea7dee4667a162ab4cd32e2c0d56e9f5d5162a0d779287118173e2b94"
)

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/dockerd-save/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIDsMatchDockerd(t *testing.T) {
	raw := golden(t, strings.TrimPrefix(goldenID, "sha256:")+".json")
	if got := ID(raw); got != goldenID {
		t.Errorf("ID = %s, want %s", got, goldenID)
	}
	c, err := ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Re-marshalling gives dockerd's bytes: field order, escaping,
	// container_config and all.
	again, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(raw) {
		t.Errorf("Marshal(ParseConfig(x)) differs from dockerd's config\n got: %s\nwant: %s", again, raw)
	}
	d := c.DiffIDs()
	if len(d) != 2 {
		t.Fatalf("diff_ids = %v", d)
	}
	if got, want := ChainID(d[:1]), d[0]; got != want {
		t.Errorf("ChainID(one) = %s, want %s", got, want)
	}
	wantChain := digest.FromString(string(d[0]) + " " + string(d[1]))
	if got := ChainID(d); got != wantChain {
		t.Errorf("ChainID = %s, want %s", got, wantChain)
	}
	if ChainID(nil) != "" {
		t.Errorf("ChainID(nil) not empty")
	}
}

func TestLegacyLayerJSONMatchesDockerd(t *testing.T) {
	raw := golden(t, strings.TrimPrefix(goldenID, "sha256:")+".json")
	c, _ := ParseConfig(raw)
	d := c.DiffIDs()
	tests := []struct {
		name   string
		img    v1Image
		chain  digest.Digest
		parent digest.Digest
		wantID string
		file   string
	}{
		{"base layer", v1Image{Created: epoch()}, ChainID(d[:1]), "", goldenBaseV1ID, "base-layer.json"},
		{"top layer", v1Of(c), ChainID(d), digest.NewDigestFromEncoded(digest.SHA256, goldenBaseV1ID), goldenTopV1ID, "top-layer.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v1ID(tc.img, tc.chain, tc.parent)
			if err != nil {
				t.Fatal(err)
			}
			if id.Encoded() != tc.wantID {
				t.Errorf("v1ID = %s, want %s", id.Encoded(), tc.wantID)
			}
			img := tc.img
			img.ID = id.Encoded()
			if tc.parent != "" {
				img.Parent = tc.parent.Encoded()
			}
			img.OS = c.OS
			b, _ := json.Marshal(img)
			if want := golden(t, tc.file); string(b) != string(want) {
				t.Errorf("layer json\n got: %s\nwant: %s", b, want)
			}
		})
	}
}
