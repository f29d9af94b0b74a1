package labs

import (
	"bytes"
	"fmt"
	"html/template"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/alecthomas/chroma/v2/lexers"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"
)

// shellLangs are the info-string languages that make a block runnable.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true}

// lineIndex maps byte offsets of a source to lines of lab.md.
type lineIndex struct {
	nl   []int // offsets of '\n'
	base int   // lab.md line of the source's first line, minus one
}

func newLineIndex(src []byte, base int) lineIndex {
	li := lineIndex{base: base}
	for i, c := range src {
		if c == '\n' {
			li.nl = append(li.nl, i)
		}
	}
	return li
}

func (li lineIndex) line(off int) int {
	if off < 0 {
		off = 0
	}
	return li.base + sort.SearchInts(li.nl, off) + 1
}

func (p *parser) parse(src []byte) *Lab {
	src = bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
	src = normalizeNewlines(src)
	lab := &Lab{ID: p.id, Dir: p.dir}
	body := src
	if yamlText, first, bodyStart, ok := p.splitFrontMatter(src); ok {
		p.frontMatter(lab, yamlText, first)
		// Blank out the front matter instead of cutting it off, so byte
		// offsets in the body are offsets in lab.md and lines stay right.
		body = bytes.Clone(src)
		for i := 0; i < bodyStart; i++ {
			if body[i] != '\n' {
				body[i] = ' '
			}
		}
	}
	// Variables first: their values are text, code and checks like the
	// rest. One-line values keep every line where it was.
	li := newLineIndex(body, 0)
	body = expandVars(body, lab.Vars, func(off int, msg string) { p.problem(li.line(off), msg) })
	p.body(lab, body)
	return lab
}

// normalizeNewlines makes every line end in "\n": CommonMark and YAML
// both end lines at "\r\n" and at a lone "\r" too, and problems are
// placed by counting "\n".
func normalizeNewlines(src []byte) []byte {
	src = bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(src, []byte("\r"), []byte("\n"))
}

// doc is one Markdown source being transformed: lab.md's body, or the text
// of a hint, which is Markdown of its own.
type doc struct {
	src   []byte
	lines lineIndex
}

func (p *parser) body(lab *Lab, src []byte) {
	d := doc{src: src, lines: newLineIndex(src, 0)}
	root := md.Parser().Parse(text.NewReader(src))

	var blocks [][]Check
	p.transform(d, root, func(cs []Check) { blocks = append(blocks, cs) })

	// Split the top-level nodes into the intro and one section per "## ".
	sections := [][]ast.Node{nil}
	titles := map[string]int{}
	for n := root.FirstChild(); n != nil; n = n.NextSibling() {
		if h, ok := n.(*ast.Heading); ok && h.Level == 2 {
			line := d.lines.line(h.Pos())
			title := strings.TrimSpace(plainText(h, src))
			id, _ := h.AttributeString("id")
			idStr, _ := id.([]byte)
			switch prev, dup := titles[title]; {
			case title == "":
				p.problem(line, "step heading is empty")
			case dup:
				p.problem(line, fmt.Sprintf("duplicate step title %q (first at line %d)", title, prev))
			default:
				titles[title] = line
			}
			lab.Steps = append(lab.Steps, Step{Index: len(lab.Steps) + 1, ID: string(idStr), Title: title, Line: line})
			sections = append(sections, nil)
			continue
		}
		sections[len(sections)-1] = append(sections[len(sections)-1], n)
	}
	if len(lab.Steps) == 0 {
		p.problem(1, "lab has no steps: start each step with a \"## \" heading")
	}

	// Attach checks to their steps, numbering the ones without an id.
	ids := map[string]int{}
	for _, b := range blocks {
		// The block belongs to the last step whose heading is above it.
		si := sort.Search(len(lab.Steps), func(i int) bool { return lab.Steps[i].Line > b[0].Line })
		if si == 0 {
			p.problem(b[0].Line, "check block before the first step: checks belong to a \"## \" step")
			continue
		}
		st := &lab.Steps[si-1]
		for _, c := range b {
			if c.ID == "" {
				c.ID = fmt.Sprintf("%s-%d", st.ID, len(st.Checks)+1)
			}
			if prev, dup := ids[c.ID]; dup {
				p.problem(c.Line, fmt.Sprintf("duplicate check id %q (first at line %d)", c.ID, prev))
			} else {
				ids[c.ID] = c.Line
			}
			st.Checks = append(st.Checks, c)
		}
	}

	p.attachSetups(lab)

	var err error
	if lab.Intro, err = renderNodes(src, sections[0]); err != nil {
		p.problem(1, "render intro: "+err.Error())
	}
	for i := range lab.Steps {
		st := &lab.Steps[i]
		nodes := sections[i+1]
		if len(st.Checks) > 0 {
			nodes = append(nodes, &rawHTML{html: checksHTML(st.Index, st.Checks)})
		}
		if st.HTML, err = renderNodes(src, nodes); err != nil {
			p.problem(st.Line, "render step: "+err.Error())
		}
	}
}

// transform walks a parsed document: it reports h1 headings, checks and
// rewrites relative links, and replaces labd's fenced blocks with their
// rendered form. Check blocks are removed and handed to onChecks with the
// top-level node they sat in.
func (p *parser) transform(d doc, root ast.Node, onChecks func([]Check)) {
	var fences []*ast.FencedCodeBlock
	var codes []*ast.CodeBlock
	_ = ast.Walk(root, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.Heading:
			if n.Level == 1 {
				p.problem(d.lines.line(n.Pos()), "level-1 heading in the body: the title comes from the front matter; start steps with \"## \"")
			}
		case *ast.FencedCodeBlock:
			fences = append(fences, n)
		case *ast.CodeBlock:
			codes = append(codes, n)
		case *ast.Link:
			n.Destination = p.localLink(d, n, n.Destination)
		case *ast.Image:
			n.Destination = p.localLink(d, n, n.Destination)
		}
		return ast.WalkContinue, nil
	})
	for _, c := range codes {
		frame(c, false)
	}
	for _, f := range fences {
		p.fence(d, f, onChecks)
	}
}

// frame wraps a code block in its Copy/Run frame.
func frame(n ast.Node, runnable bool) {
	f := &codeFrame{runnable: runnable}
	parent := n.Parent()
	parent.ReplaceChild(parent, n, f)
	f.AppendChild(f, n)
}

func blockText(d doc, n ast.Node) []byte {
	var b bytes.Buffer
	lines := n.Lines()
	for i := 0; i < lines.Len(); i++ {
		seg := lines.At(i)
		b.Write(seg.Value(d.src))
	}
	return b.Bytes()
}

func (p *parser) fence(d doc, f *ast.FencedCodeBlock, onChecks func([]Check)) {
	var info string
	if f.Info != nil {
		info = string(f.Info.Segment.Value(d.src))
	}
	fields := strings.Fields(info)
	lang := ""
	if len(fields) > 0 {
		lang = fields[0]
	}
	line := d.lines.line(f.Pos())
	content := blockText(d, f)
	empty := len(bytes.TrimSpace(content)) == 0
	parent := f.Parent()

	switch lang {
	case "check":
		p.noFlags(line, lang, fields[1:])
		parent.RemoveChild(parent, f)
		if empty {
			p.problem(line, "empty check block")
			return
		}
		if cs := p.checks(content, line); len(cs) > 0 {
			onChecks(cs)
		}
	case "question":
		p.noFlags(line, lang, fields[1:])
		if empty {
			parent.RemoveChild(parent, f)
			p.problem(line, "empty question block")
			return
		}
		// A question is a check of kind question: the same YAML, the
		// kind implied (its line is the fence's, so lines stay right).
		cs := p.checks(append([]byte("kind: question\n"), content...), line-1)
		if len(cs) != 1 {
			parent.RemoveChild(parent, f)
			if len(cs) > 1 {
				p.problem(line, "a question block holds one question")
			}
			return
		}
		if cs[0].ID == "" {
			parent.RemoveChild(parent, f)
			p.problem(line, `a question needs an "id" (it names the learner's answer)`)
			return
		}
		parent.ReplaceChild(parent, f, &rawHTML{html: questionHTML(p.id, cs[0])})
		onChecks(cs)
	case "setup":
		p.noFlags(line, lang, fields[1:])
		parent.RemoveChild(parent, f)
		if empty {
			p.problem(line, "empty setup block")
			return
		}
		p.setups = append(p.setups, setupBlock{line: line, script: string(content)})
	case "hint":
		summary := "Hint"
		for _, a := range infoArgs(info)[1:] {
			if a.key != "title" || a.value == "" {
				p.problem(line, fmt.Sprintf("unknown flag %q on hint block (known: title=\"...\")", a.raw))
				continue
			}
			summary = a.value
		}
		if empty {
			p.problem(line, "empty hint")
		}
		sub := doc{src: content, lines: newLineIndex(content, line)}
		root := md.Parser().Parse(text.NewReader(content))
		p.transform(sub, root, func(cs []Check) {
			p.problem(cs[0].Line, "check block inside a hint")
		})
		inner, err := renderNodes(content, children(root))
		if err != nil {
			p.problem(line, "render hint: "+err.Error())
		}
		parent.ReplaceChild(parent, f, &rawHTML{html: `<details class="hint"><summary>` +
			template.HTMLEscapeString(summary) + "</summary>\n" + string(inner) + "</details>\n"})
	case "solution":
		p.noFlags(line, lang, fields[1:])
		if empty {
			p.problem(line, "empty solution")
		}
		// A solution is shell commands: render them as a runnable bash block
		// by giving goldmark a fence longer than any backtick run inside.
		fence := strings.Repeat("`", max(3, longestRun(content, '`')+1))
		src := []byte(fence + "bash\n" + string(content) + fence + "\n")
		root := md.Parser().Parse(text.NewReader(src))
		p.transform(doc{src: src, lines: newLineIndex(src, line-1)}, root, func([]Check) {})
		inner, err := renderNodes(src, children(root))
		if err != nil {
			p.problem(line, "render solution: "+err.Error())
		}
		parent.ReplaceChild(parent, f, &rawHTML{html: `<details class="solution"><summary>Solution</summary>` + "\n" +
			string(inner) + "</details>\n"})
	default:
		copyOnly := false
		for _, a := range infoArgs(info)[1:] {
			if strings.HasPrefix(a.raw, "{") {
				break // goldmark-highlighting attributes, e.g. {hl_lines=[2]}
			}
			if a.raw != "copy" {
				p.problem(line, fmt.Sprintf("unknown flag %q on %s block (known: copy)", a.raw, lang))
				continue
			}
			copyOnly = true
		}
		switch {
		case shellLangs[lang]:
			frame(f, !copyOnly)
		case lang == "" || lexers.Get(lang) != nil:
			frame(f, false)
		default:
			p.problem(line, fmt.Sprintf("unknown fenced block kind %q (use check, hint, solution, setup, question, a shell language or a language chroma knows)", lang))
			frame(f, false)
		}
	}
}

func (p *parser) noFlags(line int, lang string, flags []string) {
	if len(flags) > 0 {
		p.problem(line, fmt.Sprintf("unknown flag %q on %s block (it takes none)", flags[0], lang))
	}
}

// infoArg is one word of a fenced block's info string: a bare word, or
// key=value where value may be double-quoted to hold spaces.
type infoArg struct{ raw, key, value string }

func infoArgs(info string) []infoArg {
	var out []infoArg
	s := strings.TrimSpace(info)
	for s != "" {
		end := 0
		quoted := false
		for end < len(s) && (quoted || (s[end] != ' ' && s[end] != '\t')) {
			if s[end] == '"' {
				quoted = !quoted
			}
			end++
		}
		raw := s[:end]
		a := infoArg{raw: raw}
		if k, v, ok := strings.Cut(raw, "="); ok {
			a.key = k
			a.value = strings.TrimSpace(strings.Trim(v, `"`))
		}
		out = append(out, a)
		s = strings.TrimLeft(s[end:], " \t")
	}
	if len(out) == 0 {
		out = append(out, infoArg{})
	}
	return out
}

func longestRun(b []byte, c byte) int {
	best, cur := 0, 0
	for _, x := range b {
		if x == c {
			cur++
			best = max(best, cur)
		} else {
			cur = 0
		}
	}
	return best
}

func children(n ast.Node) []ast.Node {
	var out []ast.Node
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		out = append(out, c)
	}
	return out
}

// plainText is the text of an inline tree, as a heading's title.
func plainText(n ast.Node, src []byte) string {
	var b strings.Builder
	_ = ast.Walk(n, func(c ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch c := c.(type) {
		case *ast.Text:
			b.Write(c.Segment.Value(src))
			if c.SoftLineBreak() || c.HardLineBreak() {
				b.WriteByte(' ')
			}
		case *ast.String:
			b.Write(c.Value)
		case *ast.RawHTML:
			return ast.WalkSkipChildren, nil
		}
		return ast.WalkContinue, nil
	})
	return b.String()
}

// localLink checks a link or image destination and, when it points at a file
// of the lab, rewrites it to the URL the web layer serves lab files under.
// Absolute URLs, site paths ("/...") and fragments ("#...") are left alone.
func (p *parser) localLink(d doc, n ast.Node, dest []byte) []byte {
	s := string(dest)
	u, err := url.Parse(s)
	if err != nil || s == "" || u.Scheme != "" || u.Host != "" || strings.HasPrefix(s, "/") || strings.HasPrefix(s, "#") {
		return dest
	}
	line := d.lines.line(n.Pos())
	rel := u.Path
	if rel == "" {
		return dest
	}
	clean := path.Clean(rel)
	if clean == ".." || strings.HasPrefix(clean, "../") || !filepath.IsLocal(filepath.FromSlash(clean)) {
		p.problem(line, fmt.Sprintf("link %q leaves the lab folder: lab files must be inside it", s))
		return dest
	}
	fi, err := os.Stat(filepath.Join(p.dir, filepath.FromSlash(clean)))
	switch {
	case err != nil:
		p.problem(line, fmt.Sprintf("link %q points at a file that does not exist in the lab folder", s))
		return dest
	case fi.IsDir():
		p.problem(line, fmt.Sprintf("link %q points at a folder, not a file", s))
		return dest
	}
	out := (&url.URL{Path: "/labs/" + p.id + "/files/" + clean}).EscapedPath()
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	if u.Fragment != "" {
		out += "#" + u.EscapedFragment()
	}
	return []byte(out)
}
