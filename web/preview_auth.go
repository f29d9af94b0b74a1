package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Proofs that a request to a port preview comes from the sandbox's owner
// when labd's own cookie cannot say so (docs/preview.md):
//
//   - path cap: in the URL of the path-based preview
//     (/sandboxes/{sid}/preview/{port}/{cap}/...), because the preview's
//     documents have an opaque origin (CSP sandbox) and browsers send no
//     SameSite cookie with their subresource requests;
//   - auth token: in the one link that opens a host-based preview
//     ({port}-{sid}.{domain}/.labd/auth?token=), single use, valid 60 s;
//   - host cookie: set by that link on the preview host alone.
//
// Each is an HMAC over its purpose, the sandbox, the port, the owner and an
// expiry, with a key derived from the server secret for previews only; the
// owner is not in the value but taken from the sandbox when checking.
const (
	capTTL        = 4 * time.Hour
	authTokenTTL  = 60 * time.Second
	hostCookieTTL = 12 * time.Hour

	// previewCookie is the host-based preview's own session cookie.
	previewCookie = "labd_preview"
)

// labdCookies are labd's own cookies: never forwarded to a learner's app,
// which may not set them either.
var labdCookies = []string{cookieName, instructorCookie, previewCookie}

func isLabdCookie(name string) bool {
	name = strings.TrimSpace(name)
	for _, c := range labdCookies {
		if name == c {
			return true
		}
	}
	return false
}

var (
	errProofInvalid = errors.New("not a valid preview proof")
	errProofExpired = errors.New("the preview link has expired")
	errProofUsed    = errors.New("the preview link was already used")
)

// previewSigner makes and checks the proofs. used remembers the nonces of
// spent auth tokens until they expire (single use).
type previewSigner struct {
	key  []byte
	now  func() time.Time
	mu   sync.Mutex
	used map[string]time.Time
}

func newPreviewSigner(secret []byte) *previewSigner {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("labd/preview"))
	return &previewSigner{key: m.Sum(nil), now: time.Now, used: map[string]time.Time{}}
}

var b64 = base64.RawURLEncoding

func (p *previewSigner) mac(purpose, sid string, port int, owner string, exp int64, nonce string) string {
	m := hmac.New(sha256.New, p.key)
	for _, f := range []string{purpose, sid, strconv.Itoa(port), owner, strconv.FormatInt(exp, 10), nonce} {
		m.Write([]byte(f))
		m.Write([]byte{0})
	}
	return b64.EncodeToString(m.Sum(nil)[:16])
}

// sign returns "<exp>.<mac>" (nonce "") or "<exp>.<nonce>.<mac>".
func (p *previewSigner) sign(purpose, sid string, port int, owner string, ttl time.Duration, nonce string) string {
	exp := p.now().Add(ttl).Unix()
	v := strconv.FormatInt(exp, 10) + "."
	if nonce != "" {
		v += nonce + "."
	}
	return v + p.mac(purpose, sid, port, owner, exp, nonce)
}

// verify checks a value made by sign and returns its nonce.
func (p *previewSigner) verify(purpose, value, sid string, port int, owner string, withNonce bool) (string, error) {
	parts := strings.Split(value, ".")
	if withNonce && len(parts) != 3 || !withNonce && len(parts) != 2 {
		return "", errProofInvalid
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || strconv.FormatInt(exp, 10) != parts[0] {
		return "", errProofInvalid
	}
	nonce := ""
	if withNonce {
		nonce = parts[1]
	}
	want := p.mac(purpose, sid, port, owner, exp, nonce)
	if !hmac.Equal([]byte(parts[len(parts)-1]), []byte(want)) {
		return "", errProofInvalid
	}
	if p.now().Unix() >= exp {
		return "", errProofExpired
	}
	return nonce, nil
}

// pathCap is the capability in a path-based preview's URL.
func (p *previewSigner) pathCap(sid string, port int, owner string) string {
	return p.sign("path", sid, port, owner, capTTL, "")
}

func (p *previewSigner) checkPathCap(c, sid string, port int, owner string) error {
	_, err := p.verify("path", c, sid, port, owner, false)
	return err
}

// authToken is the single-use token of the link that opens a host-based
// preview.
func (p *previewSigner) authToken(sid string, port int, owner string) string {
	var n [12]byte
	rand.Read(n[:])
	return p.sign("auth", sid, port, owner, authTokenTTL, b64.EncodeToString(n[:]))
}

// useAuthToken checks the token and spends it.
func (p *previewSigner) useAuthToken(tok, sid string, port int, owner string) error {
	nonce, err := p.verify("auth", tok, sid, port, owner, true)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for n, exp := range p.used {
		if now.After(exp) {
			delete(p.used, n)
		}
	}
	if _, ok := p.used[nonce]; ok {
		return errProofUsed
	}
	// Kept past the token's own expiry, which verify already enforces.
	p.used[nonce] = now.Add(authTokenTTL + time.Second)
	return nil
}

func (p *previewSigner) hostCookie(sid string, port int, owner string) string {
	return p.sign("host", sid, port, owner, hostCookieTTL, "")
}

// hostCookieOK is true when any labd_preview cookie of the request is valid
// for this sandbox's port: a cookie tossed in from a sibling host (Domain=)
// must not shadow the real one.
func (p *previewSigner) hostCookieOK(r *http.Request, sid string, port int, owner string) bool {
	for _, c := range r.CookiesNamed(previewCookie) {
		if _, err := p.verify("host", c.Value, sid, port, owner, false); err == nil {
			return true
		}
	}
	return false
}
