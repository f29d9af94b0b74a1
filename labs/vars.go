package labs

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Variables: "vars:" in the front matter names values (a port, an image
// name) that lab.md's text, code blocks and checks, solution.sh and the
// cheats use as {{vars.NAME}}, so a lab says each once. {{user}} (the
// learner's registry account, in push checks) and Docker's own templates
// ({{.ID}}) are other things and left alone.

var varRE = regexp.MustCompile(`\{\{\s*vars\.([A-Za-z0-9_-]*)\s*\}\}`)

var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// maxVarLen bounds a value: a variable is a word or a short line.
const maxVarLen = 200

// vars reads the "vars" mapping: names to one-line texts.
func (p *parser) vars(v *yaml.Node, line, off int) map[string]string {
	const form = `front matter field "vars" must be a mapping of names to one-line values, like {port: 5001, image: hello-app}`
	if v.Kind != yaml.MappingNode {
		p.problem(line, form)
		return nil
	}
	out := map[string]string{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		l := off + k.Line
		switch {
		case !varNameRE.MatchString(k.Value):
			p.problem(l, fmt.Sprintf("variable name %q must be a letter or _ then letters, digits or _", k.Value))
			continue
		case val.Kind != yaml.ScalarNode || val.Tag == "!!null":
			p.problem(l, fmt.Sprintf("variable %q must be a one-line value", k.Value))
			continue
		case strings.ContainsAny(val.Value, "\r\n"):
			p.problem(l, fmt.Sprintf("variable %q must be a one-line value (it would move lab.md's lines)", k.Value))
			continue
		case len(val.Value) > maxVarLen:
			p.problem(l, fmt.Sprintf("variable %q is longer than %d characters", k.Value, maxVarLen))
			continue
		}
		if _, dup := out[k.Value]; dup {
			p.problem(l, fmt.Sprintf("variable %q is defined twice", k.Value))
			continue
		}
		out[k.Value] = val.Value
	}
	return out
}

// expandVars replaces {{vars.NAME}} in src with its value; an unknown
// name is reported to problem with its offset in src, and left as
// written.
func expandVars(src []byte, vars map[string]string, problem func(off int, msg string)) []byte {
	if !bytes.Contains(src, []byte("{{")) {
		return src
	}
	var out bytes.Buffer
	last := 0
	for _, m := range varRE.FindAllSubmatchIndex(src, -1) {
		name := string(src[m[2]:m[3]])
		v, ok := vars[name]
		if !ok {
			if problem != nil {
				problem(m[0], fmt.Sprintf("unknown variable %q: define it under \"vars:\" in the front matter", name))
			}
			continue
		}
		out.Write(src[last:m[0]])
		out.WriteString(v)
		last = m[1]
	}
	out.Write(src[last:])
	return out.Bytes()
}

// Expand is b with the lab's variables in place of {{vars.NAME}}: for
// solution.sh, the cheats and what else an author writes beside lab.md.
func (l *Lab) Expand(b []byte) []byte { return expandVars(b, l.Vars, nil) }
