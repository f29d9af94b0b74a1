package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

type archEntry struct {
	name, body, link string
	typ              byte
}

func archiveTar(t *testing.T, entries []archEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: 0o644, ModTime: time.Unix(0, 0)}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

// dockerSave builds a docker-save archive of one image with one layer.
func dockerSave(t *testing.T, layer []byte, diffID digest.Digest, tags []string) ([]archEntry, digest.Digest) {
	cfg := `{"architecture":"amd64","created":"2024-01-01T00:00:00Z","os":"linux","rootfs":{"type":"layers","diff_ids":["` + diffID.String() + `"]}}`
	id := digest.FromString(cfg)
	m, _ := json.Marshal([]manifestItem{{Config: id.Encoded() + ".json", RepoTags: tags, Layers: []string{"l1/layer.tar"}}})
	return []archEntry{
		{name: "l1/", typ: tar.TypeDir},
		{name: "l1/layer.tar", body: string(layer)},
		{name: id.Encoded() + ".json", body: cfg},
		{name: "manifest.json", body: string(m)},
	}, id
}

func TestLoadDockerSave(t *testing.T) {
	s := openStore(t)
	v := view(t, s, "default")
	layer := layerTar(t, "f", "data")
	entries, id := dockerSave(t, layer, digest.FromBytes(layer), []string{"demo:1"})
	var lines []string
	if err := v.Load(context.Background(), bytes.NewReader(archiveTar(t, entries)), func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines, "") != "Loaded image: demo:1\n" {
		t.Errorf("output = %q", lines)
	}
	if got, err := v.Resolve("demo:1"); err != nil || got != id {
		t.Errorf("Resolve = %v, %v; want %v", got, err, id)
	}
	blobs := countFiles(t, s.path("blobs", "sha256"))
	// Loading the same thing twice stores nothing new; untagged prints the ID.
	entries, _ = dockerSave(t, layer, digest.FromBytes(layer), nil)
	lines = nil
	if err := v.Load(context.Background(), bytes.NewReader(archiveTar(t, entries)), func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines, "") != "Loaded image ID: "+id.String()+"\n" {
		t.Errorf("output = %q", lines)
	}
	if got := countFiles(t, s.path("blobs", "sha256")); got != blobs {
		t.Errorf("loading again stored new blobs: %d -> %d", blobs, got)
	}
}

func TestLoadHostile(t *testing.T) {
	layer := layerTar(t, "f", "data")
	good, _ := dockerSave(t, layer, digest.FromBytes(layer), []string{"evil:latest"})
	wrongDiff, _ := dockerSave(t, layer, digest.FromString("other"), []string{"evil:latest"})
	badLayer := layerTar(t, "../../escape", "x")
	escaping, _ := dockerSave(t, badLayer, digest.FromBytes(badLayer), []string{"evil:latest"})
	tests := []struct {
		name    string
		entries []archEntry
		msg     string
	}{
		{"path traversal", append([]archEntry{{name: "../../etc/x", body: "x"}}, good...), "outside the archive"},
		{"absolute path", append([]archEntry{{name: "/etc/x", body: "x"}}, good...), "outside the archive"},
		{"missing layer", good[2:], "l1/layer.tar missing"},
		{"wrong diffID", wrongDiff, "invalid diffID for layer 0"},
		{"layer escaping", escaping, "apply layer"},
		{"symlink out of the archive", append([]archEntry{{name: "l1/", typ: tar.TypeDir}, {name: "l1/layer.tar", link: "../../../etc/passwd", typ: tar.TypeSymlink}}, good[2:]...), "outside the archive"},
		{"no manifest", good[:2], "no manifest.json or index.json"},
		{"bad manifest", append(good[:3:3], archEntry{name: "manifest.json", body: "{"}), "invalid manifest.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			v := view(t, s, "default")
			err := v.Load(context.Background(), bytes.NewReader(archiveTar(t, tc.entries)), nil)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Load = %v, want error containing %q", err, tc.msg)
			}
			if n := len(v.List(true)); n != 0 {
				t.Errorf("failed load left %d images", n)
			}
			if _, err := v.Resolve("evil"); err == nil {
				t.Errorf("failed load left a tag")
			}
			if countFiles(t, s.path("tmp")) != 0 {
				t.Errorf("failed load left staging files")
			}
			if _, err := s.GC(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLoadOCILayout(t *testing.T) {
	layer := layerTar(t, "hello", "oci")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer)
	zw.Close()
	cfg := `{"architecture":"amd64","created":"2024-01-01T00:00:00Z","os":"linux","rootfs":{"type":"layers","diff_ids":["` + digest.FromBytes(layer).String() + `"]}}`
	cfgD := digest.FromString(cfg)
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfgD.String() + `","size":` + itoa(len(cfg)) + `},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + digest.FromBytes(gz.Bytes()).String() + `","size":` + itoa(gz.Len()) + `}]}`
	mD := digest.FromString(manifest)
	index := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + mD.String() + `","size":` + itoa(len(manifest)) + `,"annotations":{"io.containerd.image.name":"docker.io/library/ocidemo:2","org.opencontainers.image.ref.name":"2"}}]}`
	entries := []archEntry{
		{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`},
		{name: "blobs/sha256/" + cfgD.Encoded(), body: cfg},
		{name: "blobs/sha256/" + mD.Encoded(), body: manifest},
		{name: "blobs/sha256/" + digest.FromBytes(gz.Bytes()).Encoded(), body: gz.String()},
		{name: "index.json", body: index},
	}
	s := openStore(t)
	v := view(t, s, "default")
	var out []string
	if err := v.Load(context.Background(), bytes.NewReader(archiveTar(t, entries)), func(l string) { out = append(out, l) }); err != nil {
		t.Fatal(err)
	}
	if id, err := v.Resolve("ocidemo:2"); err != nil || id != cfgD || strings.Join(out, "") != "Loaded image: ocidemo:2\n" {
		t.Errorf("Resolve = %v, %v; output %q", id, err, out)
	}
	// A tampered blob is refused.
	entries[1].body = strings.Replace(cfg, "amd64", "arm64", 1)
	s2 := openStore(t)
	v2 := view(t, s2, "default")
	if err := v2.Load(context.Background(), bytes.NewReader(archiveTar(t, entries)), nil); err == nil || !strings.Contains(err.Error(), "has digest") {
		t.Errorf("Load(tampered) = %v", err)
	}
	if len(v2.List(true)) != 0 {
		t.Errorf("tampered load left images")
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestSaveLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	v := view(t, s, "default")
	base := putImage(t, v, "", false, 100, layerTar(t, "a", "1"))
	top := putImage(t, v, base, true, 200, layerTar(t, "b", "2"), layerTar(t, "a", "1"))
	v.Tag(top, "app:v1")
	v.Tag(top, "app:v2")
	var buf bytes.Buffer
	if err := v.Save(ctx, []string{"app"}, &buf); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t)
	v2 := view(t, s2, "default")
	var out []string
	if err := v2.Load(ctx, bytes.NewReader(buf.Bytes()), func(l string) { out = append(out, l) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(out, "") != "Loaded image: app:v1\nLoaded image: app:v2\n" {
		t.Errorf("load output = %q", out)
	}
	for _, tag := range []string{"app:v1", "app:v2"} {
		if id, err := v2.Resolve(tag); err != nil || id != top {
			t.Errorf("Resolve(%s) = %v, %v", tag, id, err)
		}
	}
	var again bytes.Buffer
	if err := v2.Save(ctx, []string{"app"}, &again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Errorf("save after load differs from the first save")
	}
}
