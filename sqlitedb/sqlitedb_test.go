package sqlitedb

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "labd.db")
	v1 := []string{`CREATE TABLE a_items (x TEXT)`}
	v2 := append(v1, `ALTER TABLE a_items ADD COLUMN y TEXT`)

	db, err := Open(ctx, path, "a", v1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO a_items (x) VALUES ('kept')`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// A second component shares the file and migrates on its own.
	db, err = Open(ctx, path, "b", []string{`CREATE TABLE b_items (z TEXT)`})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Reopening at the same version changes nothing; a newer one adds.
	for _, m := range [][]string{v1, v2, v2} {
		if db, err = Open(ctx, path, "a", m); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	db, err = Open(ctx, path, "a", v2)
	if err != nil {
		t.Fatal(err)
	}
	var x string
	var y any
	if err := db.QueryRow(`SELECT x, y FROM a_items`).Scan(&x, &y); err != nil || x != "kept" || y != nil {
		t.Fatalf("after migrations: x=%q y=%v err=%v, want the row kept and y NULL", x, y, err)
	}
	var versions int
	if err := db.QueryRow(`SELECT COUNT(*) FROM labd_migrations`).Scan(&versions); err != nil || versions != 2 {
		t.Fatalf("labd_migrations rows = %d (err %v), want 2", versions, err)
	}
	db.Close()

	// An older labd refuses a database a newer one migrated.
	if _, err := Open(ctx, path, "a", v1); err == nil || !strings.Contains(err.Error(), "newer than this labd") {
		t.Fatalf("Open with an older schema: err = %v, want refusal", err)
	}
	// A failing migration leaves the version where it was.
	bad := append(v2, `THIS IS NOT SQL`)
	if _, err := Open(ctx, path, "a", bad); err == nil {
		t.Fatal("a broken migration was accepted")
	}
	if db, err = Open(ctx, path, "a", v2); err != nil {
		t.Fatalf("after a failed migration, the previous version no longer opens: %v", err)
	}
	db.Close()
}
