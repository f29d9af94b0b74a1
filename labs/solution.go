package labs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SolutionFile is the lab's worked solution, one "# step: <title>"
// section per step; labd test runs it and labd lint checks its sections.
const SolutionFile = "solution.sh"

// CheatsDir holds a lab's cheats: scripts that try to pass a step without
// doing it, which labd test proves the step's checks catch.
const CheatsDir = "cheats"

const (
	stepMarker  = "# step:"
	cheatMarker = "# expect-fail:"
)

// Section is one "# step: <title>" part of solution.sh.
type Section struct {
	Title string
	Line  int // of the "# step:" comment
	Body  string
}

// ParseSolution splits a solution script into its preamble (set -euo
// pipefail, helpers: everything before the first step, without the
// shebang) and its sections, in file order.
func ParseSolution(b []byte) (preamble string, sections []Section) {
	var pre strings.Builder
	var cur *Section
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if t, ok := strings.CutPrefix(strings.TrimSpace(line), stepMarker); ok {
			sections = append(sections, Section{Title: strings.TrimSpace(t), Line: n})
			cur = &sections[len(sections)-1]
			continue
		}
		if cur == nil {
			if !strings.HasPrefix(line, "#!") {
				pre.WriteString(line + "\n")
			}
			continue
		}
		cur.Body += line + "\n"
	}
	return pre.String(), sections
}

// Cheat is a cheats/NAME.sh script and the step it must not pass.
type Cheat struct {
	Name   string // NAME.sh
	Path   string
	Step   string // the title in "# expect-fail: <title>"
	Line   int    // of that comment, 0 when there is none
	Script string
}

// ParseCheat reads the "# expect-fail: <step title>" header of a cheat:
// the first such line of the script's leading comments. The step is named
// by its title, as solution.sh's sections are, so reordering steps does
// not silently retarget a cheat.
func ParseCheat(path string, b []byte) Cheat {
	c := Cheat{Name: filepath.Base(path), Path: path, Script: string(b)}
	for i, line := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#!") {
			continue
		}
		if !strings.HasPrefix(t, "#") {
			break
		}
		if title, ok := strings.CutPrefix(t, cheatMarker); ok {
			c.Step, c.Line = strings.TrimSpace(title), i+1
			break
		}
	}
	return c
}

// Cheats reads dir/cheats/*.sh, sorted by name. A missing folder is no
// cheats.
func Cheats(dir string) ([]Cheat, error) {
	paths, err := filepath.Glob(filepath.Join(dir, CheatsDir, "*.sh"))
	if err != nil {
		return nil, fmt.Errorf("cheats of %s: %w", dir, err)
	}
	sort.Strings(paths)
	var out []Cheat
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read cheat: %w", err)
		}
		out = append(out, ParseCheat(p, b))
	}
	return out, nil
}

// lintSolution checks dir's solution.sh against the lab's steps (one
// section per step, titled as the step, in the steps' order) and its
// cheats' headers. Problems are located in solution.sh (or the cheat)
// where there is a line to point at, else at the step in lab.md.
func lintSolution(dir string, lab *Lab) []Problem {
	path := filepath.Join(dir, SolutionFile)
	labPath := filepath.Join(dir, labFile)
	var out []Problem
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		out = append(out, Problem{Path: path, Message: fmt.Sprintf("%s is missing: add one with a %q section per step (labd test runs it)", SolutionFile, stepMarker+" <title>")})
	case err != nil:
		out = append(out, Problem{Path: path, Message: err.Error()})
	case !fi.Mode().IsRegular():
		out = append(out, Problem{Path: path, Message: SolutionFile + " is not a regular file"})
	default:
		if fi.Mode().Perm()&0o111 == 0 {
			out = append(out, Problem{Path: path, Message: SolutionFile + " is not executable (chmod +x " + SolutionFile + ")"})
		}
		b, err := os.ReadFile(path)
		if err != nil {
			out = append(out, Problem{Path: path, Message: err.Error()})
			break
		}
		out = append(out, lintVars(path, lab, b)...)
		out = append(out, lintSections(path, labPath, lab, b)...)
	}
	out = append(out, lintCheats(dir, lab)...)
	return out
}

// lintVars reports the {{vars.NAME}} of a script beside lab.md that the
// lab does not define.
func lintVars(path string, lab *Lab, b []byte) []Problem {
	var out []Problem
	li := newLineIndex(b, 0)
	expandVars(b, lab.Vars, func(off int, msg string) {
		out = append(out, Problem{Path: path, Line: li.line(off), Message: msg})
	})
	return out
}

func lintSections(path, labPath string, lab *Lab, b []byte) []Problem {
	_, sections := ParseSolution(b)
	if len(sections) == 0 {
		return []Problem{{Path: path, Message: fmt.Sprintf("%s has no %q sections: start each step's commands with one", SolutionFile, stepMarker+" <title>")}}
	}
	stepIdx := map[string]int{}
	for i, st := range lab.Steps {
		stepIdx[st.Title] = i
	}
	var out []Problem
	first := map[string]int{} // title -> line of its first section
	last := -1                // step index of the latest section in order
	lastTitle := ""
	for _, s := range sections {
		i, ok := stepIdx[s.Title]
		switch {
		case !ok:
			out = append(out, Problem{Path: path, Line: s.Line, Message: fmt.Sprintf("section %q names no step of %s (steps: %s)", s.Title, labFile, quoteTitles(lab.Steps))})
		case first[s.Title] != 0:
			out = append(out, Problem{Path: path, Line: s.Line, Message: fmt.Sprintf("second section %q (the first is at line %d)", s.Title, first[s.Title])})
		default:
			first[s.Title] = s.Line
			if i < last {
				out = append(out, Problem{Path: path, Line: s.Line, Message: fmt.Sprintf("section %q (step %d) comes after %q (step %d): keep the steps' order", s.Title, i+1, lastTitle, last+1)})
			} else {
				last, lastTitle = i, s.Title
			}
		}
	}
	for _, st := range lab.Steps {
		if first[st.Title] == 0 {
			out = append(out, Problem{Path: labPath, Line: st.Line, Message: fmt.Sprintf("step %q has no section in %s: add %q", st.Title, SolutionFile, stepMarker+" "+st.Title)})
		}
	}
	return out
}

func lintCheats(dir string, lab *Lab) []Problem {
	cheats, err := Cheats(dir)
	if err != nil {
		return []Problem{{Path: filepath.Join(dir, CheatsDir), Message: err.Error()}}
	}
	var out []Problem
	for _, c := range cheats {
		out = append(out, lintVars(c.Path, lab, []byte(c.Script))...)
		if c.Line == 0 {
			out = append(out, Problem{Path: c.Path, Message: fmt.Sprintf("cheat has no %q line: name the step whose checks must catch it", cheatMarker+" <step title>")})
			continue
		}
		found := false
		for _, st := range lab.Steps {
			found = found || st.Title == c.Step
		}
		if !found {
			out = append(out, Problem{Path: c.Path, Line: c.Line, Message: fmt.Sprintf("expect-fail names no step of %s: %q (steps: %s)", labFile, c.Step, quoteTitles(lab.Steps))})
		}
	}
	return out
}

func quoteTitles(steps []Step) string {
	var q []string
	for _, st := range steps {
		q = append(q, fmt.Sprintf("%q", st.Title))
	}
	return strings.Join(q, ", ")
}
