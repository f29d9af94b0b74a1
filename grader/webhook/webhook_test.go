package webhook

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// A platform that fails twice, then takes the event: the delivery is
// retried with the same ID and a body the secret verifies.
func TestDeliverSignedWithRetries(t *testing.T) {
	secret := []byte("s3cret")
	var mu sync.Mutex
	var ids []string
	got := make(chan StepCompleted, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !Verify(secret, body, r.Header.Get(SignatureHeader)) || r.Header.Get(EventHeader) != "step.completed" {
			t.Errorf("bad delivery: headers %v", r.Header)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		ids = append(ids, r.Header.Get(DeliveryHeader))
		n := len(ids)
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var e StepCompleted
		if err := json.Unmarshal(body, &e); err != nil {
			t.Error(err)
		}
		got <- e
	}))
	defer srv.Close()
	s := New(Options{URL: srv.URL, Secret: secret, Backoff: time.Millisecond})
	defer s.Close()
	at := time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	s.StepCompleted(StepCompleted{Learner: "l1", Lab: "docker-images", Step: 2, Title: "Build", CompletedAt: at, StepScore: 2, Score: 3, MaxScore: 10})
	select {
	case e := <-got:
		if e.Event != "step.completed" || e.Learner != "l1" || e.Step != 2 || e.Score != 3 || e.MaxScore != 10 || !e.CompletedAt.Equal(at) {
			t.Errorf("event = %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] || ids[0] == "" {
		t.Errorf("delivery IDs %q, want three tries of one", ids)
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"a":1}`)
	sig := Sign([]byte("k"), body)
	if !Verify([]byte("k"), body, sig) || Verify([]byte("other"), body, sig) || Verify([]byte("k"), []byte(`{"a":2}`), sig) {
		t.Error("a signature verifies what it should not, or not what it should")
	}
}

// A platform that never answers well: events are delivered in order
// after it recovers, and a full queue drops the oldest.
func TestQueueOrderAndBound(t *testing.T) {
	var mu sync.Mutex
	var steps []int
	block := make(chan struct{})
	arrived := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-block
		var e StepCompleted
		json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		steps = append(steps, e.Step)
		mu.Unlock()
	}))
	defer srv.Close()
	s := New(Options{URL: srv.URL, Secret: []byte("k"), Queue: 3})
	defer s.Close()
	s.StepCompleted(StepCompleted{Step: 1})
	<-arrived // in flight: no longer queued
	for i := 2; i <= 6; i++ {
		s.StepCompleted(StepCompleted{Step: i})
	}
	close(block)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(steps)
		mu.Unlock()
		if n >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	// Step 1 was in flight; of 2..6 the queue of 3 kept the newest.
	if len(steps) != 4 || steps[0] != 1 || steps[1] != 4 || steps[2] != 5 || steps[3] != 6 {
		t.Errorf("delivered steps %v, want [1 4 5 6]", steps)
	}
}
