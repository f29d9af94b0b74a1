package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/labd/labd/sqlitedb"
	"golang.org/x/crypto/bcrypt"
)

// Role says what an account may do in the registry.
type Role string

const (
	Learner    Role = "learner"
	Instructor Role = "instructor"
)

// Account is one registry account as listed; the hash never leaves the store.
type Account struct {
	Name    string
	Role    Role
	Created time.Time
	Updated time.Time
	// Generated is true when labd chose the password (EnsureLearner,
	// Rotate) and can show it again.
	Generated bool
}

var (
	ErrNotFound     = errors.New("no such account")
	ErrExists       = errors.New("account already exists")
	ErrInvalidName  = errors.New("invalid account name: 2-30 characters, lowercase letters and digits, separated by single '.', '_' or '-'")
	ErrBadPassword  = errors.New("incorrect username or password")
	ErrWeakPassword = errors.New("password must be 8 to 72 bytes")
	// ErrPasswordHidden: the account's password was set by a person, so
	// labd only has its hash and cannot show it.
	ErrPasswordHidden = errors.New("password was chosen by its owner and is not stored")
)

// nameRE is Docker Hub's handle shape; names double as the first path
// component of repositories, so they must also be valid there.
var nameRE = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)

// reserved names would collide with the shared namespaces of the policy.
var reserved = map[string]bool{"library": true}

// ValidName reports whether name can be an account name.
func ValidName(name string) error {
	if len(name) < 2 || len(name) > 30 || !nameRE.MatchString(name) || reserved[name] {
		return fmt.Errorf("%q: %w", name, ErrInvalidName)
	}
	return nil
}

// component keys this package's row in labd_migrations.
const component = "registry_accounts"

var migrations = []string{
	// 1
	`CREATE TABLE registry_accounts (
		name       TEXT PRIMARY KEY,
		hash       TEXT NOT NULL,
		role       TEXT NOT NULL CHECK (role IN ('learner', 'instructor')),
		generated  TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	)`,
}

// Store is the account table. It is safe for concurrent use, also by
// several processes (the server and `labd accounts`) on the same file.
type Store struct {
	db   *sql.DB
	cost int

	mu    sync.Mutex
	valid map[[32]byte]string // sha256(name, password) -> hash it matched
}

// Options tune Open; the zero value is what labd uses.
type Options struct {
	// BcryptCost defaults to bcrypt.DefaultCost; tests lower it.
	BcryptCost int
}

// Open opens (creating and migrating if needed) the database at path.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	db, err := sqlitedb.Open(ctx, path, component, migrations)
	if err != nil {
		return nil, fmt.Errorf("accounts db: %w", err)
	}
	s := &Store{db: db, cost: opts.BcryptCost, valid: map[[32]byte]string{}}
	if s.cost == 0 {
		s.cost = bcrypt.DefaultCost
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func checkPassword(p string) error {
	// bcrypt ignores bytes past 72; refusing them avoids a silent surprise.
	if len(p) < 8 || len(p) > 72 {
		return ErrWeakPassword
	}
	return nil
}

// Add creates an account with a password chosen by a person.
func (s *Store) Add(ctx context.Context, name, password string, role Role) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	return s.insert(ctx, name, password, role, "")
}

func (s *Store) insert(ctx context.Context, name, password string, role Role, generated string) error {
	if role != Learner && role != Instructor {
		return fmt.Errorf("add account %s: unknown role %q", name, role)
	}
	hash, err := s.hashOf(password, generated)
	if err != nil {
		return fmt.Errorf("add account %s: %w", name, err)
	}
	now := time.Now().Unix()
	res, err := s.db.ExecContext(ctx, `INSERT INTO registry_accounts (name, hash, role, generated, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`, name, string(hash), string(role), generated, now, now)
	if err != nil {
		return fmt.Errorf("add account %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("add account %s: %w", name, ErrExists)
	}
	return nil
}

// generatedHash is the hash column of an account whose password labd
// generated: that password is kept in the row (the learner's page shows
// it again), 130 random bits no guess reaches, so a bcrypt of it would
// protect nothing and cost a class arriving at once a CPU-second per 15
// learners. Not a bcrypt hash, so no password ever matches it as one.
const generatedHash = "generated"

// hashOf is the hash column for password (generated: the password labd
// made, else "").
func (s *Store) hashOf(password, generated string) ([]byte, error) {
	if generated != "" {
		if generated != password {
			return nil, errors.New("the generated password differs from the one set")
		}
		return []byte(generatedHash), nil
	}
	return bcrypt.GenerateFromPassword([]byte(password), s.cost)
}

// Check verifies a password and returns the account's role. A wrong name
// and a wrong password give the same ErrBadPassword.
func (s *Store) Check(ctx context.Context, name, password string) (Role, error) {
	var hash, role, generated string
	err := s.db.QueryRowContext(ctx, `SELECT hash, role, generated FROM registry_accounts WHERE name = ?`, name).Scan(&hash, &role, &generated)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrBadPassword
	}
	if err != nil {
		return "", fmt.Errorf("check account %s: %w", name, err)
	}
	if hash == generatedHash {
		if generated == "" || subtle.ConstantTimeCompare([]byte(generated), []byte(password)) != 1 {
			return "", ErrBadPassword
		}
		return Role(role), nil
	}
	// bcrypt costs tens of milliseconds and registry clients ask for a
	// token on nearly every request: remember what matched, keyed by the
	// hash so a changed password invalidates the entry.
	key := sha256.Sum256([]byte(name + "\x00" + password))
	s.mu.Lock()
	ok := s.valid[key] == hash
	s.mu.Unlock()
	if !ok {
		if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
			return "", ErrBadPassword
		}
		s.mu.Lock()
		if len(s.valid) > 10000 {
			clear(s.valid)
		}
		s.valid[key] = hash
		s.mu.Unlock()
	}
	return Role(role), nil
}

// Get returns one account.
func (s *Store) Get(ctx context.Context, name string) (Account, error) {
	row := s.db.QueryRowContext(ctx, `SELECT name, role, generated, created_at, updated_at FROM registry_accounts WHERE name = ?`, name)
	a, err := scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("account %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("account %s: %w", name, err)
	}
	return a, nil
}

// Role returns an account's role, or "" when there is no such account.
// The access policy calls it to tell instructors' namespaces apart.
func (s *Store) Role(ctx context.Context, name string) (Role, error) {
	var role string
	err := s.db.QueryRowContext(ctx, `SELECT role FROM registry_accounts WHERE name = ?`, name).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("account %s: %w", name, err)
	}
	return Role(role), nil
}

// Stamp returns an account's role and a fingerprint of its current
// password hash: a refresh token carries the stamp it was issued under,
// so a new password (or removing the account) revokes it. A missing
// account gives ErrBadPassword, like a wrong password.
func (s *Store) Stamp(ctx context.Context, name string) (Role, string, error) {
	var hash, role, generated string
	err := s.db.QueryRowContext(ctx, `SELECT hash, role, generated FROM registry_accounts WHERE name = ?`, name).Scan(&hash, &role, &generated)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrBadPassword
	}
	if err != nil {
		return "", "", fmt.Errorf("account %s: %w", name, err)
	}
	sum := sha256.Sum256([]byte("labd refresh stamp\x00" + hash))
	return Role(role), hex.EncodeToString(sum[:12]), nil
}

type scanner interface{ Scan(...any) error }

func scan(r scanner) (Account, error) {
	var a Account
	var role, gen string
	var c, u int64
	if err := r.Scan(&a.Name, &role, &gen, &c, &u); err != nil {
		return a, err
	}
	a.Role, a.Generated = Role(role), gen != ""
	a.Created, a.Updated = time.Unix(c, 0), time.Unix(u, 0)
	return a, nil
}

// List returns every account sorted by name.
func (s *Store) List(ctx context.Context) ([]Account, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, role, generated, created_at, updated_at FROM registry_accounts ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		a, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return out, nil
}

// Remove deletes an account. Its repositories stay in the registry.
func (s *Store) Remove(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM registry_accounts WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("remove account %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("remove account %s: %w", name, ErrNotFound)
	}
	return nil
}

// SetPassword replaces an account's password with one chosen by a person.
func (s *Store) SetPassword(ctx context.Context, name, password string) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	return s.update(ctx, name, password, "")
}

func (s *Store) update(ctx context.Context, name, password, generated string) error {
	hash, err := s.hashOf(password, generated)
	if err != nil {
		return fmt.Errorf("set password of %s: %w", name, err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE registry_accounts SET hash = ?, generated = ?, updated_at = ? WHERE name = ?`,
		string(hash), generated, time.Now().Unix(), name)
	if err != nil {
		return fmt.Errorf("set password of %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("set password of %s: %w", name, ErrNotFound)
	}
	return nil
}

// EnsureLearner returns the password of the learner account named handle,
// creating the account with a random password first if there is none.
// It fails with ErrPasswordHidden when a person set the password.
func (s *Store) EnsureLearner(ctx context.Context, handle string) (string, error) {
	if err := ValidName(handle); err != nil {
		return "", err
	}
	var gen string
	err := s.db.QueryRowContext(ctx, `SELECT generated FROM registry_accounts WHERE name = ?`, handle).Scan(&gen)
	switch {
	case err == nil && gen != "":
		return gen, nil
	case err == nil:
		return "", fmt.Errorf("account %s: %w", handle, ErrPasswordHidden)
	case !errors.Is(err, sql.ErrNoRows):
		return "", fmt.Errorf("account %s: %w", handle, err)
	}
	pw := NewPassword()
	err = s.insert(ctx, handle, pw, Learner, pw)
	if errors.Is(err, ErrExists) {
		// Lost a race with another request for the same learner.
		return s.EnsureLearner(ctx, handle)
	}
	if err != nil {
		return "", err
	}
	return pw, nil
}

// Rotate gives the account a new random password and returns it.
func (s *Store) Rotate(ctx context.Context, handle string) (string, error) {
	pw := NewPassword()
	if err := s.update(ctx, handle, pw, pw); err != nil {
		return "", err
	}
	return pw, nil
}

// NewPassword returns a random password: 26 characters of base32 (A-Z,
// 2-7; 130 bits), easy to copy from a lab page.
func NewPassword() string { return rand.Text() }
