package web

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/labd/labd/registry/accounts"
)

// TestHandleForm: 64 bits of hex, a valid account name, stable for a
// learner under a secret (a restart, or a change of code, must not move
// anyone's account), different across learners and secrets.
func TestHandleForm(t *testing.T) {
	k := deriveKeys(testSecret)
	re := regexp.MustCompile(`^learner-[0-9a-f]{16}$`)
	seen := map[string]string{}
	for range 20000 {
		l := rand.Text()
		h := k.handle(l)
		if !re.MatchString(h) || accounts.ValidName(h) != nil {
			t.Fatalf("handle(%s) = %q: want learner-<16 hex>, a valid account name", l, h)
		}
		if h != k.handle(l) {
			t.Fatalf("handle(%s) not stable", l)
		}
		if prev, ok := seen[h]; ok {
			t.Fatalf("learners %s and %s share the handle %s", prev, l, h)
		}
		seen[h] = l
	}
	// Pinned: the accounts of every learner hang on these.
	golden := []struct{ learner, handle, legacy string }{
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "learner-9701bd9067785447", ""},
		{"0123456789abcdef0123456789abcdef", "learner-52e9780ce16ed7c6", "learner-52e9780c"},
	}
	for _, g := range golden {
		if h := k.handle(g.learner); h != g.handle {
			t.Errorf("handle(%s) = %s, want %s", g.learner, h, g.handle)
		}
		if g.legacy != "" && k.legacyHandle(g.learner) != g.legacy {
			t.Errorf("legacyHandle(%s) = %s, want %s (labd's handle before 64 bits)", g.learner, k.legacyHandle(g.learner), g.legacy)
		}
	}
	if deriveKeys([]byte("another secret, another server.")).handle(golden[0].learner) == golden[0].handle {
		t.Error("the handle does not depend on the secret")
	}
}

// TestLearnerIDForm: new learners get 26 characters of base32; cookies of
// learners from before (32 hex) stay valid.
func TestLearnerIDForm(t *testing.T) {
	for _, tt := range []struct {
		id     string
		valid  bool
		legacy bool
	}{
		{rand.Text(), true, false},
		{"0123456789abcdef0123456789abcdef", true, true},
		{"0123456789ABCDEF0123456789ABCDEF", false, false},
		{"ABCDEFGHIJKLMNOPQRSTUVWXY1", false, false}, // 1 is not base32
		{"abcdefghijklmnopqrstuvwxyz", false, false},
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZ2", false, false},
		{"", false, false},
	} {
		if validLearnerID(tt.id) != tt.valid || isLegacyLearner(tt.id) != tt.legacy {
			t.Errorf("%q: valid %v legacy %v, want %v %v", tt.id, validLearnerID(tt.id), isLegacyLearner(tt.id), tt.valid, tt.legacy)
		}
	}
	k := deriveKeys(testSecret)
	for _, id := range []string{rand.Text(), "0123456789abcdef0123456789abcdef"} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: cookieName, Value: id + "." + k.sign(id)})
		if got := k.learnerFromRequest(r); got != id {
			t.Errorf("cookie of %s read as %q", id, got)
		}
	}
	w := &headerRecorder{h: http.Header{}}
	r, _ := http.NewRequest("GET", "/", nil)
	id := k.ensureLearner(w, r)
	if len(id) != learnerIDLen || !validLearnerID(id) || isLegacyLearner(id) {
		t.Errorf("new learner ID %q: want %d characters of base32", id, learnerIDLen)
	}
}

type headerRecorder struct{ h http.Header }

func (w *headerRecorder) Header() http.Header         { return w.h }
func (w *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (w *headerRecorder) WriteHeader(int)             {}

func openAccounts(t *testing.T) *accounts.Store {
	t.Helper()
	store, err := accounts.Open(context.Background(), filepath.Join(t.TempDir(), "labd.db"), accounts.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// TestHandleOf: who keeps a 32-bit handle. Only a learner whose cookie
// predates 64-bit handles, and only while their old account exists and
// no new one does; a new learner never lands on an old account, even one
// named as their old-style hash would be.
func TestHandleOf(t *testing.T) {
	ctx := context.Background()
	k := deriveKeys(testSecret)
	const legacy = "0123456789abcdef0123456789abcdef"
	fresh := rand.Text()
	tests := []struct {
		name    string
		learner string
		setup   func(s *accounts.Store) error
		want    string
	}{
		{"new learner", fresh, nil, k.handle(fresh)},
		{"new learner, an old account of their old-style name", fresh, func(s *accounts.Store) error {
			_, err := s.EnsureLearner(ctx, k.legacyHandle(fresh))
			return err
		}, k.handle(fresh)},
		{"old learner without an account", legacy, nil, k.handle(legacy)},
		{"old learner with an account", legacy, func(s *accounts.Store) error {
			_, err := s.EnsureLearner(ctx, k.legacyHandle(legacy))
			return err
		}, k.legacyHandle(legacy)},
		{"old learner whose own password is set", legacy, func(s *accounts.Store) error {
			return s.Add(ctx, k.legacyHandle(legacy), "chosen-by-me", accounts.Learner)
		}, k.legacyHandle(legacy)},
		{"old learner with both", legacy, func(s *accounts.Store) error {
			if _, err := s.EnsureLearner(ctx, k.legacyHandle(legacy)); err != nil {
				return err
			}
			_, err := s.EnsureLearner(ctx, k.handle(legacy))
			return err
		}, k.handle(legacy)},
		{"old name taken by an instructor", legacy, func(s *accounts.Store) error {
			return s.Add(ctx, k.legacyHandle(legacy), "instructor-pw", accounts.Instructor)
		}, k.handle(legacy)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := openAccounts(t)
			if tt.setup != nil {
				if err := tt.setup(store); err != nil {
					t.Fatal(err)
				}
			}
			for range 2 { // and again: stable
				if got, err := handleOf(ctx, k, store, tt.learner); err != nil || got != tt.want {
					t.Fatalf("handleOf = %q, %v; want %q", got, err, tt.want)
				}
			}
		})
	}
	if got, err := handleOf(ctx, k, nil, legacy); err != nil || got != k.handle(legacy) {
		t.Errorf("without a registry: %q, %v", got, err)
	}
}

// TestRegistryLegacyAccount: a learner who had an account before 64-bit
// handles comes back with their old cookie and finds the same account and
// password on the lab page and in their shell; after a
// new password it is still that account.
func TestRegistryLegacyAccount(t *testing.T) {
	s, store := newRegistryServer(t)
	ctx := context.Background()
	k := deriveKeys([]byte("0123456789abcdef0123456789abcdef")) // newRegistryServer's secret
	const id = "00112233445566778899aabbccddeeff"
	old := k.legacyHandle(id)
	pw, err := store.EnsureLearner(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	c := s.client(t)
	u, _ := url.Parse(s.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: id + "." + k.sign(id), Path: "/"}})

	user, shown := registryAccount(t, c, s.URL)
	if user != old || shown != pw {
		t.Fatalf("lab page shows %s/%s, want the learner's existing account %s/%s", user, shown, old, pw)
	}
	if learnerOf(t, c, s.URL) != id {
		t.Fatal("the old cookie was replaced")
	}
	if got := sandboxEnv(t, s, c, "LABD_USER"); got != old {
		t.Errorf("LABD_USER = %q, want %q", got, old)
	}
	if role, _ := store.Role(ctx, k.handle(id)); role != "" {
		t.Errorf("a second account %s was made for the learner", k.handle(id))
	}
	req, _ := http.NewRequest("POST", s.URL+"/registry/password", strings.NewReader("lab=hello-shell"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.URL)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("new password: %d", resp.StatusCode)
	}
	user, pw2 := registryAccount(t, c, s.URL)
	if role, err := store.Check(ctx, old, pw2); user != old || pw2 == pw || err != nil || role != accounts.Learner {
		t.Errorf("after a new password: %s/%s (%v), want %s with a new password", user, pw2, err, old)
	}

	// A newcomer gets a 64-bit name.
	nu, _ := registryAccount(t, s.client(t), s.URL)
	if !regexp.MustCompile(`^learner-[0-9a-f]{16}$`).MatchString(nu) {
		t.Errorf("newcomer's user %q, want learner-<16 hex>", nu)
	}
}
