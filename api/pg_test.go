package api_test

import (
	"path/filepath"
	"testing"

	"github.com/deskmail/deskmail/internal/pgtest"
)

// pgCluster is this package's throw-away PostgreSQL, started by the
// first test that needs it (stopped by TestMain); each test gets a
// schema of its own.
var pgCluster = pgtest.New(pgtest.Options{})

// forEachStore runs fn on a fresh SQLite database and on a fresh
// PostgreSQL schema (when PostgreSQL is installed; DESKMAIL_PG=1
// demands it), as subtests: the API answers the same on both.
func forEachStore(t *testing.T, fn func(t *testing.T, db string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "deskmail.db")) })
	if pgCluster.Available(t) {
		t.Run("postgres", func(t *testing.T) { fn(t, pgCluster.URL(t)) })
	}
}
