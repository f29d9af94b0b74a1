package check

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func decodeYAML(t *testing.T, kind, y string) (Spec, []Problem) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("kind: "+kind+"\n"+y), &n); err != nil {
		t.Fatal(err)
	}
	return Decode(kind, n.Content[0])
}

func TestDecodeTyped(t *testing.T) {
	f := false
	for _, tc := range []struct {
		kind, yaml string
		want       Spec
	}{
		{"file", "path: ' a.txt '\nexists: false", &File{Path: "a.txt", Exists: &f}},
		{"dockerfile", "instructions: RUN pip", &Dockerfile{Instructions: List{"RUN pip"}}},
		{"dockerfile", "instructions: [FROM python, 'COPY . .']", &Dockerfile{Instructions: List{"FROM python", "COPY . ."}}},
		// Text is the text as written, even where YAML sees a number.
		{"push", "repository: app\ntag: 1.10\nexisting_min: 2", &Push{Repository: "app", Tag: "1.10", ExistingMin: 2}},
		{"script", "run: 'true'\ntimeout: 5", &Script{Run: "true", Timeout: Duration(5 * time.Second)}},
		{"script", "run: 'true'\ntimeout: 1m30s", &Script{Run: "true", Timeout: Duration(90 * time.Second)}},
		{"command", "method: POST\npath: ^/build$\nmatch: t=app", &Command{Method: "POST", Path: "^/build$", Match: "t=app"}},
		{"container", "publish: 5001:5000\nid: web\nsticky: false", &Container{Publish: "5001:5000"}},
	} {
		got, probs := decodeYAML(t, tc.kind, tc.yaml)
		if len(probs) > 0 || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %q = %#v, %v; want %#v", tc.kind, tc.yaml, got, probs, tc.want)
		}
	}
}

func TestDecodeProblems(t *testing.T) {
	for _, tc := range []struct {
		kind, yaml string
		line       int
		msg        string
	}{
		{"file", "contains: x", 0, `a file check needs "path"`},
		{"file", "path: a\nsize: 3", 3, `unknown field "size" for a file check (known: contains, exists, matches, path)`},
		{"file", "path: a\nmatches: '('", 3, `check field "matches" must be a regular expression: error parsing regexp`},
		{"http", "port: five", 2, `check field "port" must be a whole number, not "five"`},
		{"container", "publish: 5001-5002", 2, `check field "publish" must be HOST:CONTAINER ports such as 5001:5000, not "5001-5002"`},
		{"script", "run: x\ntimeout: soon", 3, `check field "timeout" must be a duration such as 10s, not "soon"`},
		{"clean", "images: [a, [b]]", 2, `check field "images" must be a list of text (each entry text)`},
		{"command", "match: x", 0, `a command check needs "command"`},
		{"command", "command: dance", 0, `unknown command "dance"`},
		{"image", "image: 2001-12-14", 2, `must be text, not "2001-12-14" (quote it)`},
	} {
		got, probs := decodeYAML(t, tc.kind, tc.yaml)
		if got != nil || len(probs) == 0 || probs[0].Line != tc.line || !strings.Contains(probs[0].Msg, tc.msg) {
			t.Errorf("%s %q = %#v, %+v; want a problem at line %d with %q", tc.kind, tc.yaml, got, probs, tc.line, tc.msg)
		}
	}
}

func TestOr(t *testing.T) {
	yes, no := true, false
	if !Or(nil, true) || Or(nil, false) || !Or(&yes, false) || Or(&no, true) {
		t.Error("Or does not give the field when set and the default when not")
	}
}

func TestDecodePatterns(t *testing.T) {
	got, probs := decodeYAML(t, "command", "command: build\nquery: {buildargs.VERSION: '^2$', t: app}")
	want := &Command{Command: "build", Query: Patterns{"buildargs.VERSION": "^2$", "t": "app"}}
	if len(probs) > 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("= %#v, %v; want %#v", got, probs, want)
	}
	for y, msg := range map[string]string{
		"command: build\nquery: t":           "must be a mapping of names to regular expressions (name: pattern, ...)",
		"command: build\nquery: {t: '('}":    "(t: error parsing regexp",
		"command: build\nquery: {t: [a]}":    "(t (non-empty text; quote it))",
		"command: build\nquery: {}":          "(name: pattern, ...)",
		"command: build\nquery: {? [a] : b}": "(each name text)",
	} {
		if _, probs := decodeYAML(t, "command", y); len(probs) == 0 || !strings.Contains(probs[0].Msg, msg) {
			t.Errorf("%q: problems %v, want one with %q", y, probs, msg)
		}
	}
}
