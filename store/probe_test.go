package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProbeWriteLocked: another connection holding BEGIN EXCLUSIVE
// makes the probe fail within its timeout, as unavailable; once the
// lock is released it passes again.
func TestProbeWriteLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st, err := Open(ctx, path, Options{BusyTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.ProbeWrite(ctx, time.Second); err != nil {
		t.Fatalf("probe on a free database: %v", err)
	}
	other, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=100")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = st.ProbeWrite(ctx, 300*time.Millisecond)
	if !IsUnavailable(err) || time.Since(start) > 2*time.Second {
		t.Fatalf("probe under an exclusive lock: %v after %v; want unavailable within the timeout", err, time.Since(start))
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err = st.ProbeWrite(ctx, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe after the lock was released: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIsUnavailable: SQLite's read-only and full errors, as a write
// gets them, count as "cannot take writes"; a constraint error does not.
func TestIsUnavailable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "u.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	ro, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	_, err = ro.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES ('k', 'v')`)
	if err == nil || !IsUnavailable(err) {
		t.Errorf("write to a read-only database: %v, want unavailable", err)
	}
	full, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	full.SetMaxOpenConns(1)
	for range 2 {
		_, err = full.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES ('dup', 'v')`)
	}
	if err == nil || IsUnavailable(err) {
		t.Errorf("a UNIQUE violation: %v, want an error that is not unavailable", err)
	}
	var pages int
	if err := full.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := full.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	_, err = full.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES ('big', ?)`, strings.Repeat("x", 1<<20))
	if err == nil || !IsUnavailable(err) {
		t.Errorf("write past max_page_count: %v, want unavailable (SQLITE_FULL)", err)
	}
}
