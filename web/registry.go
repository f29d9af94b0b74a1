package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"

	"github.com/labd/labd/registry/accounts"
)

// LearnerAccounts gives web learners their classroom registry accounts;
// *accounts.Store (registry/accounts) implements it.
type LearnerAccounts interface {
	// EnsureLearner returns the account's password, creating the account
	// with a random one first if needed.
	EnsureLearner(ctx context.Context, handle string) (string, error)
	// Rotate gives the account a new random password.
	Rotate(ctx context.Context, handle string) (string, error)
	// Role is the account's role, "" when there is no such account.
	Role(ctx context.Context, name string) (accounts.Role, error)
}

// handlePrefix starts every learner handle; the rest is hex, so a handle
// is always a valid account name and Docker Hub-like namespace.
const handlePrefix = "learner-"

// handle is the learner's registry user name: a keyed hash of the learner
// ID, stable across restarts (the secret persists) and unguessable from
// the cookie. 64 bits: two of a million learners share a name with a
// probability below 1e-7.
func (k keys) handle(learner string) string {
	return handlePrefix + k.handleHex(learner)[:16]
}

// legacyHandle is the 32-bit handle of labd before 64-bit handles, which
// learners who already had an account keep (handleOf).
func (k keys) legacyHandle(learner string) string {
	return handlePrefix + k.handleHex(learner)[:8]
}

func (k keys) handleHex(learner string) string {
	m := hmac.New(sha256.New, k.handleKey)
	m.Write([]byte(learner))
	return hex.EncodeToString(m.Sum(nil))
}

// handleOf decides the learner's registry user name. Learners with a
// current ID (session.go) always get the 64-bit handle. A learner whose
// cookie predates it keeps the 32-bit handle when a learner account of
// that name exists and none of the new name does, so their account,
// password and pushed repositories go on working; otherwise they get the
// new handle too. The ID's form, not the store, tells old learners from
// new ones: a new learner whose old-style hash happens to equal an
// existing account's name never reaches that account. A lookup error
// gives the likelier name and the error.
func handleOf(ctx context.Context, k keys, acc LearnerAccounts, learner string) (string, error) {
	h := k.handle(learner)
	if acc == nil || !isLegacyLearner(learner) {
		return h, nil
	}
	old := k.legacyHandle(learner)
	role, err := acc.Role(ctx, h)
	if err != nil {
		return old, err
	}
	if role != "" {
		return h, nil
	}
	if role, err = acc.Role(ctx, old); err != nil {
		return old, err
	}
	if role == accounts.Learner {
		return old, nil
	}
	return h, nil
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
	h, err := handleOf(ctx, s.keys, s.opts.Accounts, learner)
	box := &registryBox{User: h, Addr: s.opts.RegistryAddr, Lab: lab}
	if err != nil {
		s.log.Error("registry account", "user", h, "err", err)
		box.Problem = "labd could not read your registry account. Reload to try again; the server log has details."
		return h, box
	}
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
	// access rule's Origin check also stops same-site pages on other ports
	// or hosts (a learner's preview host).
	g, ok := s.access(w, r, routeRegistry, "", 0)
	if !ok {
		return
	}
	h, err := handleOf(r.Context(), s.keys, s.opts.Accounts, g.learner)
	if err == nil {
		_, err = s.opts.Accounts.EnsureLearner(r.Context(), h)
	}
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
