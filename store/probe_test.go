package store

import (
	"context"
	"database/sql"
	"path/filepath"
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
