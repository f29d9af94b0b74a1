package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
)

// cookieName holds the learner's anonymous identity: the learner ID "."
// hex(HMAC-SHA256(cookie key, id)).
const cookieName = "labd_learner"

// cookieMaxAge keeps the identity (and so the learner's sandboxes) across
// browser restarts for a year.
const cookieMaxAge = 365 * 24 * 60 * 60

// keys are derived from the one configured secret so that a value signed
// for one purpose can never be replayed for another.
type keys struct {
	cookie    []byte
	sandbox   []byte
	handleKey []byte // registry user names (registry.go)
}

func deriveKeys(secret []byte) keys {
	d := func(purpose string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("labd/" + purpose))
		return m.Sum(nil)
	}
	return keys{cookie: d("cookie"), sandbox: d("sandbox"), handleKey: d("handle")}
}

func (k keys) sign(id string) string {
	m := hmac.New(sha256.New, k.cookie)
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}

// learnerFromRequest returns the learner ID from a valid cookie, or "" when
// the cookie is missing, malformed or its signature does not match.
func (k keys) learnerFromRequest(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	id, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !validLearnerID(id) {
		return ""
	}
	if !hmac.Equal([]byte(sig), []byte(k.sign(id))) {
		return ""
	}
	return id
}

// Learner IDs are 26 characters of base32 (crypto/rand.Text: 130 random
// bits). Cookies issued before registry handles grew to 64 bits hold 32
// hex characters instead, and stay valid: the form tells which handle
// scheme the learner's registry account may have (registry.go).
const (
	learnerIDLen       = 26
	legacyLearnerIDLen = 32
)

func validLearnerID(id string) bool {
	if len(id) == learnerIDLen {
		for i := 0; i < len(id); i++ {
			if c := id[i]; !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
				return false
			}
		}
		return true
	}
	return isLegacyLearner(id)
}

// isLegacyLearner is true for an ID issued before 64-bit registry handles.
func isLegacyLearner(id string) bool { return len(id) == legacyLearnerIDLen && isHex(id) }

// ensureLearner returns the request's learner, issuing a new identity
// cookie when there is no valid one (first visit or tampered cookie).
func (k keys) ensureLearner(w http.ResponseWriter, r *http.Request) string {
	if id := k.learnerFromRequest(r); id != "" {
		return id
	}
	id := newLearnerID()
	k.issueLearner(w, r, id)
	return id
}

// newLearnerID is a fresh learner identity (130 random bits).
func newLearnerID() string { return rand.Text() }

// issueLearner sets the identity cookie of learner id.
func (k keys) issueLearner(w http.ResponseWriter, r *http.Request, id string) {
	setCookie(w, r, &http.Cookie{
		Name:     cookieName,
		Value:    id + "." + k.sign(id),
		Path:     "/",
		MaxAge:   cookieMaxAge,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// sandboxID names the learner's sandbox for a lab. It is a keyed hash so
// that IDs cannot be guessed from learner and lab, and stable so that a
// reload finds the same sandbox.
func (k keys) sandboxID(learner, lab string) string {
	m := hmac.New(sha256.New, k.sandbox)
	m.Write([]byte(learner + "/" + lab))
	return sandboxIDPrefix + hex.EncodeToString(m.Sum(nil))[:16]
}

const sandboxIDPrefix = "sb-"

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
