// Package webhook tells a course platform of learners' progress: each
// step a learner completes is POSTed as JSON to the operator's URL,
// signed with HMAC-SHA256 over the body so the platform can tell labd's
// posts from anyone's (the header works as GitHub's X-Hub-Signature-256).
// Deliveries are queued and retried with backoff; a slow or absent
// platform never slows the grader, and a full queue drops the oldest
// events with a log line.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Headers of a delivery.
const (
	SignatureHeader = "X-Labd-Signature-256" // "sha256=" + hex HMAC of the body
	EventHeader     = "X-Labd-Event"         // "step.completed"
	DeliveryHeader  = "X-Labd-Delivery"      // a random ID, the same across retries
)

// StepCompleted is the event of a learner's step turning done.
type StepCompleted struct {
	Event       string    `json:"event"` // "step.completed"
	Learner     string    `json:"learner"`
	Lab         string    `json:"lab"`
	Step        int       `json:"step"`
	Title       string    `json:"title"`
	CompletedAt time.Time `json:"completed_at"`
	// StepScore is the step's points; Score and MaxScore the lab's so far.
	StepScore int `json:"step_score"`
	Score     int `json:"score"`
	MaxScore  int `json:"max_score"`
}

// Options configure a Sender.
type Options struct {
	URL    string
	Secret []byte
	Client *http.Client // nil: one with a 10 s timeout
	Logger *slog.Logger
	// Queue bounds the events waiting; 0: 1000.
	Queue int
	// Retries is how often a delivery is tried again after a failure
	// (a network error or a status outside 2xx); 0: 5. Backoff starts at
	// 1 s and doubles.
	Retries int
	Backoff time.Duration
}

// Sender delivers events in order, one at a time.
type Sender struct {
	o      Options
	mu     sync.Mutex
	queue  []delivery
	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

type delivery struct {
	id    string
	event string
	body  []byte
}

// New starts a Sender; Close stops it.
func New(o Options) *Sender {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Queue <= 0 {
		o.Queue = 1000
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sender{o: o, wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go s.run()
	return s
}

// Sign is the signature header's value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is body's signature with secret, in constant
// time: what a receiving platform does.
func Verify(secret, body []byte, sig string) bool {
	return hmac.Equal([]byte(sig), []byte(Sign(secret, body)))
}

// StepCompleted queues the event.
func (s *Sender) StepCompleted(e StepCompleted) {
	e.Event = "step.completed"
	body, err := json.Marshal(e)
	if err != nil {
		s.o.Logger.Warn("webhook event", "err", err)
		return
	}
	var raw [12]byte
	rand.Read(raw[:])
	d := delivery{id: hex.EncodeToString(raw[:]), event: e.Event, body: body}
	s.mu.Lock()
	if len(s.queue) >= s.o.Queue {
		s.o.Logger.Warn("webhook queue full: dropped the oldest event", "url", s.o.URL, "queued", len(s.queue))
		s.queue = s.queue[1:]
	}
	s.queue = append(s.queue, d)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stops delivering; what is still queued is dropped (and logged).
func (s *Sender) Close() {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		s.o.Logger.Warn("webhook: undelivered events dropped at shutdown", "count", len(s.queue))
	}
}

func (s *Sender) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		var d *delivery
		if len(s.queue) > 0 {
			d = &s.queue[0]
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
		if d == nil {
			select {
			case <-s.wake:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		if err := s.deliver(*d); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.o.Logger.Warn("webhook delivery failed", "url", s.o.URL, "delivery", d.id, "err", err)
		}
	}
}

// deliver posts d until it succeeds or its retries are spent.
func (s *Sender) deliver(d delivery) error {
	wait := s.o.Backoff
	var err error
	for try := 0; try <= s.o.Retries; try++ {
		if try > 0 {
			select {
			case <-time.After(wait):
			case <-s.ctx.Done():
				return s.ctx.Err()
			}
			wait *= 2
		}
		if err = s.post(d); err == nil {
			return nil
		}
	}
	return err
}

func (s *Sender) post(d delivery) error {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.o.URL, bytes.NewReader(d.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "labd-webhook")
	req.Header.Set(SignatureHeader, Sign(s.o.Secret, d.body))
	req.Header.Set(EventHeader, d.event)
	req.Header.Set(DeliveryHeader, d.id)
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}
