package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/web/terminal"
)

// A learner hears of their sandbox's end before it comes: an idle warning
// with an "I'm still here" button (POST /sandboxes/{sid}/touch), or the
// server's maximum lifetime, as a standing notice of the terminal's hub
// (every tab, also one opened later). Activity withdraws an idle warning.

// sandboxWarned is the Manager's OnWarn hook.
func (s *server) sandboxWarned(sid string, w sandbox.Warning) {
	s.termsMu.Lock()
	t, ok := s.terms[sid]
	s.termsMu.Unlock()
	if !ok {
		return
	}
	n := terminal.Notice{Kind: terminal.NoticeWarning, Ends: w.At.UnixMilli()}
	mins := max(1, int(time.Until(w.At).Round(time.Minute).Minutes()))
	switch w.Reason {
	case sandbox.ReasonIdle:
		n.Action = "still-here"
		n.Message = fmt.Sprintf("Your sandbox has been idle and stops in about %s. Your files are kept.", plural(mins, "minute"))
		t.idleWarned.Store(true)
	case sandbox.ReasonLifetime:
		n.Message = fmt.Sprintf("Your sandbox reaches this server's time limit and stops in about %s. Your files are kept; reload the page afterwards for a new one.", plural(mins, "minute"))
		t.idleWarned.Store(false)
	default:
		return
	}
	t.hub.Notify(n)
}

// touched is activity on sid: the Manager puts the idle end off, and a
// standing idle warning goes.
func (s *server) touched(sid string, t *liveTerminal) {
	s.opts.Sandboxes.Touch(sid)
	if t != nil && t.idleWarned.CompareAndSwap(true, false) {
		t.hub.Notify(terminal.Notice{Kind: terminal.NoticeWarning})
	}
}

// touch is the idle warning's "I'm still here".
func (s *server) touch(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("sid")
	if _, ok := s.access(w, r, routeTouch, sid, 0); !ok {
		return
	}
	s.termsMu.Lock()
	t := s.terms[sid]
	s.termsMu.Unlock()
	s.touched(sid, t)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// resetSandbox is "Reset my sandbox": the learner's sandbox of the lab
// ends and a fresh one (shell and engine: no images, containers or
// volumes) starts on the next page load, over the same files unless the
// learner chose keep=no.
func (s *server) resetSandbox(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.opts.Catalog.Get(id); err != nil {
		s.labError(w, r, id, err)
		return
	}
	g, ok := s.access(w, r, routeReset, "", 0)
	if !ok {
		return
	}
	sid := s.keys.sandboxID(g.learner, id)
	keep := r.PostFormValue("keep") != "no"
	if err := s.opts.Sandboxes.Reset(r.Context(), sid, keep); err != nil {
		status, msg := http.StatusInternalServerError, "labd could not reset your sandbox. The server log has details."
		if errors.Is(err, sandbox.ErrBusy) {
			status, msg = http.StatusConflict, "Your sandbox is still starting: wait for the prompt, then try again."
		} else {
			s.log.Error("reset sandbox", "lab", id, "sandbox", sid, "err", err)
		}
		s.errorPage(w, r, status, errorData{Title: "Could not reset your sandbox", Message: msg})
		return
	}
	s.log.Info("sandbox reset by its learner", "lab", id, "sandbox", sid, "kept_workspace", keep)
	http.Redirect(w, r, "/labs/"+url.PathEscape(id), http.StatusSeeOther)
}
