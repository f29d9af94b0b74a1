package labs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFrontMatterImages(t *testing.T) {
	tests := []struct {
		name   string
		images string // the front matter's images line(s)
		want   []string
		errs   []string // problem messages expected (substrings), in order
	}{
		{"flow list", "images: [python:3.11-slim, busybox]", []string{"python:3.11-slim", "busybox"}, nil},
		{"block list", "images:\n  - python:3.11-slim\n  - labd/sandbox:latest\n  - registry.local:5000/team/app@sha256:" + strings.Repeat("a", 64),
			[]string{"python:3.11-slim", "labd/sandbox:latest", "registry.local:5000/team/app@sha256:" + strings.Repeat("a", 64)}, nil},
		{"absent", "", nil, nil},
		{"not a list", "images: python:3.11-slim", nil, []string{`lab.md:6: front matter field "images" must be a list of image references`}},
		{"empty entry", "images: [python, '']", nil, []string{`lab.md:6: front matter field "images" must be a list`}},
		{"nested list", "images: [[python]]", nil, []string{`must be a list of image references`}},
		{"upper case", "images:\n  - busybox\n  - Python:3", []string{"busybox"}, []string{`lab.md:8: front matter field "images": "Python:3" is not an image reference: invalid reference format: repository name (library/Python) must be lowercase`}},
		{"same image twice", "images: [busybox, docker.io/library/busybox:latest]", []string{"busybox"}, []string{`lab.md:6: front matter field "images" lists "docker.io/library/busybox:latest" twice (also as "busybox")`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "lab")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			src := "---\ntitle: T\nsummary: S\nduration: 5 min\nlevel: beginner\n" + tt.images + "\n---\n## Step\n\nText.\n"
			if err := os.WriteFile(filepath.Join(dir, "lab.md"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			lab, problems := Load(dir)
			if len(problems) != len(tt.errs) {
				t.Fatalf("problems = %v; want %d: %q", problems, len(tt.errs), tt.errs)
			}
			for i, p := range problems {
				if !strings.Contains(p.String(), tt.errs[i]) {
					t.Errorf("problem %d = %q; want it to contain %q", i, p, tt.errs[i])
				}
			}
			if len(tt.errs) == 0 && !slices.Equal(lab.Images, tt.want) {
				t.Errorf("Images = %q; want %q", lab.Images, tt.want)
			}
			if len(tt.errs) != 0 && tt.want != nil && !slices.Equal(lab.Images, tt.want) {
				t.Errorf("Images = %q; want the valid ones %q", lab.Images, tt.want)
			}
		})
	}
}

// The bundled labs declare what they need, so the lab page can tell a
// learner an image is still being prepared.
func TestBundledLabsDeclareImages(t *testing.T) {
	for id, want := range map[string]string{"docker-images": "python:3.11-slim", "docker-run": "busybox"} {
		lab, problems := Load(filepath.Join("..", "content", id))
		if len(problems) != 0 {
			t.Fatalf("%s: %v", id, problems)
		}
		if !slices.Contains(lab.Images, want) {
			t.Errorf("%s: images = %q; want %s among them", id, lab.Images, want)
		}
	}
}
