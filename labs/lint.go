package labs

import (
	"os"
	"path/filepath"
	"strings"
)

// Lint loads every folder under root and returns all problems, ordered by
// folder and line. Paths in problems are built from root as given, so
// `labd lint content` prints content/<id>/lab.md:12: ... . Hidden folders
// and plain files are skipped; a folder whose name is not a valid lab ID is
// a problem.
func Lint(root string) []Problem {
	ents, err := os.ReadDir(root)
	if err != nil {
		return []Problem{{Path: root, Message: "cannot read content folder: " + err.Error()}}
	}
	var out []Problem
	for _, de := range ents {
		name := de.Name()
		dir := filepath.Join(root, name)
		if strings.HasPrefix(name, ".") || !isDir(dir) {
			continue
		}
		_, problems := Load(dir)
		out = append(out, problems...)
	}
	return out
}
