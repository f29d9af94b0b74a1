package grader

import (
	"time"

	"github.com/labd/labd/labs"
)

// ApplyPassed applies stored passes (progress.Store.Passed) to a fresh
// Grade result as the live grader does: a sticky check (the default) that
// passed before counts as passed, with the time it first passed, even if
// it fails now (the learner removed the container in a later step). It
// returns the IDs of the checks held passed that way.
func ApplyPassed(res *LabResult, lab *labs.Lab, passed map[string]time.Time) []string {
	sticky := map[string]bool{}
	for _, st := range lab.Steps {
		for _, c := range st.Checks {
			sticky[c.ID] = c.Sticky
		}
	}
	var held []string
	for i := range res.Steps {
		for j := range res.Steps[i].Checks {
			c := &res.Steps[i].Checks[j]
			at, ok := passed[c.ID]
			if !ok {
				continue
			}
			switch {
			case c.State == StatePassed:
				c.PassedAt = &at
			case sticky[c.ID]:
				c.State, c.PassedAt, c.Message, c.Hint, c.Sticky = StatePassed, &at, "", "", true
				held = append(held, c.ID)
			}
		}
	}
	res.finish()
	return held
}
