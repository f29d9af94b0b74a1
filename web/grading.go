package web

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
)

// StatusSubprotocol is the websocket subprotocol of the step-status
// stream (/sandboxes/{sid}/status). Messages are JSON text frames:
// server → page {"type":"status","result":<grader.LabResult>,"asked":[<step>...]};
// page → server {"type":"check","step":<step>} (a step's Check button;
// no step or 0: every step). "asked" lists the steps whose Check was
// pressed before this result was evaluated: the page shows failing checks
// in red only there, or when the check has "regressed" (passed, then
// failed); elsewhere a failing check is still "to do".
const StatusSubprotocol = "labd.status.v1"

// statusPing keeps the status websocket alive through proxies.
const statusPing = 30 * time.Second

// engineSocketer is implemented by sandboxes that have an engine (the
// engine provider's sandboxes): the grader talks to it on its own socket,
// whose calls are never recorded as the learner's.
type engineSocketer interface{ GraderSocket() string }

// watchGrading starts (or finds) the grader's watcher of a learner's
// sandbox; called by the lab page. user is the learner's registry account
// ("" without a registry: push checks then match any user).
func (s *server) watchGrading(sid, learner, user string, lab *labs.Lab, sb sandbox.Sandbox) {
	if s.opts.Grader == nil {
		return
	}
	t := grader.Target{SandboxID: sid, Learner: learner, User: user, Lab: lab, Sandbox: sb}
	if es, ok := sb.(engineSocketer); ok {
		t.Socket = es.GraderSocket()
	}
	s.opts.Grader.Watch(t)
}

// status streams the grader's results for the learner's sandbox. Like the
// terminal, only the owner may connect, and only from labd's own pages
// (routeStatus): the Check buttons ask for evaluations through it.
func (s *server) status(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("sid")
	gone := refusal{http.StatusNotFound, "No such sandbox",
		"This sandbox is not being graded. Reload the lab page to start it again."}
	if s.opts.Grader == nil {
		s.refuse(w, r, routeStatus, gone)
		return
	}
	if !s.awaitStart(w, r, routeStatus, sid) {
		return
	}
	if _, ok := s.access(w, r, routeStatus, sid, 0); !ok {
		return
	}
	watcher, ok := s.opts.Grader.Get(sid)
	if !ok {
		s.refuse(w, r, routeStatus, gone)
		return
	}
	u := websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		Subprotocols:     []string{StatusSubprotocol},
		CheckOrigin:      func(r *http.Request) bool { return s.sameOrigin(r, originWebsocket) },
	}
	ws, err := u.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	ws.SetReadLimit(4 << 10)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		defer cancel()
		for {
			var m struct {
				Type string `json:"type"`
				Step int    `json:"step"`
			}
			if err := ws.ReadJSON(&m); err != nil {
				return
			}
			if m.Type == "check" {
				s.opts.Sandboxes.Touch(sid)
				watcher.Ask(m.Step)
			}
		}
	}()
	updates, unsubscribe := watcher.Subscribe()
	defer unsubscribe()
	ping := time.NewTicker(statusPing)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case res := <-updates:
			ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := ws.WriteJSON(statusMessage{Type: "status", Result: res, Asked: watcher.Asked(res)}); err != nil {
				return
			}
		case <-ping.C:
			ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := ws.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

// statusMessage is what the status websocket sends (StatusSubprotocol).
type statusMessage struct {
	Type   string           `json:"type"`
	Result grader.LabResult `json:"result"`
	Asked  []int            `json:"asked"`
}

// labProgress is what the catalogue shows per lab for the learner.
type labProgress struct {
	Passed, Total int
}

func (s *server) progressFor(r *http.Request, entries []labs.Entry) map[string]*labProgress {
	if s.opts.Grader == nil || s.opts.Grader.Store() == nil {
		return nil
	}
	learner := s.keys.learnerFromRequest(r)
	if learner == "" {
		return nil
	}
	counts, err := s.opts.Grader.Store().Counts(r.Context(), learner)
	if err != nil {
		s.log.Warn("read progress", "err", err)
		return nil
	}
	out := map[string]*labProgress{}
	for _, e := range entries {
		if e.Lab == nil {
			continue
		}
		total := 0
		for _, st := range e.Lab.Steps {
			total += len(st.Checks)
		}
		if n, ok := counts[e.ID]; ok && total > 0 {
			out[e.ID] = &labProgress{Passed: min(n, total), Total: total}
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
