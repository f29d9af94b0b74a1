package labs

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/labd/labd/labs/check"
)

// Lab is one parsed and rendered lab. A *Lab handed out by Load or Catalog
// is shared: callers must treat it as read-only.
type Lab struct {
	ID, Dir                         string
	Title, Summary, Duration, Level string
	Tags                            []string
	Intro                           template.HTML // body before the first "## " heading
	Steps                           []Step

	// Images are the base images the lab needs ("images:" in the front
	// matter, as written: python:3.11-slim); the lab page says when one
	// is not there yet.
	Images []string
	// Resources are the limits the lab's sandboxes ask for instead of the
	// server's defaults ("resources:"); zero: the defaults.
	Resources Resources
	// Vars are the lab's variables ("vars:"), already put in place of
	// {{vars.NAME}} in its text and checks (vars.go).
	Vars map[string]string
	// Starter is the lab's workspace/ folder, copied into a learner's new
	// workspace (starter.go); "" without one.
	Starter string
}

// Step is one "## " section of lab.md.
type Step struct {
	Index  int    // 1-based
	ID     string // heading id (anchor)
	Title  string
	HTML   template.HTML // rendered body of the step (without its heading)
	Checks []Check
	Line   int
	// Setup is the script that brings a fresh sandbox to where this step
	// starts ("Start from this step"): the step's ```setup block, else
	// solution.sh's sections of the steps before it (setup.go); "" for
	// the first step and when there is neither.
	Setup string
}

// Check is one entry of a ```check block, kept for the grader.
type Check struct {
	ID    string // "id:" in YAML, else "<step id>-<n>"
	Kind  string // one of Kinds
	Title string // learner-facing description
	Hint  string
	// Sticky: once passed, the check stays passed ("sticky:", default
	// true).
	Sticky bool
	// Points are what the check is worth in a learner's score ("points:",
	// default 1; 0 for a check that counts for nothing).
	Points int
	Line   int        // line in lab.md
	Spec   check.Spec // the kind's fields, typed (package check)
}

// Problem is something wrong with a lab, located in its lab.md.
// Line is 0 when the problem is about the folder rather than a line.
type Problem struct {
	Path    string
	Line    int
	Message string
}

// String formats the problem the way compilers do, so editors can jump to it.
func (p Problem) String() string {
	if p.Line <= 0 {
		return p.Path + ": " + p.Message
	}
	return p.Path + ":" + strconv.Itoa(p.Line) + ": " + p.Message
}

// Levels are the allowed values of the front matter's "level".
var Levels = []string{"beginner", "intermediate", "advanced"}

// Kinds are the allowed check kinds.
var Kinds = check.Kinds

var idRE = regexp.MustCompile(`^[a-z0-9-]+$`)

// ValidID reports whether id can name a lab or a check.
func ValidID(id string) bool { return idRE.MatchString(id) }

// labFile is the name of the file that makes a folder a lab.
const labFile = "lab.md"

// maxLabSize bounds what Load reads; a lab.md bigger than this is a mistake.
const maxLabSize = 4 << 20

// Load reads dir/lab.md and renders it. The lab ID is the folder's name.
// The returned Lab is nil only when lab.md cannot be read; when problems
// is not empty the Lab is partial and must not be shown to learners.
// Problem paths are built from dir as given.
func Load(dir string) (*Lab, []Problem) {
	path := filepath.Join(dir, labFile)
	id := filepath.Base(dir)
	var folder []Problem
	if !ValidID(id) {
		folder = append(folder, Problem{Path: dir, Message: fmt.Sprintf("folder name %q is not a valid lab ID (use a-z, 0-9 and -)", id)})
	}
	src, err := readLabFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, append(folder, Problem{Path: dir, Message: "folder has no " + labFile})
	}
	if err != nil {
		return nil, append(folder, Problem{Path: path, Message: err.Error()})
	}
	p := &parser{path: path, dir: dir, id: id, problems: folder}
	lab := p.parse(src)
	p.starter(lab)
	solutionSetups(lab)
	sort.SliceStable(p.problems, func(i, j int) bool { return p.problems[i].Line < p.problems[j].Line })
	return lab, p.problems
}

func readLabFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a folder", labFile)
	}
	if fi.Size() > maxLabSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", labFile, maxLabSize)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("read %s: %w", labFile, err)
	}
	return buf.Bytes(), nil
}
