package image

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A read-only open of a store another process writes (labd test --data
// beside labd serve): it reads and saves the base images, and removes,
// creates or changes nothing, the writer's staging files least of all.
func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	w := openStore(t) // the writer, e.g. labd serve
	base := view(t, w, BaseView)
	id := putImage(t, base, "", false, 100, layerTar(t, "bin/sh", "busybox"))
	if err := base.Tag(id, "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	// The writer at work: a blob and a layer being staged, and a blob of
	// a build in progress that no view references yet.
	staged, err := os.CreateTemp(w.path("tmp"), "blob-")
	if err != nil {
		t.Fatal(err)
	}
	staged.Close()
	if err := os.MkdirAll(w.path("tmp", "layer-1", "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	fresh, _, err := w.PutBlob(strings.NewReader("a build in progress"))
	if err != nil {
		t.Fatal(err)
	}
	viewFile := w.path("views", BaseView+".json")
	viewBytes, err := os.ReadFile(viewFile)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() []string {
		var paths []string
		filepath.WalkDir(w.Dir(), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
			return nil
		})
		return paths
	}
	before := snapshot()

	r, err := OpenReadOnly(w.Dir())
	if err != nil {
		t.Fatal(err)
	}
	rv := view(t, r, BaseView)
	if got := rv.Tags()["busybox:latest"]; got != id {
		t.Fatalf("read-only tags = %v, want busybox:latest -> %s", rv.Tags(), id)
	}
	var saved bytes.Buffer
	if err := rv.Save(ctx, []string{"busybox:latest"}, &saved); err != nil {
		t.Fatalf("save from a read-only store: %v", err)
	}
	// What it saved loads into another store as the same image.
	other := view(t, openStore(t), BaseView)
	if err := other.Load(ctx, bytes.NewReader(saved.Bytes()), nil); err != nil {
		t.Fatal(err)
	}
	if got := other.Tags()["busybox:latest"]; got != id {
		t.Errorf("loaded copy: tags %v, want busybox:latest -> %s", other.Tags(), id)
	}

	upper := t.TempDir()
	os.WriteFile(filepath.Join(upper, "f"), []byte("x"), 0o644)
	for _, c := range []struct {
		name string
		do   func() error
	}{
		{"PutBlob", func() error { _, _, err := r.PutBlob(strings.NewReader("new")); return err }},
		{"PutLayer", func() error {
			_, err := r.PutLayer(ctx, bytes.NewReader(layerTar(t, "new", "1")))
			return err
		}},
		{"CommitLayer", func() error { _, err := r.CommitLayer(ctx, upper); return err }},
		{"Tag", func() error { return rv.Tag(id, "copy:latest") }},
		{"Untag", func() error { return rv.Untag("busybox:latest") }},
		{"Load", func() error { return rv.Load(ctx, bytes.NewReader(saved.Bytes()), nil) }},
		{"GC", func() error { _, err := r.GC(ctx); return err }},
	} {
		if err := c.do(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store = %v, want ErrReadOnly", c.name, err)
		}
	}

	after := snapshot()
	if strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("the read-only store changed the directory:\nbefore %q\nafter  %q", before, after)
	}
	if b, _ := os.ReadFile(viewFile); !bytes.Equal(b, viewBytes) {
		t.Errorf("view file changed:\n%s\nwas\n%s", b, viewBytes)
	}
	if !w.HasBlob(fresh) {
		t.Errorf("the writer's unreferenced blob is gone")
	}
	// The writer goes on: its staging directory is still there.
	if _, err := w.PutLayer(ctx, bytes.NewReader(layerTar(t, "later", "2"))); err != nil {
		t.Errorf("writer after the read-only open: %v", err)
	}

	_, err = OpenReadOnly(filepath.Join(t.TempDir(), "engine"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no image store in") {
		t.Errorf("OpenReadOnly of a missing store = %v", err)
	}
}
