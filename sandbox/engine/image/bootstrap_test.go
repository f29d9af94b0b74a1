package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"testing"
)

func TestBootstrapBusybox(t *testing.T) {
	if _, err := os.Stat(BusyboxBinary); err != nil {
		t.Fatalf("%s missing: apt-get install busybox-static (%v)", BusyboxBinary, err)
	}
	ctx := context.Background()
	s1, s2 := openStore(t), openStore(t)
	id1, err := BootstrapBusybox(ctx, s1)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := BootstrapBusybox(ctx, s2)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 {
		t.Errorf("bootstrap not deterministic: %s vs %s", id1, id2)
	}
	blobs := countFiles(t, s1.path("blobs", "sha256"))
	if id, err := BootstrapBusybox(ctx, s1); err != nil || id != id1 || countFiles(t, s1.path("blobs", "sha256")) != blobs {
		t.Errorf("second bootstrap: %v %v, blobs %d", id, err, countFiles(t, s1.path("blobs", "sha256")))
	}
	// Visible in every view as a pulled image.
	v := view(t, s1, "sandbox-x")
	if got, err := v.Resolve("busybox"); err != nil || got != id1 {
		t.Errorf("Resolve(busybox) in a sandbox view = %v, %v", got, err)
	}
	c, _ := s1.Config(id1)
	if c.Config.Labels[StandInLabel] != "true" || len(c.Config.Cmd) != 1 || c.Config.Cmd[0] != "sh" {
		t.Errorf("config = %+v", c.Config)
	}
	dirs, _ := s1.Layers(id1)
	for _, p := range []string{"bin/sh", "bin/httpd", "bin/wget", "etc/passwd"} {
		if _, err := os.Stat(dirs[0] + "/" + p); err != nil {
			t.Errorf("layer lacks %s: %v", p, err)
		}
	}
	if fi, err := os.Stat(dirs[0] + "/tmp"); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("/tmp mode = %v, %v", fi.Mode(), err)
	}

	// The saved manifest names the config by the image ID.
	var buf bytes.Buffer
	if err := v.Save(ctx, []string{"busybox:latest"}, &buf); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var m []manifestItem
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 {
		t.Fatalf("manifest: %s %v", files["manifest.json"], err)
	}
	if m[0].Config != id1.Encoded()+".json" || ID(files[m[0].Config]) != id1 {
		t.Errorf("manifest config %s does not hash to %s", m[0].Config, id1)
	}
	if ID(files[m[0].Layers[0]]) != c.DiffIDs()[0] {
		t.Errorf("layer.tar does not hash to the diff_id")
	}
}
