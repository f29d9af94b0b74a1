package labs

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Field types of check fields.
const (
	ftText     = "text"
	ftBool     = "true or false"
	ftInt      = "a whole number"
	ftList     = "a list of text"
	ftDuration = "a duration such as 10s"
	ftRegexp   = "a regular expression"
	ftPublish  = "HOST:CONTAINER ports such as 5001:5000"
)

type fieldSpec struct {
	typ      string
	required bool
}

// commonFields are allowed in every check (kind, id, title, hint are
// validated in check.go).
var commonFields = map[string]fieldSpec{
	"kind": {typ: ftText}, "id": {typ: ftText}, "title": {typ: ftText}, "hint": {typ: ftText},
	"sticky": {typ: ftBool},
}

// kindFields are the grader's fields per kind (docs/authoring.md).
var kindFields = map[string]map[string]fieldSpec{
	"file":       {"path": {ftText, true}, "exists": {typ: ftBool}, "contains": {typ: ftText}, "matches": {typ: ftRegexp}},
	"dockerfile": {"path": {typ: ftText}, "from": {typ: ftText}, "instructions": {typ: ftList}, "last": {typ: ftText}},
	"image":      {"image": {ftText, true}, "built": {typ: ftBool}, "dockerfile": {typ: ftText}, "history": {typ: ftList}},
	"build":      {"image": {ftText, true}, "cached_min": {typ: ftInt}, "cache_reused": {typ: ftBool}, "changed": {typ: ftBool}},
	"container":  {"image": {typ: ftText}, "name": {typ: ftText}, "publish": {typ: ftPublish}, "running": {typ: ftBool}},
	"http":       {"port": {ftInt, true}, "path": {typ: ftText}, "status": {typ: ftInt}, "contains": {typ: ftText}, "image": {typ: ftText}},
	"push":       {"repository": {ftText, true}, "tag": {typ: ftText}, "image": {typ: ftText}, "existing_min": {typ: ftInt}},
	"command":    {"command": {typ: ftText}, "method": {typ: ftText}, "path": {typ: ftRegexp}, "match": {typ: ftRegexp}},
	"clean":      {"containers": {typ: ftBool}, "images": {typ: ftList}, "pruned": {typ: ftBool}},
	"script":     {"run": {ftText, true}, "timeout": {typ: ftDuration}},
}

// CommandNames are the engine commands a `command` check may name.
var CommandNames = []string{"build", "diff", "events", "exec", "history", "images", "inspect", "login", "logs", "prune", "ps", "pull", "push", "rm", "rmi", "run", "start", "stop", "tag", "top"}

var publishRE = regexp.MustCompile(`^[0-9]{1,5}(:[0-9]{1,5})?(/tcp)?$`)

// checkFields reports unknown, missing and mistyped fields of a check of
// kind, each at its line.
func (p *parser) checkFields(kind string, n *yaml.Node, first, line int) bool {
	fields, ok := kindFields[kind]
	if !ok {
		return true // unknown kind: reported already
	}
	ok = true
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		at := first + k.Line - 1
		seen[k.Value] = true
		if _, common := commonFields[k.Value]; common {
			if k.Value == "sticky" && !(v.Kind == yaml.ScalarNode && v.Tag == "!!bool") {
				p.problem(at, `check field "sticky" must be true or false`)
				ok = false
			}
			continue
		}
		fs, known := fields[k.Value]
		if !known {
			names := make([]string, 0, len(fields))
			for f := range fields {
				names = append(names, f)
			}
			slices.Sort(names)
			p.problem(at, fmt.Sprintf("unknown field %q for a %s check (known: %s)", k.Value, kind, strings.Join(names, ", ")))
			ok = false
			continue
		}
		if msg := fieldTypeProblem(fs.typ, v); msg != "" {
			p.problem(at, fmt.Sprintf("check field %q must be %s%s", k.Value, fs.typ, msg))
			ok = false
		}
	}
	var missing []string
	for f, fs := range fields {
		if fs.required && !seen[f] {
			missing = append(missing, f)
		}
	}
	slices.Sort(missing)
	for _, f := range missing {
		p.problem(line, fmt.Sprintf("a %s check needs %q", kind, f))
		ok = false
	}
	if kind == "command" {
		cmd, hasCmd := scalar(n, "command")
		_, hasPath := scalar(n, "path")
		switch {
		case !hasCmd && !hasPath:
			p.problem(line, `a command check needs "command" (one of `+strings.Join(CommandNames, ", ")+`) or "method" and "path"`)
			ok = false
		case hasCmd && !slices.Contains(CommandNames, cmd):
			p.problem(line, fmt.Sprintf("unknown command %q (known: %s)", cmd, strings.Join(CommandNames, ", ")))
			ok = false
		}
	}
	return ok
}

func scalar(n *yaml.Node, key string) (string, bool) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value, true
		}
	}
	return "", false
}

// fieldTypeProblem returns "" when v fits typ, else a short explanation.
func fieldTypeProblem(typ string, v *yaml.Node) string {
	isScalar := v.Kind == yaml.ScalarNode
	switch typ {
	case ftText:
		if !isScalar || v.Tag == "!!null" || strings.TrimSpace(v.Value) == "" {
			return " (non-empty)"
		}
		if !isText(v) {
			return ", not " + strconv.Quote(v.Value) + " (quote it)"
		}
	case ftBool:
		if !isScalar || v.Tag != "!!bool" {
			return ", not " + strconv.Quote(v.Value)
		}
	case ftInt:
		if !isScalar || v.Tag != "!!int" || !isInt(v) {
			return ", not " + strconv.Quote(v.Value)
		}
	case ftList:
		if v.Kind == yaml.SequenceNode {
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode || !isText(it) {
					return " (each entry text)"
				}
			}
			return ""
		}
		if !isScalar || v.Value == "" || !isText(v) {
			return " (or one text)"
		}
	case ftDuration:
		// The grader reads whole seconds or a Go duration; anything else
		// would silently become its default.
		if !isScalar {
			return ", not a " + kindName(v)
		}
		if v.Tag == "!!int" {
			if !isInt(v) {
				return ", not " + strconv.Quote(v.Value)
			}
			return ""
		}
		if _, err := time.ParseDuration(v.Value); err != nil || v.Tag != "!!str" {
			return ", not " + strconv.Quote(v.Value)
		}
	case ftRegexp:
		if !isScalar || v.Value == "" || !isText(v) {
			return " (non-empty text; quote it)"
		}
		if _, err := regexp.Compile(v.Value); err != nil {
			return ": " + err.Error()
		}
	case ftPublish:
		if !isScalar || !publishRE.MatchString(v.Value) || !isText(v) {
			return ", not " + strconv.Quote(v.Value)
		}
	}
	return ""
}

// isText reports whether the scalar v decodes to a value the grader reads
// as the text written (grader/spec.go): a string, a bool, a number that
// fits; not a date, which YAML makes a time, nor a NaN or an integer
// beyond int64.
func isText(v *yaml.Node) bool {
	var x any
	if v.Decode(&x) != nil {
		return false
	}
	switch x := x.(type) {
	case string, int, bool:
		return true
	case float64:
		return !math.IsNaN(x) && !math.IsInf(x, 0)
	}
	return false
}

func kindName(v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// isInt reports whether the !!int scalar v fits an int (YAML gives
// larger ones as uint64, which the grader would not read).
func isInt(v *yaml.Node) bool {
	var n int
	return v.Decode(&n) == nil
}
