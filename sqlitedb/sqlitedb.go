// Package sqlitedb opens labd's SQLite database (DATA/labd.db, shared by the
// registry's accounts and the grader's progress) and brings each
// component's tables to the version this labd knows. Every component has
// its own tables and its row in labd_migrations, so each migrates alone.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// Open opens (creating if needed) the database at path and migrates
// component's tables: migrations[i] takes them from version i to i+1, all
// in one transaction. A database migrated by a newer labd is refused, not
// downgraded.
func Open(ctx context.Context, path, component string, migrations []string) (*sql.DB, error) {
	// WAL and a busy timeout: several components and processes (labd
	// serve, labd accounts) use the file at once.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := migrate(ctx, db, component, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s in %s: %w", component, path, err)
	}
	// Accounts and progress are labd's alone, whatever the umask: the
	// data dir may be traversable (0711, for user namespaces).
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(f, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			db.Close()
			return nil, fmt.Errorf("protect %s: %w", f, err)
		}
	}
	return db, nil
}

func migrate(ctx context.Context, db *sql.DB, component string, migrations []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS labd_migrations (
		component TEXT PRIMARY KEY,
		version   INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	err = tx.QueryRowContext(ctx, `SELECT version FROM labd_migrations WHERE component = ?`, component).Scan(&have)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("migrate: %w", err)
	}
	want := len(migrations)
	if have > want {
		return fmt.Errorf("schema version %d is newer than this labd (%d)", have, want)
	}
	if have == want {
		return nil
	}
	for v := have; v < want; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO labd_migrations (component, version) VALUES (?, ?)
		ON CONFLICT (component) DO UPDATE SET version = excluded.version`, component, want); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
