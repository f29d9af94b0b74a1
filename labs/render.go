package labs

import (
	"bytes"
	"html/template"
	"strconv"
	"strings"

	chromahtml "github.com/alecthomas/chroma/v2/formatters/html"
	"github.com/alecthomas/chroma/v2/styles"
	"github.com/yuin/goldmark"
	highlighting "github.com/yuin/goldmark-highlighting/v2"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	gparser "github.com/yuin/goldmark/parser"
	"github.com/yuin/goldmark/renderer"
	"github.com/yuin/goldmark/util"
)

// highlightStyle is the chroma style HighlightCSS serves; code is rendered
// with CSS classes so the page's stylesheet decides the colours.
const highlightStyle = "github"

// md is shared: goldmark's parser and renderers keep no state between
// documents, so one instance serves concurrent loads. Unsafe raw HTML stays
// off (goldmark's default): lab authors are only semi-trusted.
var md = goldmark.New(
	goldmark.WithExtensions(
		extension.GFM,
		highlighting.NewHighlighting(
			highlighting.WithStyle(highlightStyle),
			highlighting.WithFormatOptions(chromahtml.WithClasses(true)),
		),
	),
	goldmark.WithParserOptions(gparser.WithAutoHeadingID()),
	goldmark.WithRendererOptions(renderer.WithNodeRenderers(util.Prioritized(labRenderer{}, 100))),
)

// HighlightCSS returns the stylesheet for the CSS classes that code blocks
// are rendered with (a light theme).
func HighlightCSS() string {
	var b strings.Builder
	f := chromahtml.New(chromahtml.WithClasses(true))
	if err := f.WriteCSS(&b, styles.Get(highlightStyle)); err != nil {
		// WriteCSS only fails when the writer does; a strings.Builder does not.
		panic(err)
	}
	return b.String()
}

// codeFrame wraps a code block with its Copy (and Run) buttons.
type codeFrame struct {
	ast.BaseBlock
	runnable bool
}

var kindCodeFrame = ast.NewNodeKind("LabCodeFrame")

func (n *codeFrame) Kind() ast.NodeKind { return kindCodeFrame }
func (n *codeFrame) Dump(src []byte, level int) {
	ast.DumpHelper(n, src, level, nil, nil)
}

// rawHTML is HTML that labs produced itself (hints, solutions, check lists).
type rawHTML struct {
	ast.BaseBlock
	html string
}

var kindRawHTML = ast.NewNodeKind("LabRawHTML")

func (n *rawHTML) Kind() ast.NodeKind { return kindRawHTML }
func (n *rawHTML) Dump(src []byte, level int) {
	ast.DumpHelper(n, src, level, nil, nil)
}

type labRenderer struct{}

func (labRenderer) RegisterFuncs(r renderer.NodeRendererFuncRegisterer) {
	r.Register(kindCodeFrame, renderCodeFrame)
	r.Register(kindRawHTML, func(w util.BufWriter, _ []byte, n ast.Node, entering bool) (ast.WalkStatus, error) {
		if entering {
			_, _ = w.WriteString(n.(*rawHTML).html)
		}
		return ast.WalkSkipChildren, nil
	})
}

func renderCodeFrame(w util.BufWriter, _ []byte, n ast.Node, entering bool) (ast.WalkStatus, error) {
	if !entering {
		_, _ = w.WriteString("</div>\n")
		return ast.WalkContinue, nil
	}
	if n.(*codeFrame).runnable {
		_, _ = w.WriteString(`<div class="codeblock" data-runnable="true"><div class="codeblock-actions"><button type="button" class="btn-copy">Copy</button><button type="button" class="btn-run">Run</button></div>`)
	} else {
		_, _ = w.WriteString(`<div class="codeblock" data-runnable="false"><div class="codeblock-actions"><button type="button" class="btn-copy">Copy</button></div>`)
	}
	return ast.WalkContinue, nil
}

// renderNodes renders a detached list of top-level nodes as one fragment.
func renderNodes(src []byte, nodes []ast.Node) (template.HTML, error) {
	doc := ast.NewDocument()
	for _, n := range nodes {
		if p := n.Parent(); p != nil {
			p.RemoveChild(p, n)
		}
		doc.AppendChild(doc, n)
	}
	var buf bytes.Buffer
	if err := md.Renderer().Render(&buf, src, doc); err != nil {
		return "", err
	}
	// The HTML comes from goldmark with raw HTML disabled and every text
	// escaped, so it is safe to mark as trusted.
	return template.HTML(buf.String()), nil //nolint:gosec // see above
}

// checksHTML renders a step's status area (see docs/architecture.md). The
// grader does not exist yet, so every check is "pending" and the note says
// so rather than pretending anything ran.
func checksHTML(step int, checks []Check) string {
	var b strings.Builder
	b.WriteString(`<div class="step-status" data-step="`)
	b.WriteString(strconv.Itoa(step))
	b.WriteString(`"><ul>`)
	for _, c := range checks {
		b.WriteString(`<li class="check" data-check="`)
		b.WriteString(template.HTMLEscapeString(c.ID))
		b.WriteString(`" data-state="pending">`)
		b.WriteString(template.HTMLEscapeString(c.Title))
		b.WriteString(`</li>`)
	}
	b.WriteString("</ul><p class=\"step-status-note\">Not checked yet.</p></div>\n")
	return b.String()
}
