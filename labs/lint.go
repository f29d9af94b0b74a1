package labs

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Warning is something in the content folder worth a look that stops no
// lab: an entry that is not a lab.
type Warning Problem

// String formats the warning as a compiler does, marked as a warning.
func (w Warning) String() string {
	if w.Line <= 0 {
		return w.Path + ": warning: " + w.Message
	}
	return w.Path + ":" + strconv.Itoa(w.Line) + ": warning: " + w.Message
}

// Lint loads every lab folder under root and returns its problems (ordered
// by folder and line) and one warning per entry that is not a lab. Paths
// are built from root as given, so `labd lint content` prints
// content/<id>/lab.md:12: ... . Hidden entries are skipped. A folder
// without lab.md, or a plain file, is not a lab: a warning, so that notes
// or shared assets beside the labs do not fail them. A folder with lab.md
// whose name is not a valid lab ID is a problem.
func Lint(root string) ([]Problem, []Warning) {
	// One lab's folder (labd lint content/my-lab) is that lab, not a
	// content folder of its files.
	if fi, err := os.Stat(filepath.Join(root, "lab.md")); err == nil && fi.Mode().IsRegular() {
		return LintLab(root), nil
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return []Problem{{Path: root, Message: "cannot read content folder: " + err.Error()}}, nil
	}
	var problems []Problem
	var warnings []Warning
	for _, de := range ents {
		name := de.Name()
		dir := filepath.Join(root, name)
		if strings.HasPrefix(name, ".") {
			continue
		}
		if w, ok := notALab(dir); ok {
			warnings = append(warnings, w)
			continue
		}
		problems = append(problems, LintLab(dir)...)
	}
	return problems, warnings
}

// LintLab returns the problems of one lab folder: its lab.md's, then its
// solution.sh's and cheats'.
func LintLab(dir string) []Problem {
	lab, problems := Load(dir)
	if lab == nil {
		return problems
	}
	return append(problems, lintSolution(dir, lab)...)
}

// IsLab reports whether path is a lab folder: a folder holding lab.md
// (whatever its name; a bad name is a lint problem of the lab).
func IsLab(path string) bool {
	_, ok := notALab(path)
	return !ok
}

// notALab says why path is not a lab, if it is not.
func notALab(path string) (Warning, bool) {
	if !isDir(path) {
		return Warning{Path: path, Message: "not a folder, so not a lab: labd ignores it"}, true
	}
	if _, err := os.Stat(filepath.Join(path, labFile)); err != nil {
		return Warning{Path: path, Message: "folder has no " + labFile + ", so it is not a lab: labd ignores it"}, true
	}
	return Warning{}, false
}
