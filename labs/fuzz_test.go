package labs

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load as lab.md. Load must never panic,
// and whatever it accepts must be a usable lab.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/labs/*/lab.md")
	for _, s := range seeds {
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
		for _, p := range problems {
			if p.Line < 0 {
				t.Errorf("problem with a negative line: %v", p)
			}
		}
		if len(problems) > 0 {
			return
		}
		if lab.Title == "" || len(lab.Steps) == 0 {
			t.Errorf("Load accepted a lab without title or steps: %+v", lab)
		}
		ids := map[string]bool{}
		for _, s := range lab.Steps {
			for _, c := range s.Checks {
				if ids[c.ID] {
					t.Errorf("Load accepted duplicate check id %q", c.ID)
				}
				ids[c.ID] = true
			}
		}
	})
}
