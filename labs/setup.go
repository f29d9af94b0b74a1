package labs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// "Start from this step": a learner who skips ahead gets the sandbox the
// earlier steps would have made. A step's ```setup block says how; without
// one, solution.sh's sections of the steps before it do, as `labd test`
// runs them.

type setupBlock struct {
	line   int
	script string
}

// attachSetups gives each ```setup block to the step it sits in.
func (p *parser) attachSetups(lab *Lab) {
	for _, b := range p.setups {
		si := sort.Search(len(lab.Steps), func(i int) bool { return lab.Steps[i].Line > b.line })
		switch {
		case si == 0:
			p.problem(b.line, "setup block before the first step: a setup belongs to the \"## \" step it prepares")
		case si == 1:
			p.problem(b.line, "setup block in the first step: the first step starts from a fresh sandbox (put its files in workspace/)")
		case lab.Steps[si-1].Setup != "":
			p.problem(b.line, fmt.Sprintf("second setup block in step %q", lab.Steps[si-1].Title))
		default:
			lab.Steps[si-1].Setup = b.script
		}
	}
}

// solutionSetups gives the steps without a setup block the sections of
// solution.sh before them (its preamble first, variables in place). A
// missing or unreadable solution.sh leaves them without: lint says why.
func solutionSetups(lab *Lab) {
	b, err := os.ReadFile(filepath.Join(lab.Dir, SolutionFile))
	if err != nil {
		return
	}
	pre, sections := ParseSolution(lab.Expand(b))
	byTitle := map[string]string{}
	for _, s := range sections {
		if _, dup := byTitle[s.Title]; !dup {
			byTitle[s.Title] = s.Body
		}
	}
	var so strings.Builder
	so.WriteString(pre)
	any := false
	for i := range lab.Steps {
		st := &lab.Steps[i]
		if any && st.Setup == "" {
			st.Setup = so.String()
		}
		if body, ok := byTitle[st.Title]; ok {
			so.WriteString(body)
			any = true
		}
	}
}
