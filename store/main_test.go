package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/deskmail/deskmail/internal/pgtest"
)

// pgCluster is this package's throw-away PostgreSQL (one per test
// binary, started by the first test that needs it; every store gets a
// schema of its own).
var pgCluster = pgtest.New(pgtest.Options{})

func TestMain(m *testing.M) {
	code := m.Run()
	pgCluster.Stop()
	os.Exit(code)
}

// storeKind names one of the two stores the contract suite runs on.
type storeKind string

const (
	sqliteStore   storeKind = "sqlite"
	postgresStore storeKind = "postgres"
)

// forEachStore runs fn once per store kind, as subtests: the store's
// contract is the same on SQLite and on PostgreSQL. Without PostgreSQL
// (and without DESKMAIL_PG=1, which makes that a failure) only SQLite
// runs, and the test log says so.
func forEachStore(t *testing.T, fn func(t *testing.T, k storeKind)) {
	t.Helper()
	t.Run(string(sqliteStore), func(t *testing.T) { fn(t, sqliteStore) })
	if pgCluster.Available(t) {
		t.Run(string(postgresStore), func(t *testing.T) { fn(t, postgresStore) })
	}
}

// openKind opens a fresh, empty store of kind k, closed when t ends.
func openKind(t testing.TB, k storeKind, opts Options) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.db")
	if k == postgresStore {
		path = pgCluster.URL(t)
	}
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
