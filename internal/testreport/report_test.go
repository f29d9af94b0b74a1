package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// stream writes events as go test -json does.
func stream(t *testing.T, evs ...event) string {
	t.Helper()
	var b strings.Builder
	for _, e := range evs {
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func TestReport(t *testing.T) {
	allow, err := parseAllowList("# comment\nexample.com/a TestAllowed needs a GPU this project never has\n")
	if err != nil {
		t.Fatal(err)
	}
	const p = "example.com/a"
	for _, tc := range []struct {
		name     string
		events   []event
		problems []string // substrings, one per problem, in order
		printed  []string // substrings of the printed report
	}{
		{
			name: "green",
			events: []event{
				{Action: "run", Package: p, Test: "TestA"},
				{Action: "output", Package: p, Test: "TestA", Output: "=== RUN   TestA\n"},
				{Action: "pass", Package: p, Test: "TestA"},
				{Action: "output", Package: p, Output: "ok  \texample.com/a\t0.1s\n"},
				{Action: "pass", Package: p},
			},
			printed: []string{"ok  \texample.com/a"},
		},
		{
			name: "skip not allowed",
			events: []event{
				{Action: "run", Package: p, Test: "TestB"},
				{Action: "output", Package: p, Test: "TestB", Output: "=== RUN   TestB\n"},
				{Action: "output", Package: p, Test: "TestB", Output: "    b_test.go:9: LABD_NO_DOCKERD=1: no reference dockerd\n"},
				{Action: "output", Package: p, Test: "TestB", Output: "--- SKIP: TestB (0.00s)\n"},
				{Action: "skip", Package: p, Test: "TestB"},
				{Action: "pass", Package: p},
			},
			problems: []string{"skipped without a documented reason: example.com/a TestB: b_test.go:9: LABD_NO_DOCKERD=1"},
			printed:  []string{"TestB [NOT ALLOWED]"},
		},
		{
			name: "skip allowed",
			events: []event{
				{Action: "output", Package: p, Test: "TestAllowed", Output: "    x_test.go:1: no GPU\n"},
				{Action: "skip", Package: p, Test: "TestAllowed"},
				{Action: "pass", Package: p},
			},
			printed: []string{"TestAllowed [allowed]: x_test.go:1: no GPU"},
		},
		{
			name: "no test ran",
			events: []event{
				{Action: "output", Package: p, Output: "enginetest: needs root; no test ran\n"},
				{Action: "output", Package: p, Output: "ok  \texample.com/a\t0.01s\n"},
				{Action: "pass", Package: p},
			},
			problems: []string{"package example.com/a ran no test"},
		},
		{
			name: "no test files",
			events: []event{
				{Action: "output", Package: p, Output: "?   \texample.com/a\t[no test files]\n"},
				{Action: "skip", Package: p},
			},
			printed: []string{"[no test files]"},
		},
		{
			name: "failed test shows its output",
			events: []event{
				{Action: "output", Package: p, Test: "TestC", Output: "    c_test.go:3: wrong answer\n"},
				{Action: "output", Package: p, Test: "TestC", Output: "--- FAIL: TestC (0.00s)\n"},
				{Action: "fail", Package: p, Test: "TestC"},
				{Action: "output", Package: p, Output: "FAIL\texample.com/a\t0.1s\n"},
				{Action: "fail", Package: p},
			},
			problems: []string{"failed: example.com/a TestC"},
			printed:  []string{"c_test.go:3: wrong answer", "FAIL\texample.com/a"},
		},
		{
			name: "package failed outside tests",
			events: []event{
				{Action: "output", Package: p, Output: "enginetest: start dockerd: exit 1\n"},
				{Action: "output", Package: p, Output: "FAIL\texample.com/a\t0.1s\n"},
				{Action: "fail", Package: p},
			},
			problems: []string{"failed: package example.com/a (outside any test"},
			printed:  []string{"start dockerd: exit 1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			r := NewReport(allow, false, &out)
			if err := r.Read(strings.NewReader(stream(t, tc.events...))); err != nil {
				t.Fatal(err)
			}
			problems := r.Finish()
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %d like %q", problems, len(tc.problems), tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(problems[i], want) {
					t.Errorf("problem %d: %q, want it to contain %q", i, problems[i], want)
				}
			}
			for _, want := range tc.printed {
				if !strings.Contains(out.String(), want) {
					t.Errorf("printed report lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestParseAllowListNeedsReason(t *testing.T) {
	if _, err := parseAllowList("example.com/a TestX\n"); err == nil {
		t.Fatal("an entry without a reason was accepted")
	}
}

// TestRunRealGoTest runs testreport's run on a real `go test -json` of a
// throwaway module with a skipping test: the exit code is 1 and the skip
// is named; with the skip allowed it is 0.
func TestRunRealGoTest(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not in PATH: %v", err)
	}
	dir := t.TempDir()
	for name, body := range map[string]string{
		"go.mod":       "module example.com/skippy\n\ngo 1.22\n",
		"skip_test.go": "package skippy\n\nimport \"testing\"\n\nfunc TestPass(t *testing.T) {}\n\nfunc TestSkip(t *testing.T) { t.Skip(\"no reference here\") }\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	args := []string{goBin, "test", "-json", "-count=1", "./..."}
	// go test's stderr is copied by exec's own goroutine: a buffer of its own.
	var out, errOut bytes.Buffer
	if code := run(args, AllowList{}, false, &out, &errOut); code != 1 || !strings.Contains(out.String(), "example.com/skippy TestSkip: skip_test.go:7: no reference here") {
		t.Errorf("skip not allowed: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	allow := AllowList{"example.com/skippy": {"TestSkip": "a test of testreport"}}
	if code := run(args, allow, false, &out, &errOut); code != 0 {
		t.Errorf("skip allowed: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
