package web

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/labd/labd/registry/accounts"
	"github.com/labd/labd/sandbox"
)

// newRegistryServer is a test server whose learners get accounts in a
// real store (SQLite in a temp dir).
func newRegistryServer(t *testing.T) (*testServer, *accounts.Store) {
	t.Helper()
	store, err := accounts.Open(context.Background(), filepath.Join(t.TempDir(), "labd.db"), accounts.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s := newTestServerIdle(t, "", 0, 0, func(o *Options) {
		o.Accounts = store
		o.RegistryAddr = "127.0.0.1:5999"
	})
	return s, store
}

var (
	userRe     = regexp.MustCompile(`class="registry-user">([^<]*)<`)
	passwordRe = regexp.MustCompile(`class="registry-password">([^<]*)<`)
)

// registryAccount opens the lab page and returns the user and password of
// its Registry box.
func registryAccount(t *testing.T, c *http.Client, base string) (user, password string) {
	t.Helper()
	resp, body := get(t, c, base+"/labs/hello-shell")
	if resp.StatusCode != 200 {
		t.Fatalf("lab page = %d:\n%s", resp.StatusCode, body)
	}
	u, p := userRe.FindStringSubmatch(body), passwordRe.FindStringSubmatch(body)
	if u == nil || p == nil {
		t.Fatalf("lab page has no registry user and password:\n%s", body)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("Cache-Control of a page with a password = %q, want no-store", cc)
	}
	return u[1], p[1]
}

// sandboxEnv runs echo $name in the sandbox of the learner's lab page.
func sandboxEnv(t *testing.T, s *testServer, c *http.Client, name string) string {
	t.Helper()
	sid := sandboxOf(t, c, s.URL)
	sb, _, ok := waitSandbox(t, s.mgr, sid)
	if !ok {
		t.Fatalf("sandbox %s not running after the lab page", sid)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	code, err := sb.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"sh", "-c", "echo $" + name}, Stdout: &out})
	if err != nil || code != 0 {
		t.Fatalf("echo $%s in the sandbox = %d, %v", name, code, err)
	}
	return strings.TrimSuffix(out.String(), "\n")
}

// TestRegistryAccount: the lab page shows the learner's account, whose
// password the registry accepts; the sandbox knows the user name; other
// learners get their own account.
func TestRegistryAccount(t *testing.T) {
	s, store := newRegistryServer(t)
	ctx := context.Background()
	a, b := s.client(t), s.client(t)

	userA, pwA := registryAccount(t, a, s.URL)
	if !regexp.MustCompile(`^learner-[0-9a-f]{16}$`).MatchString(userA) || accounts.ValidName(userA) != nil {
		t.Errorf("user %q is not learner-<16 hex> or not a valid account name", userA)
	}
	if role, err := store.Check(ctx, userA, pwA); err != nil || role != accounts.Learner {
		t.Errorf("Check(%s, page password) = %q, %v; want learner", userA, role, err)
	}
	if u, p := registryAccount(t, a, s.URL); u != userA || p != pwA {
		t.Errorf("reload shows %s/%s, want the same account %s/%s", u, p, userA, pwA)
	}
	if got := sandboxEnv(t, s, a, "LABD_USER"); got != userA {
		t.Errorf("LABD_USER in the sandbox = %q, want %q", got, userA)
	}
	// The handle is the same for the same learner whatever the server
	// instance (it derives from the persistent secret).
	if h := deriveKeys([]byte("0123456789abcdef0123456789abcdef")).handle(learnerOf(t, a, s.URL)); h != userA {
		t.Errorf("handle from the secret = %q, page shows %q", h, userA)
	}

	userB, pwB := registryAccount(t, b, s.URL)
	if userB == userA || pwB == pwA {
		t.Errorf("two learners got %s/%s and %s/%s, want different accounts", userA, pwA, userB, pwB)
	}
	if _, err := store.Check(ctx, userB, pwA); !errors.Is(err, accounts.ErrBadPassword) {
		t.Errorf("Check(B, A's password) = %v, want ErrBadPassword", err)
	}
	if got := sandboxEnv(t, s, b, "LABD_USER"); got != userB {
		t.Errorf("LABD_USER in B's sandbox = %q, want %q", got, userB)
	}
}

// TestRegistryRotate: "New password" from the page replaces the password;
// requests that do not come from the site change nothing.
func TestRegistryRotate(t *testing.T) {
	s, store := newRegistryServer(t)
	ctx := context.Background()
	c := s.client(t)
	user, pw := registryAccount(t, c, s.URL)

	post := func(c *http.Client, header http.Header) *http.Response {
		t.Helper()
		req, err := http.NewRequest("POST", s.URL+"/registry/password", strings.NewReader(url.Values{"lab": {"hello-shell"}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	refused := []struct {
		name   string
		client *http.Client
		header http.Header
	}{
		{"no origin or referer", c, nil},
		{"foreign origin", c, http.Header{"Origin": {"http://evil.example"}}},
		{"foreign origin, own referer", c, http.Header{"Origin": {"http://evil.example"}, "Referer": {s.URL + "/labs/hello-shell"}}},
		{"null origin", c, http.Header{"Origin": {"null"}}},
		{"foreign referer", c, http.Header{"Referer": {"http://evil.example/labs/hello-shell"}}},
		{"no learner cookie", s.client(t), http.Header{"Origin": {s.URL}}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if resp := post(tc.client, tc.header); resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST = %d, want 403", resp.StatusCode)
			}
			if _, err := store.Check(ctx, user, pw); err != nil {
				t.Errorf("password changed by a refused request: %v", err)
			}
		})
	}

	for i, h := range []http.Header{
		{"Origin": {s.URL}},
		{"Referer": {s.URL + "/labs/hello-shell"}}, // a browser that sends no Origin
	} {
		resp := post(c, h)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/labs/hello-shell#registry" {
			t.Fatalf("POST %d = %d to %q, want 303 to /labs/hello-shell#registry", i, resp.StatusCode, resp.Header.Get("Location"))
		}
		u, newPW := registryAccount(t, c, s.URL)
		if u != user || newPW == pw {
			t.Fatalf("after New password the page shows %s/%s, want %s with a password other than %s", u, newPW, user, pw)
		}
		if _, err := store.Check(ctx, user, pw); !errors.Is(err, accounts.ErrBadPassword) {
			t.Errorf("old password after rotation: %v, want ErrBadPassword", err)
		}
		if _, err := store.Check(ctx, user, newPW); err != nil {
			t.Errorf("new password: %v", err)
		}
		pw = newPW
	}
}

// TestNoRegistry: without accounts the page has no Registry box, the
// sandbox no LABD_USER, and the rotate endpoint does not exist.
func TestNoRegistry(t *testing.T) {
	s := newTestServer(t, "")
	c := s.client(t)
	resp, body := get(t, c, s.URL+"/labs/hello-shell")
	if resp.StatusCode != 200 || strings.Contains(body, `id="registry"`) {
		t.Errorf("lab page without registry = %d, Registry box present: %v", resp.StatusCode, strings.Contains(body, `id="registry"`))
	}
	if got := sandboxEnv(t, s, c, "LABD_USER"); got != "" {
		t.Errorf("LABD_USER without registry = %q, want empty", got)
	}
	req, _ := http.NewRequest("POST", s.URL+"/registry/password", nil)
	req.Header.Set("Origin", s.URL)
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusNotFound {
		t.Errorf("POST /registry/password without registry = %d, want 404", r.StatusCode)
	}
}
