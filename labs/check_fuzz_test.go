package labs

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// FuzzChecks feeds arbitrary YAML to the parser of ```check blocks, the
// part of lab.md that becomes what the grader runs. A block it accepts
// must hold checks whose fields have the types the grader reads, and must
// survive a render and parse again unchanged.
func FuzzChecks(f *testing.F) {
	// Every check block of the bundled labs and of the test labs.
	labsMD, _ := filepath.Glob("testdata/labs/*/lab.md")
	bundled, _ := filepath.Glob("../content/*/lab.md")
	for _, path := range append(labsMD, bundled...) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range checkBlockRE.FindAllSubmatch(b, -1) {
			f.Add(m[1])
		}
	}
	for _, s := range []string{
		"kind: file\npath: a\n",
		"- kind: script\n  run: x\n  timeout: {a: 1}\n",
		"- kind: build\n  image: app\n  cached_min: 18446744073709551615\n",
		"- kind: http\n  port: 0x1F\n- kind: http\n  port: 1e3\n",
		"kind: file\npath: 2001-12-14\n",
		"kind: file\npath: !!binary aGk=\n",
		"kind: &k file\npath: *k\n<<: {id: x}\n",
		"- kind: command\n  path: '['\n",
		"- kind: container\n  publish: 99999:1/tcp\n",
		"[{kind: clean, images: [a, [b]]}]",
	} {
		f.Add([]byte(s))
	}
	const fence = 10 // the block's fence line in an imagined lab.md
	f.Fuzz(func(t *testing.T, data []byte) {
		data = normalizeNewlines(data) // as parse hands blocks over
		p := &parser{path: "lab.md"}
		checks := p.checks(data, fence)
		last := fence + bytes.Count(data, []byte("\n")) + 2
		for _, pr := range p.problems {
			if pr.Line < fence || pr.Line > last {
				t.Errorf("problem outside the block (lines %d-%d): %v", fence, last, pr)
			}
		}
		if len(p.problems) > 0 {
			return
		}
		for _, c := range checks {
			checkTypes(t, c)
		}
		// Render the specs back to YAML and parse them again.
		specs := make([]map[string]any, len(checks))
		for i, c := range checks {
			specs[i] = c.Spec
		}
		out, err := yaml.Marshal(specs)
		if err != nil {
			t.Fatalf("render %v: %v", specs, err)
		}
		p2 := &parser{path: "lab.md"}
		again := p2.checks(out, fence)
		if len(p2.problems) > 0 {
			t.Fatalf("accepted checks render to YAML that fails:\n%s\n%v", out, p2.problems)
		}
		if len(again) != len(checks) {
			t.Fatalf("%d checks became %d after a round trip", len(checks), len(again))
		}
		for i := range checks {
			a, b := checks[i], again[i]
			if a.Kind != b.Kind || a.ID != b.ID || a.Title != b.Title || a.Hint != b.Hint || !sameSpec(a.Spec, b.Spec) {
				t.Errorf("round trip changed a check:\n%#v\n%#v\nYAML:\n%s", a, b, out)
			}
		}
	})
}

var checkBlockRE = regexp.MustCompile("(?ms)^```check\n(.*?)^```")

// checkTypes asserts that each field lint accepted holds a Go value the
// grader's accessors (grader/spec.go) read as the author meant.
func checkTypes(t *testing.T, c Check) {
	t.Helper()
	if !slices.Contains(Kinds, c.Kind) || c.Title == "" || (c.ID != "" && !ValidID(c.ID)) {
		t.Errorf("accepted check %+v", c)
	}
	for k, v := range c.Spec {
		fs, ok := kindFields[c.Kind][k]
		if !ok {
			fs, ok = commonFields[k]
		}
		if !ok {
			t.Errorf("accepted unknown field %q in %+v", k, c)
			continue
		}
		bad := false
		switch fs.typ {
		case ftText:
			bad = !isScalarValue(v) || strings.TrimSpace(fmt.Sprint(v)) == ""
		case ftBool:
			_, ok := v.(bool)
			bad = !ok
		case ftInt:
			_, ok := v.(int)
			bad = !ok
		case ftList:
			switch v := v.(type) {
			case []any:
				for _, x := range v {
					bad = bad || !isScalarValue(x)
				}
			default:
				bad = !isScalarValue(v)
			}
		case ftDuration:
			switch v := v.(type) {
			case int:
			case string:
				_, err := time.ParseDuration(strings.TrimSpace(v))
				bad = err != nil
			default:
				bad = true
			}
		case ftRegexp, ftPublish:
			bad = !isScalarValue(v) || fmt.Sprint(v) == ""
		}
		if bad {
			t.Errorf("field %q of a %s check is %s, accepted as %T %#v", k, c.Kind, fs.typ, v, v)
		}
	}
}

// isScalarValue reports whether v is a value grader's spec.str turns into
// the text the author wrote.
func isScalarValue(v any) bool {
	switch v := v.(type) {
	case string, int, int64, bool:
		return true
	case float64:
		return !math.IsNaN(v) && !math.IsInf(v, 0)
	}
	return false
}

func sameSpec(a, b map[string]any) bool {
	return reflect.DeepEqual(a, b) || fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b)
}
