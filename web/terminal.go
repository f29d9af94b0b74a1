package web

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/web/terminal"
)

// touchInterval is how often a live terminal's last input is forwarded to the
// Manager as activity. Idle timeouts are minutes to hours; a few seconds
// of lag is irrelevant, and polling keeps the hub unaware of the Manager.
const touchInterval = 5 * time.Second

// liveTerminal is the hub of one live sandbox. It is created with the
// sandbox (on the lab page) and closed by the Manager's OnDestroy hook.
type liveTerminal struct {
	sb   sandbox.Sandbox
	hub  *terminal.Hub
	stop chan struct{}
	// idleWarned: the hub's standing notice is an idle warning, which
	// activity withdraws (lifecycle.go).
	idleWarned atomic.Bool
}

// hubFor returns the hub of sid's current sandbox, creating it on first
// use. It returns nil when sb has already ended: its destroy hook may have
// run, and a hub registered now would never be closed.
func (s *server) hubFor(sid string, sb sandbox.Sandbox) *terminal.Hub {
	s.termsMu.Lock()
	defer s.termsMu.Unlock()
	if t, ok := s.terms[sid]; ok {
		if t.sb == sb {
			return t.hub
		}
		// A new sandbox replaced one whose destroy hook has not run yet.
		s.closeLive(t, terminal.CloseDestroyed, "sandbox replaced")
	}
	select {
	case <-sb.Done():
		return nil
	default:
	}
	t := &liveTerminal{
		sb:   sb,
		hub:  terminal.NewHub(sb.Terminal(), s.opts.Hub),
		stop: make(chan struct{}),
	}
	s.terms[sid] = t
	go s.forwardActivity(sid, t)
	return t.hub
}

func (s *server) closeLive(t *liveTerminal, code int, reason string) {
	close(t.stop)
	t.hub.Close(code, reason)
}

// forwardActivity tells the Manager about terminal input, so a learner
// who types is never reaped as idle.
func (s *server) forwardActivity(sid string, t *liveTerminal) {
	tick := time.NewTicker(s.opts.touchEvery)
	defer tick.Stop()
	var seen time.Time
	for {
		select {
		case <-t.stop:
			return
		case <-t.hub.Done():
			return
		case <-tick.C:
			if last := t.hub.LastInput(); last.After(seen) {
				seen = last
				s.touched(sid, t)
			}
		}
	}
}

// sandboxDestroyed is the Manager's OnDestroy hook: it tells attached
// browsers why their terminal ends, before the pty goes away.
func (s *server) sandboxDestroyed(sid string, r sandbox.Reason) {
	s.termsMu.Lock()
	t, ok := s.terms[sid]
	if ok {
		// The hook runs after the Manager dropped the sandbox; if a
		// newer one already took its place, leave the newer hub alone.
		if cur, _, live := s.opts.Sandboxes.Get(sid); live && cur == t.sb {
			ok = false
		} else {
			delete(s.terms, sid)
		}
	}
	s.termsMu.Unlock()
	if !ok {
		return
	}
	code, reason := closeFor(r)
	s.closeLive(t, code, reason)
}

// closeFor maps why a sandbox ended to the websocket close the page shows.
func closeFor(r sandbox.Reason) (int, string) {
	switch r {
	case sandbox.ReasonIdle:
		return terminal.CloseIdle, "idle timeout"
	case sandbox.ReasonShellExited:
		return terminal.CloseShellExited, "shell exited"
	case sandbox.ReasonShutdown:
		return terminal.CloseShutdown, "server shutdown"
	case sandbox.ReasonLifetime:
		return terminal.CloseLifetime, "lifetime reached"
	case sandbox.ReasonAdmin:
		return terminal.CloseStopped, "stopped by an instructor"
	case sandbox.ReasonReset:
		return terminal.CloseDestroyed, "reset by its learner"
	default:
		return terminal.CloseDestroyed, "sandbox destroyed"
	}
}

// terminal attaches a websocket to the hub of the learner's sandbox:
// the owner's, from labd's own pages (routeTerminal).
func (s *server) terminal(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("sid")
	if !s.awaitStart(w, r, routeTerminal, sid) {
		return
	}
	g, ok := s.access(w, r, routeTerminal, sid, 0)
	if !ok {
		return
	}
	hub := s.hubFor(sid, g.sb)
	if hub == nil {
		s.refuse(w, r, routeTerminal, refusal{http.StatusNotFound, "No such sandbox",
			"The sandbox has ended. Reload the lab page to start a new one."})
		return
	}
	uo := terminal.UpgradeOptions{
		CheckOrigin: func(r *http.Request) bool { return s.sameOrigin(r, originWebsocket) },
	}
	if m := s.opts.Metrics; m != nil {
		uo.OnClose = m.TerminalClosed
	}
	conn, err := terminal.Upgrade(w, r, uo)
	if err != nil {
		// Upgrade has answered the request; a missing subprotocol is
		// worth a line in the log, a client that went away is not.
		if errors.Is(err, terminal.ErrOriginNotAllowed) || errors.Is(err, terminal.ErrNoSubprotocol) {
			s.log.Warn("terminal websocket refused", "sandbox", sid, "origin", r.Header.Get("Origin"), "client", clientAddr(r), "err", err)
		}
		return
	}
	if m := s.opts.Metrics; m != nil {
		defer m.TerminalAttached()()
	}
	if err := hub.Attach(r.Context(), conn); err != nil {
		s.log.Debug("terminal detached", "sandbox", sid, "err", err)
	}
}
