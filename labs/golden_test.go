package labs

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current output")

// TestGolden loads every testdata/labs/<case> and compares its problems
// (always) and its rendering (for labs without problems) with the goldens.
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/labs/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			lab, problems := Load(dir)
			var pb strings.Builder
			for _, p := range problems {
				fmt.Fprintln(&pb, p)
			}
			compareGolden(t, filepath.Join("testdata/golden", name+".problems"), pb.String())
			if len(problems) == 0 {
				compareGolden(t, filepath.Join("testdata/golden", name+".html"), dumpLab(lab))
			}
		})
	}
}

// dumpLab writes the model and the HTML in a form that reads well in review.
func dumpLab(l *Lab) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<!-- id=%s title=%q summary=%q duration=%q level=%s tags=%q -->\n",
		l.ID, l.Title, l.Summary, l.Duration, l.Level, l.Tags)
	fmt.Fprintf(&b, "<!-- intro -->\n%s", l.Intro)
	for _, s := range l.Steps {
		fmt.Fprintf(&b, "<!-- step %d id=%s title=%q line=%d -->\n", s.Index, s.ID, s.Title, s.Line)
		for _, c := range s.Checks {
			spec, _ := json.Marshal(c.Spec)
			fmt.Fprintf(&b, "<!-- check id=%s kind=%s title=%q hint=%q sticky=%v line=%d spec=%s -->\n", c.ID, c.Kind, c.Title, c.Hint, c.Sticky, c.Line, spec)
		}
		b.WriteString(string(s.HTML))
	}
	return b.String()
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the output:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestRenderEscapes guards the safety properties a golden diff could hide.
func TestRenderEscapes(t *testing.T) {
	lab, problems := Load("testdata/labs/full")
	if len(problems) > 0 {
		t.Fatalf("Load(full) problems = %v", problems)
	}
	var all strings.Builder
	all.WriteString(string(lab.Intro))
	for _, s := range lab.Steps {
		all.WriteString(string(s.HTML))
	}
	html := all.String()
	for _, bad := range []string{"<script", "<b>not bold</b>"} {
		if strings.Contains(html, bad) {
			t.Errorf("rendered HTML contains %q", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;", "&lt;b&gt;not bold&lt;/b&gt;", `src="/labs/full/files/img/layers.svg"`, `class="btn-run"`} {
		if !strings.Contains(html, want) {
			t.Errorf("rendered HTML lacks %q", want)
		}
	}
}

func TestLintPaths(t *testing.T) {
	problems, warnings := Lint("testdata/labs")
	if len(warnings) > 0 {
		t.Errorf("Lint(testdata/labs) warnings = %v, want none: every case is a lab", warnings)
	}
	if len(problems) == 0 {
		t.Fatal("Lint(testdata/labs) found no problems in the malformed cases")
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Path, "testdata/labs/full") {
			t.Errorf("problem in the valid lab: %v", p)
		}
		if !strings.HasPrefix(p.Path, "testdata/labs/") {
			t.Errorf("problem path %q is not relative to the root as given", p.Path)
		}
	}
	want := "testdata/labs/unknown-check-kind/lab.md:10: unknown check kind \"foo\""
	found := false
	for _, p := range problems {
		found = found || strings.HasPrefix(p.String(), want)
	}
	if !found {
		t.Errorf("Lint output lacks %q", want)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{"content/a/lab.md", 12, "unknown check kind \"foo\""}, "content/a/lab.md:12: unknown check kind \"foo\""},
		{Problem{"content/b", 0, "folder has no lab.md"}, "content/b: folder has no lab.md"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestHighlightCSS(t *testing.T) {
	css := HighlightCSS()
	if !strings.Contains(css, ".chroma") {
		t.Errorf("HighlightCSS() lacks .chroma rules: %.200s", css)
	}
}
