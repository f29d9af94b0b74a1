package accounts

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"alice": true, "a1": true, "al.ice": true, "al_ice-2": true, "a": false, "Alice": false,
		"al..ice": false, "-alice": false, "alice-": false, "library": false, "al/ice": false,
		"abcdefghijabcdefghijabcdefghij": true, "abcdefghijabcdefghijabcdefghijk": false, "": false,
	} {
		if err := ValidName(name); (err == nil) != ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "labd.db")
	s := open(t, path)
	if err := s.Add(ctx, "alice", "password-1", Learner); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, "alice", "password-2", Learner); !errors.Is(err, ErrExists) {
		t.Errorf("Add twice = %v, want ErrExists", err)
	}
	if err := s.Add(ctx, "bob", "short", Learner); !errors.Is(err, ErrWeakPassword) {
		t.Errorf("Add short password = %v, want ErrWeakPassword", err)
	}
	if err := s.Add(ctx, "Bad Name", "password-1", Learner); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Add bad name = %v", err)
	}
	if err := s.Add(ctx, "teacher", "password-t", Instructor); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, pw string
		role     Role
		err      error
	}{
		{"alice", "password-1", Learner, nil},
		{"alice", "password-1", Learner, nil}, // cached path
		{"alice", "password-2", "", ErrBadPassword},
		{"nobody", "password-1", "", ErrBadPassword},
		{"teacher", "password-t", Instructor, nil},
	} {
		role, err := s.Check(ctx, tc.name, tc.pw)
		if role != tc.role || !errors.Is(err, tc.err) {
			t.Errorf("Check(%s, %s) = %q, %v; want %q, %v", tc.name, tc.pw, role, err, tc.role, tc.err)
		}
	}
	// A changed password invalidates the cached check.
	if err := s.SetPassword(ctx, "alice", "password-new"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(ctx, "alice", "password-1"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("old password after SetPassword: %v", err)
	}
	if _, err := s.Check(ctx, "alice", "password-new"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if _, err := s.EnsureLearner(ctx, "alice"); !errors.Is(err, ErrPasswordHidden) {
		t.Errorf("EnsureLearner on a person-chosen password = %v", err)
	}

	// Learners made by labd: stable password until rotated.
	pw, err := s.EnsureLearner(ctx, "carol")
	if err != nil || len(pw) < 20 {
		t.Fatalf("EnsureLearner = %q, %v", pw, err)
	}
	again, err := s.EnsureLearner(ctx, "carol")
	if err != nil || again != pw {
		t.Errorf("EnsureLearner again = %q, %v; want %q", again, err, pw)
	}
	if role, err := s.Check(ctx, "carol", pw); err != nil || role != Learner {
		t.Errorf("Check(carol) = %q, %v", role, err)
	}
	rot, err := s.Rotate(ctx, "carol")
	if err != nil || rot == pw {
		t.Fatalf("Rotate = %q, %v", rot, err)
	}
	if _, err := s.Check(ctx, "carol", pw); !errors.Is(err, ErrBadPassword) {
		t.Errorf("old password after Rotate: %v", err)
	}
	if got, _ := s.EnsureLearner(ctx, "carol"); got != rot {
		t.Errorf("EnsureLearner after Rotate = %q, want %q", got, rot)
	}

	if err := s.Remove(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove missing = %v", err)
	}
	if err := s.Remove(ctx, "teacher"); err != nil {
		t.Fatal(err)
	}
	if role, _ := s.Role(ctx, "teacher"); role != "" {
		t.Errorf("Role of removed account = %q", role)
	}

	// Reopen: data survives and the migration is not re-run.
	s.Close()
	s2 := open(t, path)
	list, err := s2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range list {
		names = append(names, a.Name+":"+string(a.Role))
	}
	if len(names) != 2 || names[0] != "alice:learner" || names[1] != "carol:learner" || !list[1].Generated || list[0].Generated {
		t.Errorf("List after reopen = %v", names)
	}
	var v int
	if err := s2.db.QueryRow(`SELECT version FROM labd_migrations WHERE component = 'registry_accounts'`).Scan(&v); err != nil || v != len(migrations) {
		t.Errorf("schema version = %d, %v", v, err)
	}
}

// TestGeneratedPassword: a password labd generated is checked against the
// one kept in the row, not by bcrypt, and stops working once a person sets
// one (or it is rotated).
func TestGeneratedPassword(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "accounts.db"))
	pw, err := s.EnsureLearner(ctx, "ada")
	if err != nil {
		t.Fatal(err)
	}
	var hash string
	if err := s.db.QueryRowContext(ctx, `SELECT hash FROM registry_accounts WHERE name = 'ada'`).Scan(&hash); err != nil || hash != generatedHash {
		t.Fatalf("hash column %q (%v), want %q", hash, err, generatedHash)
	}
	for _, c := range []struct {
		name, password string
		ok             bool
	}{
		{"the generated one", pw, true},
		{"wrong", pw[:len(pw)-1] + "x", false},
		{"a prefix", pw[:8], false},
		{"empty", "", false},
		{"the marker itself", generatedHash, false},
	} {
		if _, err := s.Check(ctx, "ada", c.password); (err == nil) != c.ok {
			t.Errorf("%s: Check error %v, want ok=%v", c.name, err, c.ok)
		}
	}
	if err := s.SetPassword(ctx, "ada", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(ctx, "ada", pw); !errors.Is(err, ErrBadPassword) {
		t.Errorf("the generated password after a person set one: %v, want ErrBadPassword", err)
	}
	if _, err := s.Check(ctx, "ada", "correct horse battery"); err != nil {
		t.Errorf("the person's password: %v", err)
	}
}
