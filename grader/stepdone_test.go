package grader_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
)

// The live grader tells of each step a learner completes, once, with the
// step's points and the lab's score (what the webhook posts).
func TestLiveStepDone(t *testing.T) {
	b := newBox(t)
	lab := &labs.Lab{ID: "scored", Steps: []labs.Step{
		{Index: 1, ID: "one", Title: "one", Checks: []labs.Check{
			checkOf(t, "a", map[string]any{"kind": "file", "path": "a.txt", "points": 2}),
			checkOf(t, "b", map[string]any{"kind": "file", "path": "b.txt"}),
		}},
		{Index: 2, ID: "two", Title: "two", Checks: []labs.Check{checkOf(t, "c", map[string]any{"kind": "file", "path": "c.txt", "points": 5})}},
	}}
	done := make(chan grader.StepDone, 10)
	live := grader.NewLive(grader.LiveOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnStepDone: func(d grader.StepDone) { done <- d }})
	t.Cleanup(live.Close)
	w := live.Watch(grader.Target{SandboxID: "sb-grader", Learner: "alice", Lab: lab, Sandbox: b.sb})
	next := func(what string) grader.StepDone {
		t.Helper()
		select {
		case d := <-done:
			return d
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no step done; latest %+v", what, w.Latest())
		}
		return grader.StepDone{}
	}
	write := func(name string) {
		if err := os.WriteFile(filepath.Join(b.sb.Workspace(), name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		w.Trigger()
	}
	write("a.txt")
	write("b.txt")
	d := next("step one")
	if d.Learner != "alice" || d.Lab != "scored" || d.Step != 1 || d.StepScore != 3 || d.Score != 3 || d.MaxScore != 8 || d.At.IsZero() {
		t.Errorf("step one done = %+v", d)
	}
	write("c.txt")
	d = next("step two")
	if d.Step != 2 || d.StepScore != 5 || d.Score != 8 || d.MaxScore != 8 {
		t.Errorf("step two done = %+v", d)
	}
	w.Trigger()
	select {
	case d := <-done:
		t.Errorf("a step done twice: %+v", d)
	case <-time.After(2 * time.Second):
	}
}
