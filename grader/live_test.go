package grader_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
)

// TestLiveAskedAndRegressed: the watcher tells the page which steps the
// learner asked to check (answered by a result evaluated after the ask),
// and marks a sticky: false check that passed and no longer does as
// regressed until it passes again.
func TestLiveAskedAndRegressed(t *testing.T) {
	b := newBox(t)
	lab := &labs.Lab{ID: "live", Steps: []labs.Step{
		{Index: 1, ID: "one", Title: "one", Checks: []labs.Check{checkOf(t, "flag", map[string]any{"kind": "file", "path": "flag.txt", "sticky": false})}},
		{Index: 2, ID: "two", Title: "two", Checks: []labs.Check{checkOf(t, "never", map[string]any{"kind": "file", "path": "never.txt"})}},
	}}
	live := grader.NewLive(grader.LiveOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(live.Close)
	w := live.Watch(grader.Target{SandboxID: "sb-grader", Learner: "alice", Lab: lab, Sandbox: b.sb})
	updates, cancel := w.Subscribe()
	defer cancel()
	// wait returns the first result satisfying ok.
	wait := func(what string, ok func(grader.LabResult) bool) grader.LabResult {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case r := <-updates:
				if ok(r) {
					return r
				}
			case <-deadline:
				t.Fatalf("%s: latest %+v", what, w.Latest())
			}
		}
	}
	flag := func(r grader.LabResult) grader.CheckResult { return r.Steps[0].Checks[0] }

	r := wait("first evaluation", func(r grader.LabResult) bool { return flag(r).State == grader.StateFailed })
	if flag(r).Regressed || len(w.Asked(r)) != 0 {
		t.Fatalf("fresh: regressed %v, asked %v", flag(r).Regressed, w.Asked(r))
	}
	w.Ask(2)
	r = wait("answer to Check on step 2", func(r grader.LabResult) bool { return len(w.Asked(r)) > 0 })
	if got := w.Asked(r); !slices.Equal(got, []int{2}) {
		t.Fatalf("asked = %v, want [2]", got)
	}

	p := filepath.Join(b.sb.Workspace(), "flag.txt")
	os.WriteFile(p, nil, 0o644)
	wait("flag passed", func(r grader.LabResult) bool { return flag(r).State == grader.StatePassed })
	os.Remove(p)
	r = wait("flag lost", func(r grader.LabResult) bool { return flag(r).State == grader.StateFailed })
	if !flag(r).Regressed || r.Steps[1].Checks[0].Regressed {
		t.Fatalf("after losing the pass: flag %+v, never %+v; want only flag regressed", flag(r), r.Steps[1].Checks[0])
	}
	w.Trigger()
	r = wait("next evaluation", func(grader.LabResult) bool { return true })
	if !flag(r).Regressed {
		t.Fatalf("regressed must last until the check passes again: %+v", flag(r))
	}
	os.WriteFile(p, nil, 0o644)
	r = wait("flag passed again", func(r grader.LabResult) bool { return flag(r).State == grader.StatePassed })
	if flag(r).Regressed {
		t.Fatalf("passed again but still regressed: %+v", flag(r))
	}
	// Ask with no step (old pages): every step.
	w.Ask(0)
	r = wait("answer to Check on all", func(r grader.LabResult) bool { return len(w.Asked(r)) == 2 })
	if got := w.Asked(r); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("asked = %v, want [1 2]", got)
	}
}
