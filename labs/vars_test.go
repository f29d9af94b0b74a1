package labs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExpandAndLintVarsInSolution(t *testing.T) {
	lab, problems := Load("testdata/labs/vars")
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if got := string(lab.Expand([]byte("docker run -p {{vars.port}}:5000 {{ vars.image }} # {{vars.none}} {{.ID}}"))); got != "docker run -p 5001:5000 hello-app # {{vars.none}} {{.ID}}" {
		t.Errorf("Expand = %q", got)
	}
	dir := filepath.Join(t.TempDir(), "vars")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile("testdata/labs/vars/lab.md")
	os.WriteFile(filepath.Join(dir, "lab.md"), src, 0o644)
	os.WriteFile(filepath.Join(dir, SolutionFile), []byte("#!/bin/bash\n# step: Run it\ndocker run -d -p {{vars.port}}:5000 {{vars.imag}}\n"), 0o755)
	problems = LintLab(dir)
	if len(problems) != 1 || problems[0].Line != 3 || !strings.HasSuffix(problems[0].Path, SolutionFile) || !strings.Contains(problems[0].Message, `unknown variable "imag"`) {
		t.Errorf("LintLab = %v, want the unknown variable at solution.sh:3", problems)
	}
}

// Each step after the first can be started from: its setup block, else
// the solution's sections before it (after the preamble, variables in
// place).
func TestStepSetups(t *testing.T) {
	lab, problems := Load("testdata/labs/setup")
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	want := []string{"", "set -euo pipefail\n\necho one > notes.txt\n\n", "echo from-setup > notes.txt\n"}
	for i, st := range lab.Steps {
		if st.Setup != want[i] {
			t.Errorf("step %d setup = %q, want %q", i+1, st.Setup, want[i])
		}
	}
	if strings.Contains(string(lab.Steps[2].HTML), "from-setup") {
		t.Error("a setup block is shown in the step")
	}
}
