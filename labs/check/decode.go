package check

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"go.yaml.in/yaml/v3"
)

// Field is one YAML field of a check kind.
type Field struct {
	Name     string
	Type     string // what the guide and lint messages call its type
	Required bool
}

// Common are the fields every check has; labs reads them (kind, id,
// title, hint, sticky), Decode skips them.
var Common = []string{"kind", "id", "title", "hint", "sticky", "points"}

// Type names, as lint messages say them ("must be a whole number").
const (
	TypeText     = "text"
	TypeBool     = "true or false"
	TypeInt      = "a whole number"
	TypeList     = "a list of text"
	TypeDuration = "a duration such as 10s"
	TypeRegexp   = "a regular expression"
	TypePublish  = "HOST:CONTAINER ports such as 5001:5000"
	TypePatterns = "a mapping of names to regular expressions"
	TypeSize     = "a size such as 200MB"
)

var typeNames = map[reflect.Type]string{
	reflect.TypeFor[string]():   TypeText,
	reflect.TypeFor[*bool]():    TypeBool,
	reflect.TypeFor[int]():      TypeInt,
	reflect.TypeFor[List]():     TypeList,
	reflect.TypeFor[Duration](): TypeDuration,
	reflect.TypeFor[Regexp]():   TypeRegexp,
	reflect.TypeFor[Publish]():  TypePublish,
	reflect.TypeFor[Patterns](): TypePatterns,
	reflect.TypeFor[Size]():     TypeSize,
}

// Fields lists kind's fields in their declaration order; nil for an
// unknown kind.
func Fields(kind string) []Field {
	s := New(kind)
	if s == nil {
		return nil
	}
	t := reflect.TypeOf(s).Elem()
	out := make([]Field, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		typ, ok := typeNames[f.Type]
		if !ok {
			panic(fmt.Sprintf("check: field %s.%s has no YAML type name", t.Name(), f.Name))
		}
		out = append(out, Field{Name: name, Type: typ, Required: f.Tag.Get("check") == "required"})
	}
	return out
}

// Problem is what is wrong with a check's YAML. Line is the line within
// the YAML; 0 means the check as a whole (a missing field).
type Problem struct {
	Line int
	Msg  string
}

// Decode checks the kind-specific fields of the check mapping n (kind is
// known) and decodes them: unknown, mistyped and missing fields are
// problems, and a check with problems has no Spec.
func Decode(kind string, n *yaml.Node) (Spec, []Problem) {
	fields := Fields(kind)
	if fields == nil || n.Kind != yaml.MappingNode {
		return nil, []Problem{{Msg: fmt.Sprintf("unknown check kind %q", kind)}}
	}
	byName := map[string]Field{}
	names := make([]string, 0, len(fields))
	for _, f := range fields {
		byName[f.Name] = f
		names = append(names, f.Name)
	}
	slices.Sort(names)
	var probs []Problem
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		seen[k.Value] = true
		if slices.Contains(Common, k.Value) {
			continue
		}
		f, known := byName[k.Value]
		if !known {
			probs = append(probs, Problem{k.Line, fmt.Sprintf("unknown field %q for a %s check (known: %s)", k.Value, kind, strings.Join(names, ", "))})
			continue
		}
		if msg := typeProblem(f.Type, v); msg != "" {
			probs = append(probs, Problem{k.Line, fmt.Sprintf("check field %q must be %s%s", k.Value, f.Type, msg)})
		}
	}
	var missing []string
	for _, f := range fields {
		if f.Required && !seen[f.Name] {
			missing = append(missing, f.Name)
		}
	}
	slices.Sort(missing)
	for _, f := range missing {
		probs = append(probs, Problem{Msg: fmt.Sprintf("a %s check needs %q", kind, f)})
	}
	if kind == "question" {
		probs = append(probs, questionProblems(n)...)
	}
	if kind == "command" {
		cmd, hasCmd := scalar(n, "command")
		_, hasPath := scalar(n, "path")
		switch {
		case !hasCmd && !hasPath:
			probs = append(probs, Problem{Msg: `a command check needs "command" (one of ` + strings.Join(CommandNames, ", ") + `) or "method" and "path"`})
		case hasCmd && !slices.Contains(CommandNames, cmd):
			probs = append(probs, Problem{Msg: fmt.Sprintf("unknown command %q (known: %s)", cmd, strings.Join(CommandNames, ", "))})
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	s := New(kind)
	if err := n.Decode(s); err != nil {
		return nil, []Problem{{n.Line, err.Error()}}
	}
	trim(s)
	return s, nil
}

// trim removes the spaces around text fields, as authors' YAML often has
// them and no check means them.
func trim(s Spec) {
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String {
			f.SetString(strings.TrimSpace(f.String()))
		}
	}
}

func scalar(n *yaml.Node, key string) (string, bool) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value, true
		}
	}
	return "", false
}

var publishRE = regexp.MustCompile(`^[0-9]{1,5}(:[0-9]{1,5})?(/tcp)?$`)

// typeProblem returns "" when v fits typ, else a short explanation.
func typeProblem(typ string, v *yaml.Node) string {
	isScalar := v.Kind == yaml.ScalarNode
	switch typ {
	case TypeText:
		if !isScalar || v.Tag == "!!null" || strings.TrimSpace(v.Value) == "" {
			return " (non-empty)"
		}
		if !isText(v) {
			return ", not " + strconv.Quote(v.Value) + " (quote it)"
		}
	case TypeBool:
		if !isScalar || v.Tag != "!!bool" {
			return ", not " + strconv.Quote(v.Value)
		}
	case TypeInt:
		if !isScalar || v.Tag != "!!int" || !isInt(v) {
			return ", not " + strconv.Quote(v.Value)
		}
	case TypeList:
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
	case TypeDuration:
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
	case TypeRegexp:
		if !isScalar || v.Value == "" || !isText(v) {
			return " (non-empty text; quote it)"
		}
		if _, err := regexp.Compile(v.Value); err != nil {
			return ": " + err.Error()
		}
	case TypeSize:
		if !isScalar || v.Tag != "!!int" && v.Tag != "!!str" {
			return ", not " + strconv.Quote(v.Value)
		}
		if _, err := parseSize(v.Value); err != nil {
			return ", not " + strconv.Quote(v.Value)
		}
	case TypePatterns:
		if v.Kind != yaml.MappingNode || len(v.Content) == 0 {
			return " (name: pattern, ...)"
		}
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, p := v.Content[i], v.Content[i+1]
			if k.Kind != yaml.ScalarNode || strings.TrimSpace(k.Value) == "" {
				return " (each name text)"
			}
			if msg := typeProblem(TypeRegexp, p); msg != "" {
				return " (" + k.Value + msg + ")"
			}
		}
	case TypePublish:
		if !isScalar || !publishRE.MatchString(v.Value) || !isText(v) {
			return ", not " + strconv.Quote(v.Value)
		}
	}
	return ""
}

// isText reports whether the scalar v is text as written: a string, a
// bool or a number; not a date, which YAML makes a time, nor a NaN or an
// integer beyond int64, whose written form an author would not expect to
// be compared.
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

// isInt reports whether the !!int scalar v fits an int.
func isInt(v *yaml.Node) bool {
	var n int
	return v.Decode(&n) == nil
}

// UnmarshalYAML reads one text or a list of texts, as written.
func (l *List) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = List{n.Value}
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: want a list of text", n.Line)
	}
	out := make(List, 0, len(n.Content))
	for _, it := range n.Content {
		if it.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: want text", it.Line)
		}
		out = append(out, it.Value)
	}
	*l = out
	return nil
}

// UnmarshalYAML reads whole seconds or a Go duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!int" {
		var s int
		if err := n.Decode(&s); err != nil {
			return err
		}
		*d = Duration(time.Duration(s) * time.Second)
		return nil
	}
	t, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(t)
	return nil
}

// parseSize reads a Size: decimal units, as docker prints image and
// context sizes.
func parseSize(s string) (int64, error) {
	n, err := units.FromHumanSize(strings.TrimSpace(s))
	if err == nil && n <= 0 {
		err = fmt.Errorf("size %q is not above 0", s)
	}
	return n, err
}

// UnmarshalYAML reads a size in bytes or with a unit.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*z = Size(v)
	return nil
}

// MarshalYAML writes it in bytes, which UnmarshalYAML reads back.
func (z Size) MarshalYAML() (any, error) { return int64(z), nil }

// questionProblems: a question has choices and the correct ones among
// them, or a free answer's pattern and an example it takes; not both.
func questionProblems(n *yaml.Node) []Problem {
	var q struct {
		Choices, Correct []string
		Answer, Example  string
	}
	if n.Decode(&q) != nil {
		return nil // the fields' types are reported already
	}
	switch {
	case len(q.Choices) > 0 && q.Answer != "":
		return []Problem{{Msg: `a question has "choices" or a free "answer", not both`}}
	case len(q.Choices) == 1:
		return []Problem{{Msg: `a question with "choices" needs two or more`}}
	case len(q.Choices) > 0:
		seen := map[string]bool{}
		for _, c := range q.Choices {
			if seen[c] {
				return []Problem{{Msg: fmt.Sprintf("choice %q is listed twice", c)}}
			}
			seen[c] = true
		}
		if len(q.Correct) == 0 {
			return []Problem{{Msg: `a question with "choices" needs "correct": the choice or choices to pick`}}
		}
		for _, c := range q.Correct {
			if !seen[c] {
				return []Problem{{Msg: fmt.Sprintf("correct answer %q is not one of the choices", c)}}
			}
		}
	case q.Answer != "":
		re, err := regexp.Compile(q.Answer)
		switch {
		case err != nil:
			return nil // reported as the field's type
		case q.Example == "":
			return []Problem{{Msg: `a question with a free "answer" needs an "example" answer it takes (labd test answers with it)`}}
		case !re.MatchString(strings.TrimSpace(q.Example)):
			return []Problem{{Msg: fmt.Sprintf("example %q does not match the answer pattern %s", q.Example, q.Answer)}}
		}
	default:
		return []Problem{{Msg: `a question needs "choices" and "correct", or a free "answer" pattern`}}
	}
	if len(q.Correct) > 0 && q.Answer != "" || q.Example != "" && len(q.Choices) > 0 {
		return []Problem{{Msg: `"correct" goes with "choices", "example" with "answer"`}}
	}
	return nil
}
