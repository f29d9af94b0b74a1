package labs

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestSolutionGolden lints every testdata/solution/<case> lab (lab.md
// plus solution.sh and cheats) and compares its problems with
// testdata/golden/solution/<case>.problems.
func TestSolutionGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/solution/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no solution golden cases: %v", err)
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			for _, p := range LintLab(dir) {
				fmt.Fprintln(&b, p)
			}
			compareGolden(t, filepath.Join("testdata/golden/solution", name+".problems"), b.String())
		})
	}
}

func TestParseSolution(t *testing.T) {
	tests := []struct {
		name, src, pre string
		want           []Section
	}{
		{"preamble and two steps",
			"#!/usr/bin/env bash\nset -e\n# step: A\necho a\n  # step:  B  \necho b\n",
			"set -e\n",
			[]Section{{"A", 3, "echo a\n"}, {"B", 5, "echo b\n"}}},
		{"no steps", "#!/bin/sh\necho x\n", "echo x\n", nil},
		{"a step comment inside a line is not a section", "# step: A\necho '# step: B'\n", "",
			[]Section{{"A", 1, "echo '# step: B'\n"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pre, secs := ParseSolution([]byte(tt.src))
			if pre != tt.pre || fmt.Sprint(secs) != fmt.Sprint(tt.want) {
				t.Errorf("ParseSolution() = %q %v, want %q %v", pre, secs, tt.pre, tt.want)
			}
		})
	}
}

func TestParseCheat(t *testing.T) {
	tests := []struct {
		name, src, step string
		line            int
	}{
		{"header after the shebang", "#!/bin/bash\n# Skips the work.\n# expect-fail: Build the image\ndocker tag a b\n", "Build the image", 3},
		{"no header", "#!/bin/bash\necho hi\n", "", 0},
		{"a header after the first command does not count", "echo hi\n# expect-fail: A\n", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ParseCheat("cheats/x.sh", []byte(tt.src))
			if c.Step != tt.step || c.Line != tt.line || c.Name != "x.sh" {
				t.Errorf("ParseCheat() = %q line %d name %q, want %q line %d", c.Step, c.Line, c.Name, tt.step, tt.line)
			}
		})
	}
}
