package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/labd/labd/registry/accounts"
)

// Test accounts: two learners and an instructor.
const (
	alicePW   = "alice-password-1"
	bobPW     = "bob-password-123"
	teacherPW = "teacher-password"
)

type testEnv struct {
	t     *testing.T
	data  string
	store *accounts.Store
	reg   *Registry
	opts  Options
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newEnv starts a registry on 127.0.0.1:<free port> in a fresh data
// directory with the test accounts; mod may change the options.
func newEnv(t *testing.T, mod func(*Options)) *testEnv {
	t.Helper()
	data := t.TempDir()
	store, err := accounts.Open(context.Background(), filepath.Join(data, "labd.db"), accounts.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	for _, a := range []struct {
		name, pw string
		role     accounts.Role
	}{
		{"alice", alicePW, accounts.Learner},
		{"bob", bobPW, accounts.Learner},
		{"teacher", teacherPW, accounts.Instructor},
	} {
		if err := store.Add(ctx, a.name, a.pw, a.role); err != nil {
			t.Fatal(err)
		}
	}
	e := &testEnv{t: t, data: data, store: store}
	e.opts = Options{
		Dir:        filepath.Join(data, "registry"),
		Addr:       "127.0.0.1:0",
		Accounts:   store,
		GCInterval: -1,
		Logger:     testLogger(t),
	}
	if mod != nil {
		mod(&e.opts)
	}
	e.start()
	return e
}

func (e *testEnv) start() {
	e.t.Helper()
	reg, err := New(e.opts)
	if err != nil {
		e.t.Fatalf("New() = %v", err)
	}
	e.reg = reg
	e.opts.Addr = reg.Addr() // a restart comes back on the same port
	e.t.Cleanup(func() { e.stop() })
}

func (e *testEnv) stop() {
	if e.reg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.reg.Close(ctx); err != nil {
		e.t.Errorf("Close() = %v", err)
	}
	e.reg = nil
}

func (e *testEnv) url(path string) string { return "http://" + e.opts.Addr + path }

// token asks the token endpoint for scopes; user "" is anonymous.
// getToken asks the token endpoint with query q, as user (basic auth) when
// user is not empty.
func (e *testEnv) getToken(q url.Values, user, pw string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url(TokenPath+"?"+q.Encode()), nil)
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func (e *testEnv) token(user, pw string, scopes ...string) (status int, claims map[string]any) {
	e.t.Helper()
	q := url.Values{"service": {DefaultService}, "scope": scopes}
	if user != "" {
		q.Set("account", user)
	}
	resp := e.getToken(q, user, pw)
	defer resp.Body.Close()
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		e.t.Fatal(err)
	}
	if body.Token == "" || body.Token != body.AccessToken || body.ExpiresIn <= 0 {
		e.t.Fatalf("token response = %+v", body)
	}
	parts := strings.Split(body.Token, ".")
	if len(parts) != 3 {
		e.t.Fatalf("token %q is not a compact JWT", body.Token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		e.t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		e.t.Fatal(err)
	}
	claims["_raw"] = body.Token
	return resp.StatusCode, claims
}
