// Package progress stores which checks each learner has passed, in the
// SQLite database DATA/labd.db that labd's other parts share (each with its
// own tables and its row in labd_migrations). It survives restarts: a
// sticky check passed yesterday is still passed today.
package progress

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/labd/labd/sqlitedb"
)

const component = "progress"

// migrations[i] takes the schema from version i to i+1.
var migrations = []string{
	`CREATE TABLE progress_checks (
		learner   TEXT NOT NULL,
		lab       TEXT NOT NULL,
		check_id  TEXT NOT NULL,
		step      INTEGER NOT NULL,
		passed_at INTEGER NOT NULL, -- Unix nanoseconds
		PRIMARY KEY (learner, lab, check_id)
	);
	CREATE TABLE progress_learners (
		learner    TEXT NOT NULL,
		lab        TEXT NOT NULL,
		started_at INTEGER NOT NULL,
		seen_at    INTEGER NOT NULL,
		PRIMARY KEY (learner, lab)
	);`,
	// Answers to question checks: the latest of each learner.
	`CREATE TABLE progress_answers (
		learner     TEXT NOT NULL,
		lab         TEXT NOT NULL,
		check_id    TEXT NOT NULL,
		answer      TEXT NOT NULL, -- JSON list of strings
		answered_at INTEGER NOT NULL,
		PRIMARY KEY (learner, lab, check_id)
	);`,
}

// Store is the progress tables. It is safe for concurrent use.
type Store struct{ db *sql.DB }

// Open opens (creating and migrating if needed) the database at path.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := sqlitedb.Open(ctx, path, component, migrations)
	if err != nil {
		return nil, fmt.Errorf("progress db: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Pass records that learner passed check (of step) in lab at t. A check
// passed before keeps its first time.
func (s *Store) Pass(ctx context.Context, learner, lab, check string, step int, t time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO progress_checks (learner, lab, check_id, step, passed_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, learner, lab, check, step, t.UnixNano())
	if err != nil {
		return fmt.Errorf("record pass of %s/%s: %w", lab, check, err)
	}
	return nil
}

// Forget removes a pass (a check with sticky: false that fails again).
func (s *Store) Forget(ctx context.Context, learner, lab, check string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM progress_checks WHERE learner = ? AND lab = ? AND check_id = ?`, learner, lab, check)
	if err != nil {
		return fmt.Errorf("forget pass of %s/%s: %w", lab, check, err)
	}
	return nil
}

// Seen records that learner opened lab (for the instructor view, which
// lists learners who have not passed anything yet).
func (s *Store) Seen(ctx context.Context, learner, lab string, t time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO progress_learners (learner, lab, started_at, seen_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (learner, lab) DO UPDATE SET seen_at = excluded.seen_at`, learner, lab, t.UnixNano(), t.UnixNano())
	if err != nil {
		return fmt.Errorf("record visit of %s: %w", lab, err)
	}
	return nil
}

// Passed returns check ID → time of passing for learner in lab.
func (s *Store) Passed(ctx context.Context, learner, lab string) (map[string]time.Time, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT check_id, passed_at FROM progress_checks WHERE learner = ? AND lab = ?`, learner, lab)
	if err != nil {
		return nil, fmt.Errorf("read progress: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var id string
		var ns int64
		if err := rows.Scan(&id, &ns); err != nil {
			return nil, fmt.Errorf("read progress: %w", err)
		}
		out[id] = time.Unix(0, ns)
	}
	return out, rows.Err()
}

// Counts returns lab → number of checks learner has passed.
func (s *Store) Counts(ctx context.Context, learner string) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT lab, COUNT(*) FROM progress_checks WHERE learner = ? GROUP BY lab`, learner)
	if err != nil {
		return nil, fmt.Errorf("read progress: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var lab string
		var n int
		if err := rows.Scan(&lab, &n); err != nil {
			return nil, fmt.Errorf("read progress: %w", err)
		}
		out[lab] = n
	}
	return out, rows.Err()
}

// Row is one learner's progress in one lab, for the instructor view.
type Row struct {
	Learner   string
	Lab       string
	StartedAt time.Time            // zero when unknown
	Passed    map[string]time.Time // check ID → time of passing
}

// All returns every learner × lab with what they passed, ordered by lab
// then learner.
func (s *Store) All(ctx context.Context) ([]Row, error) {
	idx := map[[2]string]*Row{}
	var order [][2]string
	get := func(learner, lab string) *Row {
		k := [2]string{learner, lab}
		r, ok := idx[k]
		if !ok {
			r = &Row{Learner: learner, Lab: lab, Passed: map[string]time.Time{}}
			idx[k] = r
			order = append(order, k)
		}
		return r
	}
	rows, err := s.db.QueryContext(ctx, `SELECT learner, lab, started_at FROM progress_learners`)
	if err != nil {
		return nil, fmt.Errorf("read learners: %w", err)
	}
	for rows.Next() {
		var l, lab string
		var ns int64
		if err := rows.Scan(&l, &lab, &ns); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read learners: %w", err)
		}
		get(l, lab).StartedAt = time.Unix(0, ns)
	}
	rows.Close()
	rows, err = s.db.QueryContext(ctx, `SELECT learner, lab, check_id, passed_at FROM progress_checks`)
	if err != nil {
		return nil, fmt.Errorf("read progress: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l, lab, id string
		var ns int64
		if err := rows.Scan(&l, &lab, &id, &ns); err != nil {
			return nil, fmt.Errorf("read progress: %w", err)
		}
		get(l, lab).Passed[id] = time.Unix(0, ns)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Row, 0, len(order))
	for _, k := range order {
		out = append(out, *idx[k])
	}
	sortRows(out)
	return out, nil
}

// SetAnswer records learner's latest answer to a question check of lab.
func (s *Store) SetAnswer(ctx context.Context, learner, lab, check string, answer []string, t time.Time) error {
	b, err := json.Marshal(answer)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO progress_answers (learner, lab, check_id, answer, answered_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (learner, lab, check_id) DO UPDATE SET answer = excluded.answer, answered_at = excluded.answered_at`,
		learner, lab, check, string(b), t.UnixNano())
	if err != nil {
		return fmt.Errorf("record answer to %s/%s: %w", lab, check, err)
	}
	return nil
}

// Answers returns check ID → learner's latest answer in lab.
func (s *Store) Answers(ctx context.Context, learner, lab string) (map[string][]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT check_id, answer FROM progress_answers WHERE learner = ? AND lab = ?`, learner, lab)
	if err != nil {
		return nil, fmt.Errorf("read answers: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			return nil, fmt.Errorf("read answers: %w", err)
		}
		var a []string
		if json.Unmarshal([]byte(raw), &a) == nil {
			out[id] = a
		}
	}
	return out, rows.Err()
}

// Ping reports whether the database answers a query (labd's /readyz).
func (s *Store) Ping(ctx context.Context) error {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM progress_learners`).Scan(&n); err != nil {
		return fmt.Errorf("progress store: %w", err)
	}
	return nil
}
