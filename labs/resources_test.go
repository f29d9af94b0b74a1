package labs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFrontMatterResources: "resources" takes memory as a size and pids
// as a whole number; lint refuses malformed, too small and unknown values
// naming the line and what is expected.
func TestFrontMatterResources(t *testing.T) {
	tests := []struct {
		name string
		yaml string // the front matter's resources line(s)
		want Resources
		errs []string // problem messages expected (substrings), in order
	}{
		{"absent", "", Resources{}, nil},
		{"flow", "resources: {memory: 2g, pids: 2048}", Resources{Memory: 2 << 30, Pids: 2048}, nil},
		{"block", "resources:\n  memory: 1536m\n  pids: 100", Resources{Memory: 1536 << 20, Pids: 100}, nil},
		{"memory only, GiB", "resources: {memory: 3GiB}", Resources{Memory: 3 << 30}, nil},
		{"bytes", "resources: {memory: 134217728}", Resources{Memory: 128 << 20}, nil},
		{"not a mapping", "resources: 2g", Resources{}, []string{`lab.md:6: front matter field "resources" must be a mapping such as {memory: 2g, pids: 2048}`}},
		{"list", "resources: [2g]", Resources{}, []string{`must be a mapping`}},
		{"bad size", "resources:\n  memory: lots", Resources{}, []string{`lab.md:7: front matter field "resources": memory "lots" is not a size such as 2g or 512m`}},
		{"negative size", "resources: {memory: -1g}", Resources{}, []string{`memory "-1g" is not a size`}},
		{"too small", "resources: {memory: 32m}", Resources{}, []string{`memory 32m is below 64MiB, too little for a sandbox's shell and containers`}},
		{"bad pids", "resources: {pids: many}", Resources{}, []string{`pids "many" is not a whole number of processes`}},
		{"fraction pids", "resources: {pids: 1.5}", Resources{}, []string{`pids "1.5" is not a whole number`}},
		{"too few pids", "resources: {pids: 10}", Resources{}, []string{`pids 10 is below 64, too few for a shell, docker and a container`}},
		{"empty value", "resources: {memory: }", Resources{}, []string{`memory needs a value, like memory: 2g`}},
		{"unknown key", "resources:\n  memory: 2g\n  cpus: 4", Resources{Memory: 2 << 30}, []string{`lab.md:8: front matter field "resources": unknown key "cpus" (known: memory, pids, disk)`}},
		{"disk", "resources: {disk: 4g}", Resources{Disk: 4 << 30}, nil},
		{"too little disk", "resources: {disk: 10m}", Resources{}, []string{`disk 10m is below 64MiB, too little for a workspace and one image`}},
		{"twice", "resources:\n  pids: 100\n  pids: 200", Resources{Pids: 100}, []string{`lab.md:8: front matter field "resources" has "pids" twice`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "lab")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			src := "---\ntitle: T\nsummary: S\nduration: 5 min\nlevel: beginner\n" + tt.yaml + "\n---\n## Step\n\nText.\n"
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
			if lab != nil && lab.Resources != tt.want {
				t.Errorf("Resources = %+v; want %+v", lab.Resources, tt.want)
			}
		})
	}
}
