package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
)

// LearnerAccounts gives web learners their classroom registry accounts;
// *accounts.Store (registry/accounts) implements it.
type LearnerAccounts interface {
	// EnsureLearner returns the account's password, creating the account
	// with a random one first if needed.
	EnsureLearner(ctx context.Context, handle string) (string, error)
	// Rotate gives the account a new random password.
	Rotate(ctx context.Context, handle string) (string, error)
}

// handlePrefix starts every learner handle; the rest is hex, so a handle
// is always a valid account name and Docker Hub-like namespace.
const handlePrefix = "learner-"

// handle is the learner's registry user name: a keyed hash of the learner
// ID, stable across restarts (the secret persists) and unguessable from
// the cookie. 32 bits: a collision (two learners sharing an account)
// stays unlikely up to thousands of learners per server.
func (k keys) handle(learner string) string {
	m := hmac.New(sha256.New, k.handleKey)
	m.Write([]byte(learner))
	return handlePrefix + hex.EncodeToString(m.Sum(nil))[:8]
}

// registryBox is what the lab page's "Registry" box shows.
type registryBox struct {
	User     string
	Password string // "" when it cannot be shown (Problem says why)
	Problem  string
	Addr     string // the registry's own address for other tools; may be ""
	Lab      string // the lab to come back to after a new password
}

// learnerAccount returns the learner's handle and box (nil without a
// registry). A failure to read the account still gives the handle, so
// the sandbox and the grader use the right name.
func (s *server) learnerAccount(ctx context.Context, learner, lab string) (string, *registryBox) {
	if s.opts.Accounts == nil {
		return "", nil
	}
	h := s.keys.handle(learner)
	box := &registryBox{User: h, Addr: s.opts.RegistryAddr, Lab: lab}
	pw, err := s.opts.Accounts.EnsureLearner(ctx, h)
	if err != nil {
		s.log.Error("registry account", "user", h, "err", err)
		box.Problem = "labd could not read your registry password. Reload to try again; the server log has details."
		return h, box
	}
	box.Password = pw
	return h, box
}

// rotatePassword gives the learner's registry account a new password and
// sends the browser back to the lab page, which shows it.
func (s *server) rotatePassword(w http.ResponseWriter, r *http.Request) {
	if s.opts.Accounts == nil {
		s.notFound(w, r)
		return
	}
	// The cookie is SameSite=Lax, so other sites cannot post with it; the
	// origin check also stops same-site pages on other ports or hosts.
	if !formSameOrigin(r, s.opts.AllowedOrigins) {
		s.log.Warn("registry password change refused", "origin", r.Header.Get("Origin"), "referer", r.Header.Get("Referer"))
		s.errorPage(w, r, http.StatusForbidden, errorData{
			Title:   "Request refused",
			Message: "A new registry password can only be asked for from the lab page.",
		})
		return
	}
	learner := s.keys.learnerFromRequest(r)
	if learner == "" {
		s.errorPage(w, r, http.StatusForbidden, errorData{
			Title:   "Request refused",
			Message: "Open a lab first: your registry account comes with it.",
		})
		return
	}
	h := s.keys.handle(learner)
	_, err := s.opts.Accounts.EnsureLearner(r.Context(), h)
	if err == nil {
		_, err = s.opts.Accounts.Rotate(r.Context(), h)
	}
	if err != nil {
		s.log.Error("rotate registry password", "user", h, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, errorData{
			Title:   "Could not change the password",
			Message: "labd could not give your registry account a new password. The server log has details.",
		})
		return
	}
	s.log.Info("registry password rotated", "user", h)
	back := "/"
	if lab := r.PostFormValue("lab"); lab != "" {
		if _, err := s.opts.Catalog.Get(lab); err == nil {
			back = "/labs/" + url.PathEscape(lab) + "#registry"
		}
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// formSameOrigin is stricter than the websockets' sameOrigin: a
// state-changing POST must prove where it comes from, with Origin (sent
// by every current browser on POST) or, failing that, Referer.
func formSameOrigin(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		ref, err := url.Parse(r.Header.Get("Referer"))
		if err != nil || ref.Host == "" {
			return false
		}
		origin = ref.Scheme + "://" + ref.Host
	}
	return originAllowed(origin, r, allowed)
}
