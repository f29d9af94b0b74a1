package labs

import (
	"os"
	"strings"
	"testing"
)

// The guide's walk-through shows the files of testdata/labs/first-lab as
// they are: the lab it teaches lints clean (and labd test proves it).
func TestGuideWalkthroughIsTheTestedLab(t *testing.T) {
	guide, err := os.ReadFile("../docs/authoring.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"lab.md", "solution.sh", "cheats/no-copy.sh", "workspace/message.txt"} {
		b, err := os.ReadFile("testdata/labs/first-lab/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(guide), string(b)) {
			t.Errorf("docs/authoring.md does not show first-lab/%s as it is", f)
		}
	}
	if problems := LintLab("testdata/labs/first-lab"); len(problems) > 0 {
		t.Errorf("the walk-through's lab has problems: %v", problems)
	}
}
