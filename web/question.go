package web

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labd/labd/labs"
	"github.com/labd/labd/labs/check"
)

// answerQuestion records a learner's answer to a question of a lab (a
// ```question block) and sends the page back to its step; the live
// grader grades it like any check and the step's status shows the verdict.
func (s *server) answerQuestion(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	lab, err := s.opts.Catalog.Get(id)
	if err != nil {
		s.labError(w, r, id, err)
		return
	}
	cid := r.PathValue("check")
	st, q := findQuestion(lab, cid)
	if q == nil {
		s.notFound(w, r)
		return
	}
	g, ok := s.access(w, r, routeAnswer, "", 0)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, errorData{Title: "Could not read your answer", Message: "The answer is too long or malformed."})
		return
	}
	answer, msg := cleanAnswer(q, r.PostForm["answer"])
	if msg != "" {
		s.errorPage(w, r, http.StatusBadRequest, errorData{Title: "Could not take your answer", Message: msg})
		return
	}
	sid := s.keys.sandboxID(g.learner, id)
	if s.opts.Grader == nil {
		s.notFound(w, r)
		return
	}
	watcher, ok := s.opts.Grader.Get(sid)
	if !ok {
		s.errorPage(w, r, http.StatusConflict, errorData{Title: "Your lab is not open",
			Message: "Open the lab and wait for the prompt, then answer again."})
		return
	}
	if err := watcher.Answer(r.Context(), cid, answer); err != nil {
		s.log.Error("record answer", "lab", id, "sandbox", sid, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, errorData{Title: "Could not save your answer", Message: "The server log has details; try again."})
		return
	}
	http.Redirect(w, r, "/labs/"+url.PathEscape(id)+"#"+url.PathEscape(st.ID), http.StatusSeeOther)
}

// findQuestion is the step and question of check id in lab.
func findQuestion(lab *labs.Lab, id string) (labs.Step, *check.Question) {
	for _, st := range lab.Steps {
		for _, c := range st.Checks {
			if q, ok := c.Spec.(*check.Question); ok && c.ID == id {
				return st, q
			}
		}
	}
	return labs.Step{}, nil
}

// cleanAnswer checks a submitted answer against the question's form: one
// free text of at most labs.MaxAnswer characters, or choices that are the
// question's, each once. msg says what is wrong.
func cleanAnswer(q *check.Question, in []string) (answer []string, msg string) {
	if len(q.Choices) == 0 {
		if len(in) != 1 || strings.TrimSpace(in[0]) == "" {
			return nil, "Type an answer in the field, then press Answer."
		}
		if len([]rune(in[0])) > labs.MaxAnswer {
			return nil, fmt.Sprintf("An answer has at most %d characters.", labs.MaxAnswer)
		}
		return []string{strings.TrimSpace(in[0])}, ""
	}
	if len(in) == 0 {
		return nil, "Pick an answer, then press Answer."
	}
	if len(in) > 1 && !q.Multiple() {
		return nil, "This question takes one answer."
	}
	for i, a := range in {
		if !slices.Contains(q.Choices, a) || slices.Contains(in[:i], a) {
			return nil, "That is not one of the question's choices."
		}
	}
	return slices.Clone(in), ""
}
