package labs

import "testing"

// `labd lint content/my-lab` lints that lab, not its files as labs.
func TestLintOneLabFolder(t *testing.T) {
	problems, warnings := Lint("testdata/labs/full")
	if len(problems) > 0 || len(warnings) > 0 {
		t.Errorf("Lint(one good lab) = %v, %v; want nothing", problems, warnings)
	}
	problems, _ = Lint("testdata/labs/unknown-check-kind")
	if len(problems) == 0 || problems[0].Path != "testdata/labs/unknown-check-kind/lab.md" {
		t.Errorf("Lint(one bad lab) = %v; want its problems at its lab.md", problems)
	}
}
