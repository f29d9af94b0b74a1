package labs

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/labd/labd/labs/check"
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
		// Render the checks back to YAML and parse them again.
		var docs []map[string]any
		for _, c := range checks {
			b, err := yaml.Marshal(c.Spec)
			if err != nil {
				t.Fatalf("render %#v: %v", c.Spec, err)
			}
			m := map[string]any{}
			if err := yaml.Unmarshal(b, &m); err != nil {
				t.Fatalf("read back %s: %v", b, err)
			}
			m["kind"], m["id"], m["title"], m["sticky"] = c.Kind, c.ID, c.Title, c.Sticky
			if c.ID == "" {
				delete(m, "id")
			}
			if c.Hint != "" {
				m["hint"] = c.Hint
			}
			docs = append(docs, m)
		}
		out, err := yaml.Marshal(docs)
		if err != nil {
			t.Fatalf("render %v: %v", docs, err)
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
			if a.Kind != b.Kind || a.ID != b.ID || a.Title != b.Title || a.Hint != b.Hint || a.Sticky != b.Sticky || !reflect.DeepEqual(a.Spec, b.Spec) {
				t.Errorf("round trip changed a check:\n%#v\n%#v\nYAML:\n%s", a, b, out)
			}
		}
	})
}

var checkBlockRE = regexp.MustCompile("(?ms)^```check\n(.*?)^```")

// checkTypes asserts that an accepted check has a Spec of its kind whose
// required fields are set and whose patterns compile.
func checkTypes(t *testing.T, c Check) {
	t.Helper()
	if !slices.Contains(Kinds, c.Kind) || c.Title == "" || (c.ID != "" && !ValidID(c.ID)) {
		t.Errorf("accepted check %+v", c)
	}
	if c.Spec == nil || c.Spec.Kind() != c.Kind {
		t.Fatalf("check of kind %s has spec %#v", c.Kind, c.Spec)
	}
	v := reflect.ValueOf(c.Spec).Elem()
	for i, f := range check.Fields(c.Kind) {
		fv := v.Field(i)
		if f.Required && fv.IsZero() {
			t.Errorf("required field %q of a %s check accepted empty", f.Name, c.Kind)
		}
		if f.Type == check.TypeRegexp {
			if _, err := regexp.Compile(fv.String()); err != nil {
				t.Errorf("field %q of a %s check accepted %q: %v", f.Name, c.Kind, fv.String(), err)
			}
		}
		if f.Type == check.TypeText && !fv.IsZero() && strings.TrimSpace(fv.String()) == "" {
			t.Errorf("text field %q of a %s check is blank", f.Name, c.Kind)
		}
	}
}
