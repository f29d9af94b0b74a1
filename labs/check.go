package labs

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/labd/labd/labs/check"
	"go.yaml.in/yaml/v3"
)

// checks parses the YAML of a ```check block whose fence is on line fence.
// It validates what every check has (kind, id, title, hint, sticky) and
// has package check validate and decode the kind's own fields.
func (p *parser) checks(content []byte, fence int) []Check {
	first := fence + 1 // the YAML starts on the line after the fence
	var root yaml.Node
	if err := yaml.Unmarshal(content, &root); err != nil {
		line, msg := yamlProblem(err, first)
		p.problem(line, "check block: "+msg)
		return nil
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		p.problem(fence, "empty check block")
		return nil
	}
	top := root.Content[0]
	var items []*yaml.Node
	switch top.Kind {
	case yaml.MappingNode:
		items = []*yaml.Node{top}
	case yaml.SequenceNode:
		items = top.Content
		if len(items) == 0 {
			p.problem(fence, "empty check block")
		}
	default:
		p.problem(first+top.Line-1, "check block must be a YAML mapping (kind: ...) or a list of them")
		return nil
	}
	var out []Check
	for _, it := range items {
		if c, ok := p.check(it, first); ok {
			out = append(out, c)
		}
	}
	return out
}

func (p *parser) check(n *yaml.Node, first int) (Check, bool) {
	c := Check{Line: first + n.Line - 1, Sticky: true, Points: 1}
	if n.Kind != yaml.MappingNode {
		p.problem(c.Line, "each check must be a YAML mapping (kind: ...)")
		return c, false
	}
	ok := true
	strField := func(k, v *yaml.Node) (string, bool) {
		if v.Kind != yaml.ScalarNode || v.Tag != "!!str" || strings.TrimSpace(v.Value) == "" {
			p.problem(first+k.Line-1, fmt.Sprintf("check field %q must be non-empty text", k.Value))
			ok = false
			return "", false
		}
		return strings.TrimSpace(v.Value), true
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.problem(first+k.Line-1, "check keys must be plain words")
			ok = false
			continue
		}
		if seen[k.Value] {
			p.problem(first+k.Line-1, fmt.Sprintf("duplicate check field %q", k.Value))
			ok = false
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "kind":
			if s, good := strField(k, v); good {
				if !slices.Contains(Kinds, s) {
					p.problem(first+k.Line-1, fmt.Sprintf("unknown check kind %q (known: %s)", s, strings.Join(Kinds, ", ")))
					ok = false
				}
				c.Kind = s
			}
		case "id":
			if s, good := strField(k, v); good {
				if !ValidID(s) {
					p.problem(first+k.Line-1, fmt.Sprintf("check id %q must use only a-z, 0-9 and -", s))
					ok = false
				}
				c.ID = s
			}
		case "title":
			c.Title, _ = strField(k, v)
		case "hint":
			c.Hint, _ = strField(k, v)
		case "points":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&c.Points) != nil || c.Points < 0 || c.Points > maxPoints {
				p.problem(first+k.Line-1, fmt.Sprintf(`check field "points" must be a whole number from 0 to %d, not %q`, maxPoints, v.Value))
				ok = false
			}
		case "sticky":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
				p.problem(first+k.Line-1, `check field "sticky" must be true or false`)
				ok = false
			} else {
				ok = v.Decode(&c.Sticky) == nil && ok
			}
		}
	}
	if !seen["kind"] {
		p.problem(c.Line, "check is missing \"kind\" (one of "+strings.Join(Kinds, ", ")+")")
		ok = false
	}
	if check.New(c.Kind) == nil {
		return c, false // reported above
	}
	// The kind's fields are checked even when a common one is wrong, so an
	// author sees every problem of the check at once.
	spec, probs := check.Decode(c.Kind, n)
	for _, pr := range probs {
		line := c.Line
		if pr.Line > 0 {
			line = first + pr.Line - 1
		}
		p.problem(line, pr.Msg)
	}
	if !ok || spec == nil {
		return c, false
	}
	c.Spec = spec
	if c.Title == "" {
		c.Title = defaultTitle(c.Kind, c.Spec)
	}
	return c, true
}

// maxPoints bounds a check's points: a score is a sum of a lab's checks.
const maxPoints = 1000

// defaultTitle describes a check from its kind and main field, for authors
// who give no title. It states the goal, not a result: nothing has run yet.
func defaultTitle(kind string, spec check.Spec) string {
	var s string
	switch c := spec.(type) {
	case *check.File:
		s = "file " + c.Path + " exists"
		if c.Contains != "" {
			s += " and contains " + fmt.Sprintf("%q", c.Contains)
		}
	case *check.Dockerfile:
		s = cmp.Or(c.Path, "Dockerfile") + " is a valid Dockerfile"
	case *check.Image:
		s = "image " + c.Image + " exists"
	case *check.Build:
		s = "image " + c.Image + " is built"
	case *check.Container:
		if v := cmp.Or(c.Name, c.Image); v != "" {
			s = "container " + v + " is running"
		}
	case *check.HTTP:
		s = "port " + strconv.Itoa(c.Port) + " responds"
	case *check.Push:
		if c.Image != "" {
			s = "image " + c.Image + " is pushed"
		}
	case *check.Command:
		if c.Command != "" {
			s = "you ran docker " + c.Command
		} else {
			s = "you called the engine at " + string(c.Path)
		}
	case *check.Clean:
		s = "leftovers are cleaned up"
	case *check.Volume:
		s = "volume " + c.Name + " exists"
	case *check.Question:
		s = c.Prompt
		if r := []rune(s); len(r) > 80 {
			s = string(r[:79]) + "…"
		}
	case *check.Script:
		s = "check script passes"
	}
	if s == "" {
		s = kind + " check"
	}
	return s
}

// CheckOf builds one check from its fields as its YAML mapping holds them
// ({"kind": "file", "path": "a.txt"}), with the checks and defaults of a
// check block: for tests and tools that make labs in code.
func CheckOf(fields map[string]any) (Check, error) {
	b, err := yaml.Marshal(fields)
	if err != nil {
		return Check{}, fmt.Errorf("check %v: %w", fields, err)
	}
	p := &parser{path: "check"}
	cs := p.checks(b, 0)
	if len(p.problems) > 0 {
		return Check{}, fmt.Errorf("check %v: %s", fields, p.problems[0].Message)
	}
	if len(cs) != 1 {
		return Check{}, fmt.Errorf("check %v: not one check", fields)
	}
	return cs[0], nil
}
