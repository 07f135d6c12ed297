package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/internal/pgtest"
	"github.com/deskmail/deskmail/store"
)

// pgCluster is this package's throw-away PostgreSQL, started by the
// first test that needs it (stopped by TestMain); each test gets a
// schema of its own.
var pgCluster = pgtest.New(pgtest.Options{})

// forEachDatabase runs fn with a fresh SQLite path and a fresh
// PostgreSQL URL (when PostgreSQL is installed; DESKMAIL_PG=1 demands
// it): every command works on both stores.
func forEachDatabase(t *testing.T, fn func(t *testing.T, db string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "x.db")) })
	if pgCluster.Available(t) {
		t.Run("postgres", func(t *testing.T) { fn(t, pgCluster.URL(t)) })
	}
}

// TestVersionNamesStore: deskmail version --db names the store and the
// schema version its database is at, and never prints a password.
func TestVersionNamesStore(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db string) {
		if code, _, errOut := deskmail(t, "", "agents", "add", "agent@example.com", "--db", db); code != 0 {
			t.Fatalf("agents add: exit %d: %s", code, errOut)
		}
		arg := db
		if store.IsPostgres(db) {
			arg = strings.Replace(db, "postgres@", "postgres:s3cret-pw@", 1)
		}
		code, out, errOut := deskmail(t, "", "version", "--json", "--db", arg)
		if code != 0 {
			t.Fatalf("version: exit %d: %s", code, errOut)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		kind := "sqlite"
		if store.IsPostgres(db) {
			kind = "postgresql"
		}
		if v["store"] != kind || v["database_schema_version"] != float64(store.SchemaVersion()) {
			t.Errorf("version: %s", out)
		}
		code, out, _ = deskmail(t, "", "version", "--db", arg)
		if code != 0 || !strings.Contains(out, "store "+kind+" ") || strings.Contains(out, "s3cret") {
			t.Errorf("version text: %s", out)
		}
	})
}

// TestBackupSaysPgDump: deskmail backup of a PostgreSQL database says
// that pg_dump is the backup, and writes nothing.
func TestBackupSaysPgDump(t *testing.T) {
	if !pgCluster.Available(t) {
		return
	}
	db := pgCluster.URL(t)
	dest := filepath.Join(t.TempDir(), "b.db")
	code, _, errOut := deskmail(t, "", "backup", "--db", db, dest)
	if code == 0 || !strings.Contains(errOut, "pg_dump") {
		t.Fatalf("backup on PostgreSQL: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("backup wrote a file")
	}
}

// TestMigrateToPostgres: mail with attachments ingested into SQLite is
// copied by deskmail migrate into PostgreSQL; tickets and outbox read
// back the same through the CLI on both; a re-run copies nothing and
// verifies again; a missing --from is refused without creating it.
func TestMigrateToPostgres(t *testing.T) {
	if !pgCluster.Available(t) {
		return
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "x.db")
	url := pgCluster.URL(t)
	files := []string{fixture(t, "newcomer", "01-new"), fixture(t, "newcomer", "04-requester-reply")}
	for _, f := range []string{"nameless-attachments", "rfc2231-filenames", "inline-cid-images"} {
		files = append(files, filepath.Join("..", "..", "fixtures", "parse", f+".eml"))
	}
	if code, _, errOut := deskmail(t, "", append([]string{"ingest", "--db", src}, files...)...); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errOut)
	}
	if code, _, errOut := deskmail(t, "", "agents", "add", "agent@example.com", "--db", src); code != 0 {
		t.Fatalf("agents add: %d %s", code, errOut)
	}
	type report struct {
		Tables []struct {
			Table  string `json:"table"`
			Source int64  `json:"source_rows"`
			Target int64  `json:"target_rows"`
			Copied int64  `json:"copied"`
		} `json:"tables"`
		Blobs int64 `json:"blobs_verified"`
	}
	migrate := func() report {
		t.Helper()
		code, out, errOut := deskmail(t, "", "migrate", "--from", src, "--to", url, "--json")
		if code != 0 {
			t.Fatalf("migrate: exit %d: %s", code, errOut)
		}
		var r report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := migrate()
	rows := map[string]int64{}
	for _, tb := range first.Tables {
		rows[tb.Table] = tb.Target
		if tb.Source != tb.Target {
			t.Errorf("table %+v", tb)
		}
	}
	if rows["tickets"] == 0 || rows["attachments"] == 0 || rows["blobs"] == 0 || rows["agents"] != 1 || first.Blobs < rows["blobs"] {
		t.Fatalf("migrate report %+v", first)
	}
	for _, tb := range migrate().Tables {
		if tb.Copied != 0 {
			t.Errorf("re-run copied %d rows of %s", tb.Copied, tb.Table)
		}
	}
	for _, args := range [][]string{{"tickets", "list", "--json"}, {"tickets", "show", "1", "--json"}, {"outbox", "list", "--json"}, {"agents", "list"}} {
		_, a, _ := deskmail(t, "", append(args, "--db", src)...)
		_, b, _ := deskmail(t, "", append(args, "--db", url)...)
		if a != b || a == "" {
			t.Errorf("deskmail %s differs after migrate:\nsqlite:   %s\npostgres: %s", strings.Join(args, " "), a, b)
		}
	}
	missing := filepath.Join(dir, "missing.db")
	if code, _, errOut := deskmail(t, "", "migrate", "--from", missing, "--to", url); code == 0 || !strings.Contains(errOut, "missing.db") {
		t.Errorf("missing --from: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("migrate created the missing source")
	}
}
