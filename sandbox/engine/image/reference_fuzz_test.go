package image

import (
	"errors"
	"strings"
	"testing"

	"github.com/distribution/reference"
)

// FuzzResolve resolves arbitrary names the way `docker run NAME`, `docker
// rmi NAME` and FROM do, in a view holding a few tagged images. A name
// resolves to one of the view's images or fails with ErrNotFound or
// ErrInvalidReference; a name that parses resolves the same as its
// canonical and its familiar forms.
func FuzzResolve(f *testing.F) {
	s := openStore(f)
	v := view(f, s, "fuzz")
	a := putImage(f, v, "", true, 1, layerTar(f, "a", "1"))
	b := putImage(f, v, a, true, 2, layerTar(f, "b", "2"))
	for _, tag := range []string{"app", "app:v1", "localhost:5000/team/app:latest", "registry.example.com/x/y:1.0", "library/busybox:latest"} {
		if err := v.Tag(a, tag); err != nil {
			f.Fatal(err)
		}
	}
	if err := v.Tag(b, "python:3.11-slim"); err != nil {
		f.Fatal(err)
	}
	if err := v.AddRepoDigest(b, "python@"+b.String()); err != nil {
		f.Fatal(err)
	}
	ids := map[string]bool{a.String(): true, b.String(): true}
	for _, seed := range []string{
		"app", "app:latest", "app:v1", "docker.io/library/app", "index.docker.io/library/app:v1",
		"localhost:5000/team/app", "registry.example.com/x/y:1.0", "busybox", "python:3.11-slim",
		"python@" + b.String(), "python:3.11-slim@" + b.String(), "python:tag@" + b.String(),
		a.String(), a.Encoded(), a.Encoded()[:12], "sha256:" + a.Encoded()[:12], b.Encoded()[:1],
		"", ":", "@", "App", "app:", "app@sha256:", "a/../b", "-app", "app:" + strings.Repeat("t", 129),
		strings.Repeat("a/", 200) + "x", "[::1]:5000/app", "localhost:99999/app", "sha256:zz",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id, err := v.Resolve(name)
		if err != nil {
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInvalidReference) {
				t.Fatalf("Resolve(%q): %v (%T), neither not found nor invalid", name, err, err)
			}
			if err.Error() == "" {
				t.Fatalf("Resolve(%q): empty error", name)
			}
		} else if !ids[id.String()] {
			t.Fatalf("Resolve(%q) = %s, not an image of the view", name, id)
		}
		ref, perr := reference.ParseNormalizedNamed(name)
		if perr != nil {
			return
		}
		// "sha256:<hex>" is an ID, not the repository sha256; plain hex
		// may be an ID prefix, which its canonical form
		// (docker.io/library/<hex>) is not.
		if any, err := reference.ParseAnyReference(name); err != nil || isHexPrefix(name) {
			return
		} else if _, named := any.(reference.Named); !named {
			return
		}
		for _, form := range []string{ref.String(), reference.FamiliarString(ref)} {
			id2, err2 := v.Resolve(form)
			if (err2 == nil) != (err == nil) || id2 != id {
				t.Fatalf("Resolve(%q) = %s, %v; its form %q gives %s, %v", name, id, err, form, id2, err2)
			}
		}
	})
}

func isHexPrefix(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return s != ""
}
