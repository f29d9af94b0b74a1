package labs

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"go.yaml.in/yaml/v3"
)

// parser collects the problems of one lab.md while building its Lab.
type parser struct {
	path, dir, id string
	problems      []Problem
	setups        []setupBlock // ```setup blocks, attached to steps by line
}

func (p *parser) problem(line int, msg string) {
	p.problems = append(p.problems, Problem{Path: p.path, Line: line, Message: msg})
}

// splitFrontMatter finds the front matter between a first line "---" and
// the next line "---" (or "..."). It returns the YAML text, the line of lab.md
// the YAML starts on, and the offset where the body starts. ok is false when
// there is no front matter; the caller then treats the whole file as body.
func (p *parser) splitFrontMatter(src []byte) (yamlText []byte, firstLine, bodyStart int, ok bool) {
	first, rest, _ := bytes.Cut(src, []byte("\n"))
	if string(bytes.TrimRight(first, " \t")) != "---" {
		p.problem(1, "missing front matter: lab.md must start with a \"---\" line, then title, summary, duration and level")
		return nil, 0, 0, false
	}
	off := len(first) + 1 // start of the current line
	for {
		line, next, found := bytes.Cut(rest, []byte("\n"))
		if t := string(bytes.TrimRight(line, " \t")); t == "---" || t == "..." {
			end := off + len(line)
			if found {
				end++
			}
			return src[len(first)+1 : off], 2, end, true
		}
		if !found {
			break
		}
		off += len(line) + 1
		rest = next
	}
	p.problem(1, "front matter is not closed: add a \"---\" line after it")
	return nil, 0, 0, false
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

var yamlParserErrors = []string{
	"did not find expected ',' or",
	"did not find expected '-' indicator",
	"did not find expected <",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// yamlProblem turns a YAML error into a message and a line of lab.md, given
// the line the YAML text starts on.
func yamlProblem(err error, firstLine int) (int, string) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		// yaml.v3 reports scanner errors with 1-based lines but parser
		// errors with the 0-based line of the enclosing construct.
		for _, pe := range yamlParserErrors {
			if strings.HasPrefix(m[2], pe) {
				n++
				break
			}
		}
		return firstLine + n - 1, m[2]
	}
	return firstLine, strings.TrimPrefix(msg, "yaml: ")
}

// frontMatter reads the lab's metadata into lab.
func (p *parser) frontMatter(lab *Lab, text []byte, firstLine int) {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		line, msg := yamlProblem(err, firstLine)
		p.problem(line, "front matter: "+msg)
		return
	}
	fields := map[string]*string{
		"title": &lab.Title, "summary": &lab.Summary, "duration": &lab.Duration, "level": &lab.Level,
	}
	seen := map[string]int{}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		m := doc.Content[0]
		if m.Kind != yaml.MappingNode {
			p.problem(firstLine+m.Line-1, "front matter must be a YAML mapping of key: value lines")
			return
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			line := firstLine + k.Line - 1
			key := k.Value
			if prev, dup := seen[key]; dup {
				p.problem(line, fmt.Sprintf("duplicate front matter key %q (first at line %d)", key, prev))
				continue
			}
			seen[key] = line
			switch dst, known := fields[key]; {
			case known:
				if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || strings.TrimSpace(v.Value) == "" {
					p.problem(line, fmt.Sprintf("front matter field %q must be non-empty text", key))
					continue
				}
				*dst = strings.TrimSpace(v.Value)
			case key == "tags":
				lab.Tags = p.tags(v, line)
			case key == "images":
				lab.Images = p.images(v, line, line-k.Line)
			case key == "resources":
				lab.Resources = p.resources(v, line, line-k.Line)
			case key == "vars":
				lab.Vars = p.vars(v, line, line-k.Line)
			default:
				p.problem(line, fmt.Sprintf("unknown front matter key %q (known: title, summary, duration, level, tags, images, resources, vars)", key))
			}
		}
	}
	for _, key := range []string{"title", "summary", "duration", "level"} {
		if _, ok := seen[key]; !ok {
			p.problem(1, fmt.Sprintf("front matter is missing required field %q", key))
		}
	}
	if lab.Level != "" && !slices.Contains(Levels, lab.Level) {
		p.problem(seen["level"], fmt.Sprintf("front matter field \"level\" must be one of %s, not %q", strings.Join(Levels, ", "), lab.Level))
	}
}

func (p *parser) tags(v *yaml.Node, line int) []string {
	if v.Kind != yaml.SequenceNode {
		p.problem(line, "front matter field \"tags\" must be a list of strings, like [docker, basics]")
		return nil
	}
	tags := make([]string, 0, len(v.Content))
	for _, t := range v.Content {
		if t.Kind != yaml.ScalarNode || t.Tag == "!!null" || strings.TrimSpace(t.Value) == "" {
			p.problem(line, "front matter field \"tags\" must be a list of strings, like [docker, basics]")
			return nil
		}
		tags = append(tags, strings.TrimSpace(t.Value))
	}
	return tags
}

// images reads the "images" list: references of the base images the lab
// needs (as in a FROM line or docker run), each valid and listed once.
// off turns a YAML line into a line of lab.md.
func (p *parser) images(v *yaml.Node, line, off int) []string {
	const form = "front matter field \"images\" must be a list of image references, like [python:3.11-slim, busybox]"
	if v.Kind != yaml.SequenceNode {
		p.problem(line, form)
		return nil
	}
	images := make([]string, 0, len(v.Content))
	seen := map[string]string{}
	for _, n := range v.Content {
		l := off + n.Line
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || strings.TrimSpace(n.Value) == "" {
			p.problem(l, form)
			return nil
		}
		ref := strings.TrimSpace(n.Value)
		named, err := reference.ParseNormalizedNamed(ref)
		if err != nil {
			p.problem(l, fmt.Sprintf("front matter field \"images\": %q is not an image reference: %v", ref, err))
			continue
		}
		full := reference.TagNameOnly(named).String()
		if prev, dup := seen[full]; dup {
			p.problem(l, fmt.Sprintf("front matter field \"images\" lists %q twice (also as %q)", ref, prev))
			continue
		}
		seen[full] = ref
		images = append(images, ref)
	}
	return images
}
