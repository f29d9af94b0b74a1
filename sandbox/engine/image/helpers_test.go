package image

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/opencontainers/go-digest"
)

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "engine"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func view(t testing.TB, s *Store, name string) *View {
	t.Helper()
	v, err := s.View(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// layerTar returns a layer tar holding the given files (name -> body).
func layerTar(t testing.TB, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		hdr := &tar.Header{Name: files[i], Typeflag: tar.TypeReg, Mode: 0o100644, Size: int64(len(files[i+1])),
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[i+1]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// putImage stores layers and a config on top of parent's layers, adds
// it to v and returns its ID. created orders images (seconds).
func putImage(t testing.TB, v *View, parent digest.Digest, builtLocally bool, created int64, layers ...[]byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	var diffIDs []digest.Digest
	if parent != "" {
		pc, err := v.Store().Config(parent)
		if err != nil {
			t.Fatal(err)
		}
		diffIDs = append(diffIDs, pc.DiffIDs()...)
	}
	for _, l := range layers {
		info, err := v.Store().PutLayer(ctx, bytes.NewReader(l))
		if err != nil {
			t.Fatal(err)
		}
		diffIDs = append(diffIDs, info.DiffID)
	}
	c := &Config{Architecture: "amd64", OS: "linux", Created: time.Unix(created, 0).UTC(),
		Config:  &container.Config{Cmd: []string{"sh"}, Labels: map[string]string{"n": time.Unix(created, 0).String()}},
		RootFS:  &RootFS{Type: "layers", DiffIDs: diffIDs},
		History: []History{{Created: time.Unix(created, 0).UTC(), CreatedBy: "test"}}}
	raw, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Store().PutImage(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Add(id, parent, builtLocally); err != nil {
		t.Fatal(err)
	}
	return id
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
