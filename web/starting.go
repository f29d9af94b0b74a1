package web

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
)

// The lab page never waits for a shell: it asks the Manager to start the
// learner's sandbox (sandbox.Manager.Start: a warm one at once, or one
// made in the background) and answers. The terminal and status
// websockets, which the page opens next, wait here for the start to end.

// startWait bounds how long a websocket waits for its sandbox.
const startWait = sandbox.DefaultCreateTimeout + 30*time.Second

// starting is one start begun by a lab page.
type starting struct {
	done chan struct{}
	err  error // set before done closes
}

// startings are the starts of the server, by sandbox id. A finished start
// stays until the next one of its id (its error is what the websockets
// report); the map is swept of finished ones when it grows.
type startings struct {
	mu sync.Mutex
	m  map[string]*starting
}

const startingsSweep = 4096

// begin registers a start of sid unless one is under way; it reports
// whether the caller is to run it.
func (ss *startings) begin(sid string) (*starting, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = make(map[string]*starting)
	}
	if st, ok := ss.m[sid]; ok && !st.finished() {
		return st, false
	}
	if len(ss.m) >= startingsSweep {
		for id, st := range ss.m {
			if st.finished() {
				delete(ss.m, id)
			}
		}
	}
	st := &starting{done: make(chan struct{})}
	ss.m[sid] = st
	return st, true
}

func (st *starting) finished() bool {
	select {
	case <-st.done:
		return true
	default:
		return false
	}
}

// await waits, at most startWait, for sid's start if a lab page began
// one that has not ended, and returns its error. A sandbox already up (or
// never started here) costs a map lookup: every preview request asks.
func (ss *startings) await(ctx context.Context, sid string) error {
	ss.mu.Lock()
	st, ok := ss.m[sid]
	ss.mu.Unlock()
	if !ok {
		return nil
	}
	if st.finished() {
		return st.err
	}
	t := time.NewTimer(startWait)
	defer t.Stop()
	select {
	case <-st.done:
		return st.err
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return context.DeadlineExceeded
	}
}

// errStartEnded: the sandbox ended before its terminal could be made.
var errStartEnded = errors.New("the sandbox ended as it started")

// attachLab waits in the background for sid's sandbox, started by the
// lab page, and gives it its terminal hub and grader.
func (s *server) attachLab(sid, learner, user string, lab *labs.Lab) {
	st, mine := s.starts.begin(sid)
	if !mine {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), startWait)
		defer cancel()
		sb, _, err := s.opts.Sandboxes.Wait(ctx, sid)
		if err == nil && s.hubFor(sid, sb) == nil {
			err = errStartEnded
		}
		if err == nil {
			s.watchGrading(sid, learner, user, lab, sb)
		} else {
			s.log.Error("start sandbox", "lab", lab.ID, "sandbox", sid, "err", err)
		}
		st.err = err
		close(st.done)
	}()
}

// awaitStart is await for a websocket request: false when the
// sandbox could not start, with the answer written.
func (s *server) awaitStart(w http.ResponseWriter, r *http.Request, k routeKind, sid string) bool {
	err := s.starts.await(r.Context(), sid)
	if err == nil || r.Context().Err() != nil {
		return err == nil
	}
	s.refuse(w, r, k, refusal{http.StatusServiceUnavailable, "Could not start your sandbox",
		"labd could not start a shell for this lab. Reload the page to try again; the server log has details."})
	return false
}
