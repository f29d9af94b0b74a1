package grader_test

import (
	"testing"
	"time"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
)

// TestApplyPassed: stored passes keep sticky checks passed (with their
// first pass time) in a fresh grade; sticky: false checks report what is
// true now.
func TestApplyPassed(t *testing.T) {
	lab := &labs.Lab{ID: "l", Steps: []labs.Step{
		{Index: 1, Checks: []labs.Check{
			{ID: "run", Kind: "container", Sticky: true},
			{ID: "live", Kind: "http", Sticky: false},
		}},
		{Index: 2, Checks: []labs.Check{{ID: "file", Kind: "file", Sticky: true}}},
	}}
	then := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := time.Now()
	fresh := func() grader.LabResult {
		return grader.LabResult{Lab: "l", Steps: []grader.StepResult{
			{Index: 1, Checks: []grader.CheckResult{
				{ID: "run", State: grader.StateFailed, Message: "No running container", Hint: "run it"},
				{ID: "live", State: grader.StateFailed, Message: "Nothing answers"},
			}},
			{Index: 2, Checks: []grader.CheckResult{{ID: "file", State: grader.StatePassed, PassedAt: &now}}},
		}}
	}
	tests := []struct {
		name       string
		passed     map[string]time.Time
		wantHeld   int
		wantPassed int
		step1      grader.State
	}{
		{"nothing stored", nil, 0, 1, grader.StateFailed},
		{"sticky check held", map[string]time.Time{"run": then}, 1, 2, grader.StateFailed},
		{"non-sticky not held", map[string]time.Time{"run": then, "live": then}, 1, 2, grader.StateFailed},
		{"passing check keeps its first time", map[string]time.Time{"file": then}, 0, 1, grader.StateFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := fresh()
			held := grader.ApplyPassed(&res, lab, tc.passed)
			if len(held) != tc.wantHeld || res.Passed != tc.wantPassed || res.Total != 3 || res.Steps[0].State != tc.step1 {
				t.Fatalf("held %v, passed %d/%d, step 1 %s", held, res.Passed, res.Total, res.Steps[0].State)
			}
			run := res.Steps[0].Checks[0]
			if _, ok := tc.passed["run"]; ok && (run.State != grader.StatePassed || !run.PassedAt.Equal(then) || run.Message != "" || run.Hint != "") {
				t.Fatalf("held check = %+v", run)
			}
			if live := res.Steps[0].Checks[1]; live.State != grader.StateFailed {
				t.Fatalf("sticky: false check = %+v, want failed as now", live)
			}
			if _, ok := tc.passed["file"]; ok && !res.Steps[1].Checks[0].PassedAt.Equal(then) {
				t.Fatalf("passing check's time = %v, want the stored first pass %v", res.Steps[1].Checks[0].PassedAt, then)
			}
		})
	}
}
