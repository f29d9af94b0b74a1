package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestPutLayerAndImage(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	l := layerTar(t, "hello", "world\n", "bin/x", "xx")
	info, err := s.PutLayer(ctx, bytes.NewReader(l))
	if err != nil {
		t.Fatal(err)
	}
	if want := digest.FromBytes(l); info.DiffID != want || info.Size != 8 || info.Empty {
		t.Errorf("PutLayer = %+v, want diffID %s size 8", info, want)
	}
	if b, _ := os.ReadFile(filepath.Join(s.LayerDir(info.DiffID), "hello")); string(b) != "world\n" {
		t.Errorf("extracted hello = %q", b)
	}
	rc, err := s.OpenLayer(info.DiffID)
	if err != nil {
		t.Fatal(err)
	}
	var back bytes.Buffer
	back.ReadFrom(rc)
	rc.Close()
	if !bytes.Equal(back.Bytes(), l) {
		t.Errorf("OpenLayer returned different bytes")
	}

	blobs := countFiles(t, s.path("blobs", "sha256"))
	if _, err := s.PutLayer(ctx, bytes.NewReader(l)); err != nil {
		t.Fatal(err)
	}
	if got := countFiles(t, s.path("blobs", "sha256")); got != blobs {
		t.Errorf("second PutLayer stored a new blob: %d -> %d", blobs, got)
	}

	v := view(t, s, "default")
	id := putImage(t, v, "", false, 100, layerTar(t, "a", "1"))
	child := putImage(t, v, id, true, 200, layerTar(t, "b", "22"))
	dirs, err := s.Layers(child)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := s.Config(child)
	if len(dirs) != 2 || dirs[0] != s.LayerDir(c.DiffIDs()[1]) || dirs[1] != s.LayerDir(c.DiffIDs()[0]) {
		t.Errorf("Layers = %v, want top first", dirs)
	}
	info2, _ := v.Image(child)
	if info2.Size != 3 || info2.Parent != id || !info2.BuiltLocally {
		t.Errorf("Image = %+v", info2)
	}
	if got := v.Children(id); !reflect.DeepEqual(got, []digest.Digest{child}) {
		t.Errorf("Children = %v", got)
	}
	if got := v.Children(""); len(got) != 0 {
		t.Errorf("Children(\"\") = %v, want none (the base image is not built locally)", got)
	}
	raw, _ := s.RawConfig(child)
	again, err := s.PutImage(ctx, raw)
	if err != nil || again != child {
		t.Errorf("PutImage again = %s, %v", again, err)
	}
}

func TestPutImageNeedsLayers(t *testing.T) {
	s := openStore(t)
	missing := digest.FromString("nope")
	raw := []byte(`{"architecture":"amd64","created":"2024-01-01T00:00:00Z","os":"linux","rootfs":{"type":"layers","diff_ids":["` + missing.String() + `"]}}`)
	blobs := countFiles(t, s.path("blobs", "sha256"))
	if _, err := s.PutImage(context.Background(), raw); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PutImage with a missing layer = %v, want ErrNotFound", err)
	}
	if got := countFiles(t, s.path("blobs", "sha256")); got != blobs {
		t.Errorf("failed PutImage stored a blob")
	}
	if err := view(t, s, "default").Add(ID(raw), "", false); err == nil {
		t.Errorf("Add of an unstored image succeeded")
	}
}

func TestCommitLayer(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	empty, err := s.CommitLayer(ctx, t.TempDir())
	if err != nil || !empty.Empty || empty.DiffID != EmptyTarDiffID {
		t.Errorf("CommitLayer(empty) = %+v, %v", empty, err)
	}
	up := t.TempDir()
	os.WriteFile(filepath.Join(up, "f"), []byte("abc"), 0o644)
	info, err := s.CommitLayer(ctx, up)
	if err != nil || info.Empty || info.Size != 3 || !s.HasLayer(info.DiffID) {
		t.Fatalf("CommitLayer = %+v, %v", info, err)
	}
	n := countFiles(t, s.path("blobs", "sha256"))
	again, err := s.CommitLayer(ctx, up)
	if err != nil || again.DiffID != info.DiffID || countFiles(t, s.path("blobs", "sha256")) != n {
		t.Errorf("committing the same upper dir again: %+v %v, blobs %d -> %d", again, err, n, countFiles(t, s.path("blobs", "sha256")))
	}
}

func TestResolve(t *testing.T) {
	s := openStore(t)
	v := view(t, s, "default")
	a := putImage(t, v, "", false, 100, layerTar(t, "a", "1"))
	b := putImage(t, v, "", false, 200, layerTar(t, "b", "2"))
	if err := v.Tag(a, "busybox"); err != nil {
		t.Fatal(err)
	}
	if err := v.Tag(b, "docker.io/user/app:v1"); err != nil {
		t.Fatal(err)
	}
	dg := digest.FromString("manifest")
	if err := v.AddRepoDigest(b, "user/app@"+dg.String()); err != nil {
		t.Fatal(err)
	}
	// Find a prefix shared by a and b, if any, for the ambiguous case.
	shared := ""
	for i := 1; i < 64 && a.Encoded()[:i] == b.Encoded()[:i]; i++ {
		shared = a.Encoded()[:i]
	}
	tests := []struct {
		in      string
		want    digest.Digest
		err     error
		message string
	}{
		{in: a.String(), want: a},
		{in: a.Encoded(), want: a},
		{in: a.Encoded()[:12], want: a},
		{in: "busybox", want: a},
		{in: "busybox:latest", want: a},
		{in: "docker.io/library/busybox:latest", want: a},
		{in: "user/app:v1", want: b},
		{in: "user/app@" + dg.String(), want: b},
		{in: "user/app", err: ErrNotFound, message: "No such image: user/app:latest"},
		{in: "nothere", err: ErrNotFound, message: "No such image: nothere:latest"},
		{in: "sha256:" + a.Encoded()[:12], err: ErrNotFound, message: "No such image: sha256:" + a.Encoded()[:12]},
		{in: "Bad", err: ErrInvalidReference, message: "invalid reference format: repository name must be lowercase"},
	}
	if shared != "" {
		tests = append(tests, struct {
			in      string
			want    digest.Digest
			err     error
			message string
		}{in: shared, err: ErrNotFound, message: "No such image: " + shared + ":latest"})
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := v.Resolve(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || err.Error() != tc.message {
					t.Errorf("Resolve(%q) = %v, %v; want %v %q", tc.in, got, err, tc.err, tc.message)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Resolve(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
	info, _ := v.Image(b)
	if !reflect.DeepEqual(info.RepoTags, []string{"user/app:v1"}) || !reflect.DeepEqual(info.RepoDigests, []string{"user/app@" + dg.String()}) {
		t.Errorf("refs = %v %v", info.RepoTags, info.RepoDigests)
	}
}

func recordsString(recs []DeleteRecord) string {
	var parts []string
	for _, r := range recs {
		if r.Untagged != "" {
			parts = append(parts, "U:"+r.Untagged)
		}
		if r.Deleted != "" {
			parts = append(parts, "D:"+r.Deleted)
		}
	}
	return strings.Join(parts, " ")
}

func TestDelete(t *testing.T) {
	s := openStore(t)
	v := view(t, s, "default")
	base := putImage(t, v, "", false, 100, layerTar(t, "a", "1"))
	v.Tag(base, "base")
	mid := putImage(t, v, base, true, 200, layerTar(t, "b", "2"))
	top := putImage(t, v, mid, true, 300, layerTar(t, "c", "3"))
	v.Tag(top, "app:v1")
	v.Tag(top, "app:v2")
	topCfg, _ := s.Config(top)
	midCfg, _ := s.Config(mid)
	topChain := ChainID(topCfg.DiffIDs())
	midChain := ChainID(midCfg.DiffIDs())

	// A tag of an image with other tags: untag only.
	recs, err := v.Delete("app:v1", false, false)
	if err != nil || recordsString(recs) != "U:app:v1" {
		t.Errorf("Delete(app:v1) = %s, %v", recordsString(recs), err)
	}
	// Image with a child: conflict.
	_, err = v.Delete(base.Encoded()[:12], false, false)
	var ce *ConflictError
	if !errors.As(err, &ce) || err.Error() != "conflict: unable to delete "+base.Encoded()[:12]+" (cannot be forced) - image has dependent child images" {
		t.Errorf("Delete(base id) = %v", err)
	}
	// Two repositories: must be forced.
	v.Tag(top, "other:latest")
	_, err = v.Delete(top.Encoded()[:12], false, false)
	if !errors.Is(err, ErrConflict) || err.Error() != "conflict: unable to delete "+top.Encoded()[:12]+" (must be forced) - image is referenced in multiple repositories" {
		t.Errorf("Delete(top id) = %v", err)
	}
	v.Untag("other")
	// Containers hook.
	v.SetContainers(fakeContainers{top: {{ID: "0123456789abcdef", Running: false}}})
	_, err = v.Delete(top.Encoded(), false, false)
	if !errors.Is(err, ErrConflict) || !strings.HasSuffix(err.Error(), "image is being used by stopped container 0123456789ab") {
		t.Errorf("Delete(used image) = %v", err)
	}
	v.SetContainers(nil)
	// Last tag: untag, delete, prune the untagged parent, stop at the tagged base.
	recs, err = v.Delete("app:v2", false, false)
	want := "U:app:v2 D:" + top.String() + " D:" + topChain.String() + " D:" + mid.String() + " D:" + midChain.String()
	if err != nil || recordsString(recs) != want {
		t.Errorf("Delete(app:v2) =\n %s, %v\nwant\n %s", recordsString(recs), err, want)
	}
	if _, err := v.Resolve(mid.String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("parent survived: %v", err)
	}
	if _, err := v.Resolve("base"); err != nil {
		t.Errorf("tagged base removed: %v", err)
	}
	if _, err := v.Delete("app:v2", false, false); !errors.Is(err, ErrNotFound) || err.Error() != "No such image: app:v2" {
		t.Errorf("Delete(missing) = %v", err)
	}
}

func TestDeleteNoPrune(t *testing.T) {
	s := openStore(t)
	v := view(t, s, "default")
	base := putImage(t, v, "", false, 100, layerTar(t, "a", "1"))
	top := putImage(t, v, base, true, 200, layerTar(t, "b", "2"))
	v.Tag(top, "app")
	if _, err := v.Delete("app", false, true); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Resolve(base.String()); err != nil {
		t.Errorf("noprune removed the parent: %v", err)
	}
}

type fakeContainers map[digest.Digest][]ContainerUse

func (f fakeContainers) ContainersUsing(id digest.Digest) []ContainerUse { return f[id] }

func TestListAndPrune(t *testing.T) {
	s := openStore(t)
	v := view(t, s, "default")
	base := putImage(t, v, "", false, 100, layerTar(t, "a", "1"))
	v.Tag(base, "base")
	mid := putImage(t, v, base, true, 200, layerTar(t, "b", "22"))
	top := putImage(t, v, mid, true, 300, layerTar(t, "c", "333"))
	v.Tag(top, "app")
	dangling := putImage(t, v, base, true, 400, layerTar(t, "d", "4444"))

	ids := func(ss []Summary) []digest.Digest {
		var out []digest.Digest
		for _, x := range ss {
			out = append(out, x.ID)
		}
		return out
	}
	if got, want := ids(v.List(false)), []digest.Digest{dangling, top, base}; !reflect.DeepEqual(got, want) {
		t.Errorf("List(false) = %v, want %v", got, want)
	}
	if got, want := ids(v.List(true)), []digest.Digest{dangling, top, mid, base}; !reflect.DeepEqual(got, want) {
		t.Errorf("List(true) = %v, want %v", got, want)
	}
	for _, x := range v.List(true) {
		if (x.ID == dangling) != x.Dangling {
			t.Errorf("%s Dangling = %v", x.ID, x.Dangling)
		}
		if x.ID == top && x.Size != 6 {
			t.Errorf("top size = %d, want 6", x.Size)
		}
	}
	rep, err := v.Prune(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	dc, _ := s.Config(dangling)
	want := "D:" + dangling.String() + " D:" + ChainID(dc.DiffIDs()).String()
	if recordsString(rep.ImagesDeleted) != want || rep.SpaceReclaimed != 4 {
		t.Errorf("Prune(dangling) = %s, %d; want %s, 4", recordsString(rep.ImagesDeleted), rep.SpaceReclaimed, want)
	}
	rep, err = v.Prune(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.List(true)) != 0 || rep.SpaceReclaimed != 6 {
		t.Errorf("Prune(all) left %v, reclaimed %d", v.List(true), rep.SpaceReclaimed)
	}
}

func TestViews(t *testing.T) {
	s := openStore(t)
	base := view(t, s, BaseView)
	a := view(t, s, "sandbox-a")
	b := view(t, s, "sandbox-b")
	bb := putImage(t, base, "", false, 100, layerTar(t, "bin/sh", "x"))
	base.Tag(bb, "busybox")
	own := putImage(t, a, bb, true, 200, layerTar(t, "app", "y"))
	a.Tag(own, "app")

	if _, err := b.Resolve("app"); !errors.Is(err, ErrNotFound) {
		t.Errorf("view b sees view a's tag: %v", err)
	}
	if _, err := b.Resolve(own.String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("view b sees view a's image: %v", err)
	}
	for _, v := range []*View{a, b} {
		id, err := v.Resolve("busybox")
		if err != nil || id != bb {
			t.Errorf("%s: Resolve(busybox) = %v, %v", v.Name(), id, err)
		}
		info, _ := v.Image(bb)
		if info.BuiltLocally {
			t.Errorf("%s: base image marked built locally", v.Name())
		}
	}
	// rmi of a base image in b hides it in b only.
	recs, err := b.Delete("busybox", false, false)
	if err != nil || !strings.HasPrefix(recordsString(recs), "U:busybox:latest D:"+bb.String()) {
		t.Errorf("b.Delete(busybox) = %s, %v", recordsString(recs), err)
	}
	if _, err := b.Resolve("busybox"); !errors.Is(err, ErrNotFound) {
		t.Errorf("busybox still visible in b: %v", err)
	}
	if _, err := a.Resolve("busybox"); err != nil {
		t.Errorf("busybox gone from a: %v", err)
	}
	if _, err := base.Resolve("busybox"); err != nil {
		t.Errorf("busybox gone from base: %v", err)
	}
	// Hidden state survives a restart.
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := view(t, s2, "sandbox-b").Resolve("busybox"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after reopen busybox visible in b: %v", err)
	}
	if id, err := view(t, s2, "sandbox-a").Resolve("app"); err != nil || id != own {
		t.Errorf("after reopen a's app = %v, %v", id, err)
	}
	// In a, busybox has a child: cannot delete by ID.
	if _, err := a.Delete(bb.Encoded(), false, false); !errors.Is(err, ErrConflict) {
		t.Errorf("a.Delete(busybox id) = %v, want conflict", err)
	}
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	v := view(t, s, "default")
	keep := putImage(t, v, "", false, 100, layerTar(t, "keep", "k"))
	gone := putImage(t, v, "", false, 200, layerTar(t, "gone", "g"))
	goneCfg, _ := s.Config(gone)
	if _, err := v.Delete(gone.String(), false, false); err != nil {
		t.Fatal(err)
	}
	// An unreferenced layer put by this process (a build in progress) is kept.
	pending, err := s.PutLayer(ctx, bytes.NewReader(layerTar(t, "pending", "p")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.HasLayer(pending.DiffID) {
		t.Errorf("GC removed a layer of a build in progress")
	}
	// A new process: only what views reference survives.
	os.WriteFile(s.path("tmp", "leftover"), []byte("x"), 0o600)
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s2.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blobs != 3 || rep.Layers != 2 {
		t.Errorf("GC = %+v, want 3 blobs (config, 2 layer tars) and 2 layer dirs", rep)
	}
	kc, _ := s2.Config(keep)
	if !s2.HasBlob(keep) || !s2.HasLayer(kc.DiffIDs()[0]) {
		t.Errorf("GC removed a referenced image")
	}
	if s2.HasBlob(gone) || s2.HasLayer(goneCfg.DiffIDs()[0]) || s2.HasLayer(pending.DiffID) {
		t.Errorf("GC kept unreferenced data")
	}
	if countFiles(t, s2.path("tmp")) != 0 {
		t.Errorf("tmp not empty")
	}
	if id, err := view(t, s2, "default").Resolve(keep.String()); err != nil || id != keep {
		t.Errorf("after GC Resolve = %v, %v", id, err)
	}
}

// TestCrashSafety simulates kills between the steps of a write.
func TestCrashSafety(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	v := view(t, s, "default")
	good := putImage(t, v, "", false, 100, layerTar(t, "good", "1"))
	v.Tag(good, "good")

	// Killed after the blobs and the config, before the view update.
	l, err := s.PutLayer(ctx, bytes.NewReader(layerTar(t, "half", "2")))
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte(`{"architecture":"amd64","created":"2024-01-01T00:00:00Z","os":"linux","rootfs":{"type":"layers","diff_ids":["` + l.DiffID.String() + `"]}}`)
	half, err := s.PutImage(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	// Killed in the middle of writing a blob, a layer and a view file.
	os.WriteFile(s.path("tmp", "blob-123"), []byte("trunc"), 0o600)
	os.MkdirAll(s.path("tmp", "layer-456", "usr"), 0o755)
	os.WriteFile(s.path("tmp", "view-789"), []byte(`{"refs":{`), 0o600)
	// Killed after a layer's blob and metadata but before its directory.
	orphan := layerTar(t, "orphan", "3")
	od, _, _ := s.PutBlob(bytes.NewReader(orphan))
	os.WriteFile(s.LayerDir(od)+".json", []byte(`{"size":1}`), 0o600)

	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	v2 := view(t, s2, "default")
	if countFiles(t, s2.path("tmp")) != 0 {
		t.Errorf("Open left tmp leftovers")
	}
	if _, err := v2.Resolve(half.String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("half-written image visible: %v", err)
	}
	if s2.HasLayer(od) {
		t.Errorf("layer without its directory counts as present")
	}
	if id, err := v2.Resolve("good"); err != nil || id != good {
		t.Errorf("good image lost: %v %v", id, err)
	}
	// The store still works: the orphan layer can be stored for real.
	info, err := s2.PutLayer(ctx, bytes.NewReader(orphan))
	if err != nil || !s2.HasLayer(info.DiffID) {
		t.Errorf("PutLayer after crash = %+v, %v", info, err)
	}
	if _, err := s2.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if s2.HasBlob(half) {
		t.Errorf("GC kept the half-written config")
	}
	if id, err := v2.Resolve("good"); err != nil || id != good {
		t.Errorf("good image lost after GC: %v %v", id, err)
	}
}

func TestConcurrentViews(t *testing.T) {
	s := openStore(t)
	l := layerTar(t, "shared", "same bytes")
	done := make(chan digest.Digest)
	for i := 0; i < 6; i++ {
		go func(i int) {
			v, err := s.View("sandbox-" + string(rune('a'+i)))
			if err != nil {
				t.Error(err)
				done <- ""
				return
			}
			// No t.Fatal off the test goroutine: plain calls and t.Error.
			info, err := s.PutLayer(context.Background(), bytes.NewReader(l))
			if err != nil {
				t.Error(err)
				done <- ""
				return
			}
			raw := []byte(`{"architecture":"amd64","created":"2024-01-01T00:00:00Z","os":"linux","rootfs":{"type":"layers","diff_ids":["` + info.DiffID.String() + `"]}}`)
			id, err := s.PutImage(context.Background(), raw)
			if err == nil {
				err = v.Add(id, "", true)
			}
			if err == nil {
				err = v.Tag(id, "app")
			}
			if err != nil {
				t.Error(err)
			}
			done <- id
		}(i)
	}
	var first digest.Digest
	for i := 0; i < 6; i++ {
		id := <-done
		if first == "" {
			first = id
		} else if id != first {
			t.Errorf("same content gave IDs %s and %s", first, id)
		}
	}
	// One config blob and one layer tar, one layer directory.
	if n := countFiles(t, s.path("blobs", "sha256")); n != 2 {
		t.Errorf("%d blobs, want 2", n)
	}
	if n := countFiles(t, s.path("layers")); n != 2 {
		t.Errorf("%d entries in layers/, want a directory and its .json", n)
	}
}
