package check

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The guide's tables of check fields (docs/authoring.md, "Checks") say
// what this package decodes: every kind, each of its fields, which are
// required (in bold), the common fields and the command names.
func TestGuideMatchesKinds(t *testing.T) {
	b, err := os.ReadFile("../../docs/authoring.md")
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	_, kindsTable, ok := strings.Cut(guide, "### The check kinds")
	if !ok {
		t.Fatal(`docs/authoring.md has no "### The check kinds" section`)
	}
	kindsTable, _, _ = strings.Cut(kindsTable, "\n### ")
	row := regexp.MustCompile("(?m)^\\| `([a-z]+)` \\| ([^|]*) \\| ([^\\n]*)\\|$")
	parens := regexp.MustCompile(`\([^)]*\)`)
	field := regexp.MustCompile("(\\*\\*)?`([a-z_]+)`")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(kindsTable, -1) {
		kind := m[1]
		if New(kind) == nil {
			if len(documented) > 0 {
				break // past the table
			}
			continue
		}
		documented[kind] = true
		var names, required []string
		for _, f := range field.FindAllStringSubmatch(parens.ReplaceAllString(m[2], ""), -1) {
			names = append(names, f[2])
			if f[1] != "" {
				required = append(required, f[2])
			}
		}
		var wantNames, wantRequired []string
		for _, f := range Fields(kind) {
			wantNames = append(wantNames, f.Name)
			if f.Required {
				wantRequired = append(wantRequired, f.Name)
			}
		}
		slices.Sort(names)
		slices.Sort(wantNames)
		if !slices.Equal(names, wantNames) {
			t.Errorf("the guide gives a %s check the fields %q; package check has %q", kind, names, wantNames)
		}
		if !slices.Equal(required, wantRequired) {
			t.Errorf("the guide makes %q of a %s check required (bold); package check requires %q", required, kind, wantRequired)
		}
		if kind == "command" {
			_, list, _ := strings.Cut(m[3], "Names: ")
			list, _, _ = strings.Cut(list, ".")
			if got := strings.Split(list, ", "); !slices.Equal(got, CommandNames) {
				t.Errorf("the guide names the commands %q; package check has %q", got, CommandNames)
			}
		}
	}
	for _, k := range Kinds {
		if !documented[k] {
			t.Errorf("the guide's table of check kinds has no row for %s", k)
		}
	}
	for _, f := range Common {
		if !strings.Contains(guide, "| `"+f+"` |") {
			t.Errorf("the guide's table of common check fields has no row for %s", f)
		}
	}
}

// A blank line inside a Markdown table ends it: the rows after it render
// as a paragraph of pipes.
func TestGuideTablesWhole(t *testing.T) {
	b, err := os.ReadFile("../../docs/authoring.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i := 1; i+1 < len(lines); i++ {
		after := ""
		if i+2 < len(lines) {
			after = lines[i+2]
		}
		// A new table (a header row, then |---) may follow a blank line.
		if strings.TrimSpace(lines[i]) == "" && strings.HasPrefix(lines[i-1], "|") && strings.HasPrefix(lines[i+1], "|") && !strings.HasPrefix(after, "|---") {
			t.Errorf("docs/authoring.md:%d: a blank line inside a table", i+1)
		}
	}
}
