package labs

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load as lab.md. Load must never panic,
// must give the same answer twice, must place every problem on a line of
// the file, and whatever it accepts must be a usable lab.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/labs/*/lab.md")
	bundled, _ := filepath.Glob("../content/*/lab.md")
	for _, s := range append(seeds, bundled...) {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("---\n"))
	f.Add([]byte("---\n---\n## \n```check\n- [\n```\n"))
	f.Add([]byte("---\ntitle: *a\n---\n```hint title=\"\n````\n"))
	f.Add([]byte("---\r\ntitle: t\r\n---\r\n## s\r\n```solution\r\n```` x\r\n```\r\n"))
	f.Add([]byte("\xef\xbb\xbf---\ntitle: t\nsummary: s\nduration: 1 min\nlevel: beginner\nresources: {memory: 1e99}\n---\n## a\n## a\n```check\nkind: file\npath: x\nid: a-1\n```\n"))
	dir := filepath.Join(f.TempDir(), "fuzz")
	if err := os.Mkdir(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "lab.md"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		lab, problems := Load(dir)
		if lab == nil {
			t.Fatalf("Load returned no lab for a readable lab.md (problems %v)", problems)
		}
		lab2, problems2 := Load(dir)
		if !reflect.DeepEqual(problems, problems2) || !sameLab(lab, lab2) {
			t.Fatalf("Load is not deterministic:\n%v\n%v", problems, problems2)
		}
		// A file of n newlines has n+1 lines; a problem at the end of the
		// file (an unclosed block) may name the line after the last one.
		lines := bytes.Count(data, []byte("\n")) + 2
		for _, p := range problems {
			if p.Line < 0 || p.Line > lines {
				t.Errorf("problem outside the file's %d lines: %v", lines, p)
			}
			if p.Message == "" {
				t.Errorf("problem without a message at line %d", p.Line)
			}
		}
		if len(problems) > 0 {
			return
		}
		if lab.Title == "" || len(lab.Steps) == 0 {
			t.Errorf("Load accepted a lab without title or steps: %+v", lab)
		}
		if !slices.Contains(Levels, lab.Level) {
			t.Errorf("Load accepted level %q", lab.Level)
		}
		if r := lab.Resources; r.Memory != 0 && r.Memory < MinMemory || r.Pids != 0 && r.Pids < MinPids {
			t.Errorf("Load accepted resources %+v", r)
		}
		ids := map[string]bool{}
		for i, s := range lab.Steps {
			if s.Index != i+1 || s.Line < 1 || s.Line > lines {
				t.Errorf("step %d: index %d, line %d", i+1, s.Index, s.Line)
			}
			for _, c := range s.Checks {
				if ids[c.ID] || !ValidID(c.ID) {
					t.Errorf("Load accepted check id %q (duplicate or invalid)", c.ID)
				}
				ids[c.ID] = true
				if !slices.Contains(Kinds, c.Kind) || c.Title == "" || c.Line < s.Line || c.Line > lines {
					t.Errorf("Load accepted check %+v in step at line %d", c, s.Line)
				}
			}
		}
	})
}

// sameLab compares two loads of one lab; specs may hold NaN, which
// DeepEqual never finds equal, so they compare by their printed form.
func sameLab(a, b *Lab) bool {
	return dumpLab(a) == dumpLab(b) && reflect.DeepEqual(a.Images, b.Images) && a.Resources == b.Resources
}
