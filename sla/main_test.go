package sla

import (
	"os"
	"testing"

	"github.com/deskmail/deskmail/internal/pgtest"
)

// pgCluster is this package's throw-away PostgreSQL, started by the
// first test that needs it (DESKMAIL_PG=1 makes its absence a failure).
var pgCluster = pgtest.New(pgtest.Options{})

func TestMain(m *testing.M) {
	code := m.Run()
	pgCluster.Stop()
	os.Exit(code)
}
