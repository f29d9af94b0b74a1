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
