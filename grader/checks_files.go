package grader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/labd/labd/internal/safefile"
	"github.com/labd/labd/labs/check"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// maxFileRead bounds how much of a workspace file a check reads; a larger
// file fails the check (docs/authoring.md).
const maxFileRead = 1 << 20

// openWorkspaceFile opens the regular file rel in the workspace. The
// workspace is the learner's (root in the sandbox): nothing that leads
// out of it is followed, and a FIFO, device or socket is refused without
// being opened (safefile), so the grader neither blocks nor reads the
// host's devices. rel is cleaned lexically first: an author's "../x"
// stays in the workspace.
func openWorkspaceFile(ws, rel string) (*os.File, error) {
	if ws == "" {
		return nil, cannot("no workspace")
	}
	clean := path.Clean("/" + rel)[1:]
	if clean == "" {
		clean = "."
	}
	f, err := safefile.Open(ws, clean, safefile.Beneath)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == clean {
			pe.Path = rel // the name the learner knows
		}
		return nil, err
	}
	return f, nil
}

// readWorkspaceFile reads the regular file rel in the workspace, at most
// maxFileRead bytes.
func readWorkspaceFile(ws, rel string) ([]byte, error) {
	f, err := openWorkspaceFile(ws, rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return safefile.ReadAll(f, rel, maxFileRead)
}

// missing: nothing (or a folder, or a way out of the workspace) at the
// path, as far as a check for a file is concerned.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, safefile.ErrOutside) ||
		errors.Is(err, syscall.ENOTDIR) || isFolder(err)
}

func isFolder(err error) bool {
	var nr *safefile.NotRegularError
	return errors.As(err, &nr) && nr.Type == "directory"
}

// unreadable is the failure for a workspace file that exists but cannot
// be graded: a folder, something that is not a regular file, too large.
// ok is false for other errors.
func unreadable(rel string, err error) (o outcome, ok bool) {
	var nr *safefile.NotRegularError
	switch {
	case isFolder(err):
		return outcome{msg: fmt.Sprintf("%s is a folder, not a file", rel)}, true
	case errors.As(err, &nr):
		return outcome{msg: fmt.Sprintf("%s is not a regular file (it is a %s): the grader reads only regular files; remove it with rm %s and write the file again", rel, nr.Type, rel)}, true
	case errors.Is(err, safefile.ErrTooLarge):
		return outcome{msg: fmt.Sprintf("%s is larger than %s, more than the grader reads", rel, safefile.Size(maxFileRead))}, true
	}
	return outcome{}, false
}

func checkFile(ctx context.Context, p *probe, s *check.File) (outcome, error) {
	rel := s.Path
	f, err := openWorkspaceFile(p.env.Workspace, rel)
	if err == nil {
		defer f.Close()
	}
	if !check.Or(s.Exists, true) {
		if err == nil || errors.Is(err, safefile.ErrNotRegular) && !isFolder(err) {
			return fail("%s should not exist: remove it with rm %s", rel, rel)
		}
		if missing(err) {
			return pass()
		}
		return failed(cannot("read %s: %v", rel, err))
	}
	if err != nil {
		if o, ok := unreadable(rel, err); ok {
			return o, nil
		}
		if missing(err) {
			return fail("There is no file %s in your workspace yet", rel)
		}
		var ec errCannot
		if errors.As(err, &ec) {
			return failed(err)
		}
		return failed(cannot("read %s: %v", rel, err))
	}
	want, expr := s.Contains, string(s.Matches)
	if want == "" && expr == "" {
		return pass()
	}
	b, err := safefile.ReadAll(f, rel, maxFileRead)
	if err != nil {
		if o, ok := unreadable(rel, err); ok {
			return o, nil
		}
		return failed(cannot("read %s: %v", rel, err))
	}
	if want != "" && !bytes.Contains(b, []byte(want)) {
		return fail("%s does not contain %q", rel, want)
	}
	if expr != "" {
		re, err := regexp.Compile(expr)
		if err != nil {
			return failed(cannot("bad regular expression %q: %v", expr, err))
		}
		// Line by line, as the guide says: a \s or [^x] in an author's
		// pattern never reaches into the next line.
		found := false
		for line := range bytes.Lines(b) {
			if re.Match(bytes.TrimRight(line, "\r\n")) {
				found = true
				break
			}
		}
		if !found {
			return fail("%s has no line matching %s", rel, expr)
		}
	}
	return pass()
}

// instruction is one Dockerfile instruction: its keyword (upper case) and
// its arguments with whitespace removed, for tolerant matching.
type instruction struct {
	keyword  string
	args     string // compacted
	original string
}

func parseDockerfile(b []byte) ([]instruction, error) {
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var out []instruction
	for _, n := range res.AST.Children {
		kw, rest, _ := strings.Cut(strings.TrimSpace(n.Original), " ")
		out = append(out, instruction{keyword: strings.ToUpper(kw), args: compact(rest), original: n.Original})
	}
	return out, nil
}

// compact removes all white space, so `CMD ["python", "app.py"]` and
// `CMD ["python","app.py"]` compare equal.
func compact(s string) string {
	return strings.Join(strings.Fields(s), "")
}

// pattern is an author's instruction pattern. "COPY app.py" matches a
// COPY whose arguments contain "app.py" (spaces aside) or whose words
// include the pattern's words in order, an image name matching any of its
// tags ("FROM python AS builder" matches "FROM python:3.11-slim AS
// builder"); "RUN" matches any RUN. A pattern written /.../ is a regular
// expression on the instruction as written, spaces collapsed.
type pattern struct {
	keyword, args, text string
	words               []string
	re                  *regexp.Regexp
}

func parsePattern(s string) pattern {
	s = strings.TrimSpace(s)
	if len(s) > 2 && strings.HasPrefix(s, "/") && strings.HasSuffix(s, "/") {
		if re, err := regexp.Compile(s[1 : len(s)-1]); err == nil {
			return pattern{text: s, re: re}
		}
	}
	kw, rest, _ := strings.Cut(s, " ")
	return pattern{keyword: strings.ToUpper(kw), args: compact(rest), text: s, words: strings.Fields(rest)}
}

func (p pattern) match(in instruction) bool {
	if p.re != nil {
		return p.re.MatchString(strings.Join(strings.Fields(in.original), " "))
	}
	if p.keyword != in.keyword {
		return false
	}
	if strings.Contains(in.args, p.args) {
		return true
	}
	words := strings.Fields(in.original)[1:]
	i := 0
	for _, w := range words {
		if i < len(p.words) && sameWord(w, p.words[i]) {
			i++
		}
	}
	return i == len(p.words)
}

// sameWord: an instruction's word w is the pattern's word p, a keyword
// such as AS in any case, or an image p with a tag or digest.
func sameWord(w, p string) bool {
	return w == p || strings.EqualFold(w, p) && strings.EqualFold(p, "as") ||
		strings.HasPrefix(w, p+":") || strings.HasPrefix(w, p+"@")
}

// stage is one FROM section of a Dockerfile: its FROM and what follows.
type stage struct {
	name string // after AS, lower case; "" without one
	ins  []instruction
}

// stages splits a Dockerfile at its FROM lines; what comes before the
// first (ARG) belongs to none.
func stages(ins []instruction) []stage {
	var out []stage
	for _, in := range ins {
		if in.keyword == "FROM" {
			st := stage{}
			if w := strings.Fields(in.original); len(w) >= 4 && strings.EqualFold(w[len(w)-2], "as") {
				st.name = strings.ToLower(w[len(w)-1])
			}
			out = append(out, st)
		}
		if len(out) > 0 {
			out[len(out)-1].ins = append(out[len(out)-1].ins, in)
		}
	}
	return out
}

// findStage is the stage a check names: by its AS name or its number
// from 0, as docker build --target and COPY --from name them.
func findStage(sts []stage, ref string) (stage, bool) {
	for i, st := range sts {
		if strings.EqualFold(st.name, ref) || strconv.Itoa(i) == ref {
			return st, true
		}
	}
	return stage{}, false
}

func checkDockerfile(ctx context.Context, p *probe, s *check.Dockerfile) (outcome, error) {
	rel := s.Path
	if rel == "" {
		rel = "Dockerfile"
	}
	b, err := readWorkspaceFile(p.env.Workspace, rel)
	if err != nil {
		if o, ok := unreadable(rel, err); ok && !isFolder(err) {
			return o, nil
		}
		if missing(err) {
			return fail("There is no %s in your workspace yet", rel)
		}
		return failed(cannot("read %s: %v", rel, err))
	}
	ins, err := parseDockerfile(b)
	if err != nil {
		return fail("%s cannot be read as a Dockerfile: %v", rel, err)
	}
	if len(ins) == 0 {
		return fail("%s has no instructions yet", rel)
	}
	where := rel
	if s.Stage != "" {
		st, ok := findStage(stages(ins), s.Stage)
		if !ok {
			return fail("%s has no stage %s yet: start one with FROM <image> AS %s", rel, s.Stage, s.Stage)
		}
		ins = st.ins
		where = "Stage " + s.Stage + " of " + rel
	}
	if want := s.From; want != "" {
		var from string
		for _, in := range ins {
			if in.keyword == "FROM" {
				from = baseImage(in.original)
				break
			}
		}
		if from == "" {
			return fail("%s has no FROM line: start it with FROM %s", where, want)
		}
		if !sameImageName(from, want) {
			return fail("%s starts FROM %s; this step needs FROM %s", where, from, want)
		}
	}
	i := 0
	for _, raw := range s.Instructions {
		pt := parsePattern(raw)
		found := false
		for ; i < len(ins); i++ {
			if pt.match(ins[i]) {
				found, i = true, i+1
				break
			}
		}
		if !found {
			return fail("%s has no %s instruction in the expected place (after the ones before it in the lab)", where, pt.text)
		}
	}
	if last := s.Last; last != "" {
		pt := parsePattern(last)
		if l := ins[len(ins)-1]; !pt.match(l) {
			return fail("The last instruction of %s is %s; %s should come last", lower(where), strings.TrimSpace(l.original), pt.text)
		}
	}
	return pass()
}

// baseImage returns the image of a FROM line, without flags or AS name.
func baseImage(from string) string {
	f := strings.Fields(from)
	for _, w := range f[1:] {
		if strings.HasPrefix(w, "--") {
			continue
		}
		return w
	}
	return ""
}

// sameImageName reports whether image (from a FROM line) is want: want
// without a tag accepts any tag of that name.
func sameImageName(image, want string) bool {
	norm := func(s string) string {
		s = strings.TrimPrefix(s, "docker.io/")
		return strings.TrimPrefix(s, "library/")
	}
	image, want = norm(image), norm(want)
	if image == want {
		return true
	}
	if !strings.Contains(want[strings.LastIndex(want, "/")+1:], ":") {
		name := image
		if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
			name = image[:i]
		}
		if j := strings.Index(name, "@"); j >= 0 {
			name = name[:j]
		}
		return name == want
	}
	return false
}

// lower starts a phrase with a small letter, for the middle of a sentence.
func lower(s string) string {
	if strings.HasPrefix(s, "Stage ") {
		return "stage " + s[len("Stage "):]
	}
	return s
}
