package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A learner answers a question of the page: the answer is stored, graded
// as a check, and the pass recorded; answers that are not the form's are
// refused with what is wrong, and only the learner's own page may answer.
func TestAnswerQuestion(t *testing.T) {
	s := newGradingServerWith(t, "testdata/starter-content")
	c := (&testServer{Server: s.Server}).client(t)
	resp, body := get(t, c, s.URL+"/labs/quiz-lab")
	if resp.StatusCode != 200 || !strings.Contains(body, `<form class="question" method="post" action="/labs/quiz-lab/questions/layer-maker"`) {
		t.Fatalf("lab page = %d, without the question's form", resp.StatusCode)
	}
	sid := sandboxAttrOf(t, body)
	if _, _, ok := waitSandbox(t, s.mgr, sid); !ok {
		t.Fatal("no sandbox")
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		if _, ok := s.live.Get(sid); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no live grader for the sandbox")
		}
		time.Sleep(20 * time.Millisecond)
	}
	answer := func(q string, origin string, values ...string) int {
		t.Helper()
		form := url.Values{"answer": values}
		return postForm(t, c, s.URL+"/labs/quiz-lab/questions/"+q, origin, form.Encode())
	}
	for _, tc := range []struct {
		name, q string
		values  []string
		origin  string
		want    int
	}{
		{"another site", "layer-maker", []string{"RUN"}, "https://evil.example", http.StatusForbidden},
		{"no such question", "nope", []string{"RUN"}, s.URL, http.StatusNotFound},
		{"not a choice", "layer-maker", []string{"FROM"}, s.URL, http.StatusBadRequest},
		{"two answers to a one-answer question", "layer-maker", []string{"RUN", "CMD"}, s.URL, http.StatusBadRequest},
		{"an empty free answer", "flask-port", []string{"  "}, s.URL, http.StatusBadRequest},
		{"a free answer too long", "flask-port", []string{strings.Repeat("5", 501)}, s.URL, http.StatusBadRequest},
		{"wrong", "layer-maker", []string{"CMD"}, s.URL, http.StatusSeeOther},
	} {
		if got := answer(tc.q, tc.origin, tc.values...); got != tc.want {
			t.Errorf("%s: answer = %d, want %d", tc.name, got, tc.want)
		}
	}
	ctx := context.Background()
	passedWithin := func(id string) bool {
		deadline := time.Now().Add(waitTimeout)
		for time.Now().Before(deadline) {
			p, _ := s.store.Passed(ctx, learnerOfSandbox(t, s, sid), "quiz-lab")
			if _, ok := p[id]; ok {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	// The wrong answer is graded: not yet, with the reason.
	w, _ := s.live.Get(sid)
	deadline = time.Now().Add(waitTimeout)
	for {
		r := w.Latest()
		if len(r.Steps) > 0 && len(r.Steps[0].Checks) > 0 && strings.HasPrefix(r.Steps[0].Checks[0].Message, "Not quite") {
			if r.Steps[0].Checks[0].State == "passed" {
				t.Fatal("a wrong answer passed")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the wrong answer was not graded: %+v", r.Steps)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a, err := s.store.Answers(ctx, learnerOfSandbox(t, s, sid), "quiz-lab")
	if err != nil || len(a["layer-maker"]) != 1 || a["layer-maker"][0] != "CMD" {
		t.Fatalf("stored answers = %v, %v", a, err)
	}
	if got := answer("layer-maker", s.URL, "RUN"); got != http.StatusSeeOther {
		t.Fatalf("right answer = %d", got)
	}
	if !passedWithin("layer-maker") {
		t.Error("the right answer did not pass the question")
	}
	if got := answer("metadata", s.URL, "EXPOSE", "CMD"); got != http.StatusSeeOther || !passedWithin("metadata") {
		t.Errorf("both right choices: %d, not passed", got)
	}
	if got := answer("flask-port", s.URL, "5000"); got != http.StatusSeeOther || !passedWithin("flask-port") {
		t.Errorf("the right free answer: %d, not passed", got)
	}
}

// learnerOfSandbox is the learner a sandbox belongs to.
func learnerOfSandbox(t *testing.T, s *gradingServer, sid string) string {
	t.Helper()
	_, owner, ok := s.mgr.Get(sid)
	if !ok {
		t.Fatal("sandbox gone")
	}
	return owner
}
