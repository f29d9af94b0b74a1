package auth

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/labd/labd/registry/accounts"
)

const cryptoSHA256 = crypto.SHA256

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Checker verifies credentials (accounts.Store does). Stamp fingerprints
// an account's current password, which refresh tokens are bound to.
type Checker interface {
	Check(ctx context.Context, name, password string) (accounts.Role, error)
	Stamp(ctx context.Context, name string) (accounts.Role, string, error)
}

// DefaultRefreshTTL is how long a refresh token (Docker's identity token)
// lives when Handler.RefreshTTL is zero.
const DefaultRefreshTTL = 30 * 24 * time.Hour

// Handler serves the token endpoint.
//
//   - GET  ?service=S&scope=...&scope=...&account=A with optional Basic
//     credentials (Docker, containerd, go-containerregistry, crane).
//   - POST form grant_type=password&username=&password=&service=&scope=
//     (the OAuth2 flavour some clients try first).
//   - POST form grant_type=refresh_token&refresh_token=&service=&scope=
//     (Docker's identity token, dockerd's and go-containerregistry's
//     OAuth2 refresh).
//
// Answers {"token","access_token","expires_in","issued_at"}; with
// credentials and offline_token=true (GET, what `docker login` asks) or
// access_type=offline (POST) also "refresh_token", a token bound to the
// account's current password that dockerd hands the CLI as its identity
// token, so ~/.docker/config.json keeps that instead of the password.
// Bad credentials get 401 with Docker Hub's body, so Docker prints
// "unauthorized: incorrect username or password".
type Handler struct {
	Issuer     *Issuer
	Accounts   Checker
	Policy     Policy
	Logger     *slog.Logger
	RefreshTTL time.Duration    // DefaultRefreshTTL
	Now        func() time.Time // defaults to time.Now
}

type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	var user, pass, service, refresh string
	var hasCreds, offline bool
	var scopes []string
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		service, scopes = q.Get("service"), q["scope"]
		offline = q.Get("offline_token") == "true"
		user, pass, hasCreds = r.BasicAuth()
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "malformed form")
			return
		}
		service, scopes = r.PostForm.Get("service"), r.PostForm["scope"]
		offline = r.PostForm.Get("access_type") == "offline"
		switch r.PostForm.Get("grant_type") {
		case "password":
			user, pass, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
		case "refresh_token":
			refresh = r.PostForm.Get("refresh_token")
		default:
			writeError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be password or refresh_token")
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, "unsupported", "method not allowed")
		return
	}
	if service != "" && service != h.Issuer.Service {
		writeError(w, http.StatusBadRequest, "invalid_request", "unknown service "+service)
		return
	}

	var role accounts.Role
	switch {
	case refresh != "":
		var stamp string
		var err error
		user, stamp, err = h.Issuer.VerifyRefresh(refresh, now)
		var current string
		if err == nil {
			role, current, err = h.Accounts.Stamp(r.Context(), user)
		}
		if errors.Is(err, ErrBadRefresh) || errors.Is(err, accounts.ErrBadPassword) || err == nil && current != stamp {
			h.Logger.Info("registry refresh refused", "account", user, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "identity token expired or revoked: log in again")
			return
		}
		if err != nil {
			h.Logger.Error("registry token", "account", user, "err", err)
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "internal error")
			return
		}
		// With access_type=offline the answer repeats the same refresh
		// token: it lives until it expires or the password changes.
	case hasCreds:
		var err error
		role, err = h.Accounts.Check(r.Context(), user, pass)
		if errors.Is(err, accounts.ErrBadPassword) {
			h.Logger.Info("registry login failed", "account", user, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "incorrect username or password")
			return
		}
		if err != nil {
			h.Logger.Error("registry token", "account", user, "err", err)
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "internal error")
			return
		}
	default:
		user = ""
	}

	var access []*token.ResourceActions
	// Clients send scopes as repeated parameters; some join them with spaces.
	for _, raw := range scopes {
		for _, one := range strings.Fields(raw) {
			s, err := ParseScope(one)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
				return
			}
			got, err := h.Policy.Grant(r.Context(), user, role, s)
			if err != nil {
				h.Logger.Error("registry token", "account", user, "err", err)
				writeError(w, http.StatusInternalServerError, "UNKNOWN", "internal error")
				return
			}
			if len(got) > 0 {
				access = append(access, &token.ResourceActions{Type: s.Type, Name: s.Name, Actions: got})
			}
		}
	}

	tok, err := h.Issuer.Issue(user, access, now)
	if err != nil {
		h.Logger.Error("registry token", "account", user, "err", err)
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "internal error")
		return
	}
	resp := tokenResponse{
		Token: tok, AccessToken: tok,
		ExpiresIn: int(h.Issuer.TTL / time.Second),
		IssuedAt:  now.UTC().Format(time.RFC3339),
	}
	if offline && user != "" {
		resp.RefreshToken = refresh
		if refresh == "" {
			if resp.RefreshToken, err = h.refreshToken(r.Context(), user, now); err != nil {
				h.Logger.Error("registry token", "account", user, "err", err)
				writeError(w, http.StatusInternalServerError, "UNKNOWN", "internal error")
				return
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(resp)
}

func (h *Handler) refreshToken(ctx context.Context, user string, now time.Time) (string, error) {
	_, stamp, err := h.Accounts.Stamp(ctx, user)
	if err != nil {
		return "", err
	}
	ttl := h.RefreshTTL
	if ttl == 0 {
		ttl = DefaultRefreshTTL
	}
	return h.Issuer.IssueRefresh(user, stamp, now, ttl)
}

// writeError answers in both shapes clients read: Docker's client turns
// "details" into "unauthorized: <details>"; OAuth2 and distribution
// clients read "error"/"errors".
func writeError(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="labd-registry"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"details":           msg,
		"error":             strings.ToLower(code),
		"error_description": msg,
		"errors":            []map[string]string{{"code": code, "message": msg}},
	})
}
