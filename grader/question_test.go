package grader_test

import (
	"context"
	"testing"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
)

func TestQuestionChecks(t *testing.T) {
	lab, problems := labs.Load("../labs/testdata/labs/questions")
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	byID := map[string]labs.Check{}
	for _, st := range lab.Steps {
		for _, c := range st.Checks {
			byID[c.ID] = c
		}
	}
	for _, tc := range []struct {
		check  string
		answer []string // nil: unanswered
		state  grader.State
		msg    string
	}{
		{"layer-maker", nil, grader.StateFailed, "Answer the question in this step"},
		{"layer-maker", []string{"RUN"}, grader.StatePassed, ""},
		{"layer-maker", []string{"CMD"}, grader.StateFailed, "Not quite"},
		{"metadata", []string{"EXPOSE", "CMD"}, grader.StatePassed, ""},
		{"metadata", []string{"CMD"}, grader.StateFailed, "Not quite"},
		{"metadata", []string{"CMD", "EXPOSE", "RUN"}, grader.StateFailed, "Not quite"},
		{"flask-port", []string{" 5000 "}, grader.StatePassed, ""},
		{"flask-port", []string{"8080"}, grader.StateFailed, "Not quite"},
	} {
		env := &grader.Env{Answers: func(id string) ([]string, bool) {
			return tc.answer, tc.answer != nil && id == tc.check
		}}
		r := grader.Check(context.Background(), env, 1, byID[tc.check])
		if r.State != tc.state || (tc.msg != "" && r.Message[:len(tc.msg)] != tc.msg) || r.Points != byID[tc.check].Points {
			t.Errorf("%s answered %q = %s %q (points %d)", tc.check, tc.answer, r.State, r.Message, r.Points)
		}
		if tc.state != grader.StatePassed && tc.check == "flask-port" && r.Hint != "Look at the last line of app.py." {
			t.Errorf("a wrong answer lacks the hint: %+v", r)
		}
	}
}
