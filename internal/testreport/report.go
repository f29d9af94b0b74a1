package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// AllowList holds the skips `make test` accepts: package → test name →
// the documented reason.
type AllowList map[string]map[string]string

func readAllowList(path string) (AllowList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("allow-list: %w", err)
	}
	return parseAllowList(string(b))
}

// parseAllowList reads lines of `package TestName reason...`; # starts a
// comment line. A reason is required: an entry says why the skip is fine.
func parseAllowList(s string) (AllowList, error) {
	a := AllowList{}
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("allow-list line %d: want `package TestName reason`, got %q", i+1, line)
		}
		if a[f[0]] == nil {
			a[f[0]] = map[string]string{}
		}
		a[f[0]][f[1]] = strings.Join(f[2:], " ")
	}
	return a, nil
}

// Report follows the event stream.
type Report struct {
	allowed AllowList
	verbose bool
	out     io.Writer

	output   map[string][]string // "pkg\x00test" → output lines so far
	ran      map[string]int      // package → tests that ran (pass, fail or skip)
	done     map[string]string   // package → its final action
	skips    []skip
	failures []string
}

type skip struct {
	pkg, test, reason string
	allowed           bool
}

// NewReport prints to out as events arrive.
func NewReport(allowed AllowList, verbose bool, out io.Writer) *Report {
	return &Report{
		allowed: allowed, verbose: verbose, out: out,
		output: map[string][]string{}, ran: map[string]int{}, done: map[string]string{},
	}
}

// Read consumes a stream of events; lines that are not events (go vet's
// or the linker's messages) are printed as they are.
func (r *Report) Read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(r.out, sc.Text())
			continue
		}
		r.event(e)
	}
	return sc.Err()
}

func (r *Report) event(e event) {
	key := e.Package + "\x00" + e.Test
	switch e.Action {
	case "build-output":
		fmt.Fprint(r.out, e.Output)
	case "output":
		if r.verbose {
			fmt.Fprint(r.out, e.Output)
		}
		if e.Test == "" {
			// The package's own lines: its result ("ok", "FAIL", "?")
			// and what TestMain printed; kept for a failing package.
			r.output[key] = append(r.output[key], e.Output)
			if !r.verbose && isResultLine(e.Output) {
				fmt.Fprint(r.out, e.Output)
			}
			return
		}
		r.output[key] = append(r.output[key], e.Output)
	case "pass", "fail", "skip":
		if e.Test == "" {
			r.done[e.Package] = e.Action
			if e.Action == "fail" && !r.verbose {
				// A package that failed outside any test (TestMain, a
				// panic, a timeout): show everything it printed.
				if r.ran[e.Package] == 0 || !r.anyTestFailed(e.Package) {
					fmt.Fprint(r.out, strings.Join(r.output[key], ""))
				}
			}
			return
		}
		r.ran[e.Package]++
		switch e.Action {
		case "fail":
			r.failures = append(r.failures, e.Package+" "+e.Test)
			if !r.verbose {
				fmt.Fprint(r.out, strings.Join(r.output[key], ""))
			}
		case "skip":
			reason := skipReason(r.output[key])
			_, ok := r.allowed[e.Package][e.Test]
			r.skips = append(r.skips, skip{e.Package, e.Test, reason, ok})
		}
		delete(r.output, key)
	}
}

func (r *Report) anyTestFailed(pkg string) bool {
	for _, f := range r.failures {
		if strings.HasPrefix(f, pkg+" ") {
			return true
		}
	}
	return false
}

// isResultLine tells the package summary lines go test prints without -v.
func isResultLine(s string) bool {
	return strings.HasPrefix(s, "ok  \t") || strings.HasPrefix(s, "FAIL\t") || strings.HasPrefix(s, "?   \t") ||
		strings.HasPrefix(s, "--- FAIL") || s == "FAIL\n"
}

// skipReason is what the test logged, without the framework's own lines.
func skipReason(lines []string) string {
	var b []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		b = append(b, t)
	}
	return strings.Join(b, " | ")
}

// Finish lists what makes the run not green, besides what go test itself
// reports (its failures are listed too, so the summary is complete).
func (r *Report) Finish() []string {
	var problems []string
	for _, f := range r.failures {
		problems = append(problems, "failed: "+f)
	}
	var pkgs []string
	for p := range r.done {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		switch {
		case r.done[p] == "fail" && !r.anyTestFailed(p):
			problems = append(problems, "failed: package "+p+" (outside any test: see its output above)")
		case r.done[p] == "pass" && r.ran[p] == 0:
			problems = append(problems, "package "+p+" ran no test: its TestMain ended early or nothing matched")
		}
	}
	if len(r.skips) > 0 {
		fmt.Fprintln(r.out, "\nskipped tests:")
	}
	for _, s := range r.skips {
		mark := "allowed"
		if !s.allowed {
			mark = "NOT ALLOWED"
			problems = append(problems, fmt.Sprintf("skipped without a documented reason: %s %s: %s (list it in .ci/skips.txt with why, or make it run)", s.pkg, s.test, s.reason))
		}
		fmt.Fprintf(r.out, "  %s %s [%s]: %s\n", s.pkg, s.test, mark, s.reason)
	}
	return problems
}
