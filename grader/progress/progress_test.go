package progress

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Answers are the learner's latest, per question, survive a reopen of the
// database, and are the learner's own.
func TestAnswers(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "labd.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, a := range []struct {
		learner, q string
		answer     []string
	}{
		{"alice", "layer", []string{"CMD"}},
		{"alice", "layer", []string{"RUN"}},
		{"alice", "meta", []string{"CMD", "EXPOSE"}},
		{"bob", "layer", []string{"EXPOSE"}},
	} {
		if err := s.SetAnswer(ctx, a.learner, "quiz", a.q, a.answer, now); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Answers(ctx, "alice", "quiz")
	if err != nil || len(got) != 2 || !slices.Equal(got["layer"], []string{"RUN"}) || !slices.Equal(got["meta"], []string{"CMD", "EXPOSE"}) {
		t.Errorf("alice's answers = %v, %v", got, err)
	}
	if got, _ := s.Answers(ctx, "bob", "other-lab"); len(got) != 0 {
		t.Errorf("answers of another lab: %v", got)
	}
}
