package labs

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checks parses the YAML of a ```check block whose fence is on line fence.
// It validates what labs owns (kind, id, title, hint); the kind-specific
// fields stay in Spec for the grader to validate.
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
	c := Check{Line: first + n.Line - 1}
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
		}
	}
	if !seen["kind"] {
		p.problem(c.Line, "check is missing \"kind\" (one of "+strings.Join(Kinds, ", ")+")")
		ok = false
	}
	if ok && !p.checkFields(c.Kind, n, first, c.Line) {
		ok = false
	}
	if err := n.Decode(&c.Spec); err != nil {
		line, msg := yamlProblem(err, first)
		p.problem(line, "check: "+msg)
		ok = false
	}
	if !ok {
		return c, false
	}
	if c.Title == "" {
		c.Title = defaultTitle(c.Kind, c.Spec)
	}
	return c, true
}

// defaultTitle describes a check from its kind and main field, for authors
// who give no title. It states the goal, not a result: nothing has run yet.
func defaultTitle(kind string, spec map[string]any) string {
	str := func(keys ...string) string {
		for _, k := range keys {
			if s, ok := spec[k].(string); ok && s != "" {
				return s
			}
		}
		return ""
	}
	var s string
	switch kind {
	case "file":
		if path := str("path"); path != "" {
			s = "file " + path + " exists"
			if want := str("contains"); want != "" {
				s += " and contains " + fmt.Sprintf("%q", want)
			}
		}
	case "dockerfile":
		s = cmp.Or(str("path"), "Dockerfile") + " is a valid Dockerfile"
	case "image":
		if v := str("image", "name"); v != "" {
			s = "image " + v + " exists"
		}
	case "build":
		if v := str("image", "tag", "name"); v != "" {
			s = "image " + v + " is built"
		}
	case "container":
		if v := str("name", "image"); v != "" {
			s = "container " + v + " is running"
		}
	case "http":
		if v := str("url"); v != "" {
			s = v + " responds"
		}
	case "push":
		if v := str("image", "name"); v != "" {
			s = "image " + v + " is pushed"
		}
	case "command":
		if v := str("command"); v != "" {
			s = "you ran docker " + v
		} else if v := str("path"); v != "" {
			s = "you called the engine at " + v
		}
	case "clean":
		s = "leftovers are cleaned up"
	case "script":
		s = "check script passes"
		if v := str("name"); v != "" {
			s = "script " + v + " passes"
		}
	}
	if s == "" {
		s = kind + " check"
	}
	return s
}
