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

// Checker verifies credentials (accounts.Store does).
type Checker interface {
	Check(ctx context.Context, name, password string) (accounts.Role, error)
}

// Handler serves the token endpoint.
//
//   - GET  ?service=S&scope=...&scope=...&account=A with optional Basic
//     credentials (Docker, containerd, go-containerregistry, crane).
//   - POST form grant_type=password&username=&password=&service=&scope=
//     (the OAuth2 flavour some clients try first).
//
// Answers {"token","access_token","expires_in","issued_at"}; bad
// credentials get 401 with Docker Hub's body, so Docker prints
// "unauthorized: incorrect username or password". Offline (refresh)
// tokens are not issued: clients then keep using the password.
type Handler struct {
	Issuer   *Issuer
	Accounts Checker
	Policy   Policy
	Logger   *slog.Logger
	Now      func() time.Time // defaults to time.Now
}

type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var user, pass, service string
	var hasCreds bool
	var scopes []string
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		service, scopes = q.Get("service"), q["scope"]
		user, pass, hasCreds = r.BasicAuth()
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "malformed form")
			return
		}
		service, scopes = r.PostForm.Get("service"), r.PostForm["scope"]
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			writeError(w, http.StatusBadRequest, "unsupported_grant_type", "only grant_type=password is supported")
			return
		}
		user, pass, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
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
	if hasCreds {
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
	} else {
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

	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	tok, err := h.Issuer.Issue(user, access, now)
	if err != nil {
		h.Logger.Error("registry token", "account", user, "err", err)
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(tokenResponse{
		Token: tok, AccessToken: tok,
		ExpiresIn: int(h.Issuer.TTL / time.Second),
		IssuedAt:  now.UTC().Format(time.RFC3339),
	})
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
