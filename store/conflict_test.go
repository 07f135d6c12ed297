package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWriteBatchRunsAgainAfterDeadlock: two instances on one PostgreSQL
// database each run a batch that changes two contacts, in opposite
// orders, each inside a savepoint as ingestion does, and each waits for
// the other to hold its first row: PostgreSQL aborts one of them for a
// deadlock. That one runs again by itself and commits; neither fails,
// no savepoint keeps half a batch, and the contacts end as one of the
// two batches left them (never one name from each).
func TestWriteBatchRunsAgainAfterDeadlock(t *testing.T) {
	ctx := context.Background()
	stores, ids := twoInstances(t, "a@example.com", "b@example.com")
	var holding sync.WaitGroup
	holding.Add(2)
	var runs [2]int
	errs := make([]error, 2)
	var wg sync.WaitGroup
	names := []string{"one", "two"}
	for side := range 2 {
		wg.Go(func() {
			first, second := ids[side], ids[1-side]
			errs[side] = stores[side].WriteBatch(ctx, func(tx *Tx) error {
				runs[side]++
				run := runs[side]
				return tx.Savepoint(func() error {
					if err := renameLocked(tx, first, names[side]); err != nil {
						return err
					}
					if run == 1 {
						holding.Done()
						holding.Wait()
					}
					return renameLocked(tx, second, names[side])
				})
			})
		})
	}
	wg.Wait()
	for side, err := range errs {
		if err != nil {
			t.Fatalf("batch %d: %v", side, err)
		}
	}
	if runs[0]+runs[1] < 3 {
		t.Fatalf("runs %v: neither batch ran again, yet they crossed", runs)
	}
	if n := stores[0].conflicts.Load() + stores[1].conflicts.Load(); n < 1 {
		t.Errorf("%d conflicts counted, want at least 1", n)
	}
	var got [2]string
	if err := stores[0].Read(ctx, func(tx *Tx) error {
		for i, id := range ids {
			c, err := tx.Contact(id)
			if err != nil {
				return err
			}
			got[i] = c.Name
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got[0] != got[1] || (got[0] != "one" && got[0] != "two") {
		t.Errorf("contacts named %q: want both named by the batch that committed last", got)
	}
}

// TestWriteConflictIsReported: Write, whose function runs once, does
// not run it again after a deadlock: it returns ErrConflict, and
// nothing of it is committed.
func TestWriteConflictIsReported(t *testing.T) {
	ctx := context.Background()
	stores, ids := twoInstances(t, "a@example.com", "b@example.com")
	var holding sync.WaitGroup
	holding.Add(2)
	errs := make([]error, 2)
	var runs [2]int
	var wg sync.WaitGroup
	for side := range 2 {
		wg.Go(func() {
			errs[side] = stores[side].Write(ctx, func(tx *Tx) error {
				runs[side]++
				if err := tx.SetContactName(ids[side], "x"); err != nil {
					return err
				}
				holding.Done()
				holding.Wait()
				return tx.SetContactName(ids[1-side], "x")
			})
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the crossed Writes did not end")
	}
	failed := 0
	for _, err := range errs {
		if err != nil {
			if !errors.Is(err, ErrConflict) {
				t.Errorf("Write failed with %v, want ErrConflict", err)
			}
			failed++
		}
	}
	if failed != 1 || runs != [2]int{1, 1} {
		t.Errorf("%d Writes failed, runs %v: want one conflict and each function run once", failed, runs)
	}
}

// TestLockAheadKeepsCrossedBatchesApart: the same crossed batches as
// TestWriteBatchRunsAgainAfterDeadlock, each taking LockAhead on both
// contacts' addresses first: the second waits for the first at its
// start, and neither deadlocks nor runs twice.
func TestLockAheadKeepsCrossedBatchesApart(t *testing.T) {
	ctx := context.Background()
	emails := []string{"a@example.com", "B@example.com"}
	stores, ids := twoInstances(t, emails[0], emails[1])
	holds := make(chan struct{})
	var runs [2]int
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for side := range 2 {
		if side == 1 {
			<-holds
		}
		wg.Go(func() {
			first, second := ids[side], ids[1-side]
			errs[side] = stores[side].WriteBatch(ctx, func(tx *Tx) error {
				runs[side]++
				// The addresses in another case and order: the same locks.
				ask := []string{emails[1-side], strings.ToUpper(emails[side])}
				if err := tx.LockAhead(ask); err != nil {
					return err
				}
				return tx.Savepoint(func() error {
					if err := renameLocked(tx, first, "x"); err != nil {
						return err
					}
					if side == 0 && runs[0] == 1 {
						close(holds)
						// Long enough for the other batch to reach its
						// first row, had it not waited at LockAhead.
						time.Sleep(300 * time.Millisecond)
					}
					return renameLocked(tx, second, "x")
				})
			})
		})
	}
	wg.Wait()
	for side, err := range errs {
		if err != nil {
			t.Fatalf("batch %d: %v", side, err)
		}
	}
	if n := stores[0].conflicts.Load() + stores[1].conflicts.Load(); n != 0 || runs != [2]int{1, 1} {
		t.Errorf("%d conflicts, runs %v: want none, each batch run once", n, runs)
	}
}

// twoInstances opens two stores on one fresh PostgreSQL schema, as two
// deskmail instances would, with contacts for the two addresses (their
// ids returned in order), made by the first. Without PostgreSQL the
// test is skipped (DESKMAIL_PG=1, as in CI, fails it instead).
func twoInstances(t *testing.T, a, b string) ([2]*Store, [2]int64) {
	t.Helper()
	if !pgCluster.Available(t) {
		t.Skip("PostgreSQL is not available")
	}
	ctx := context.Background()
	url := pgCluster.URL(t)
	var stores [2]*Store
	for i := range stores {
		s, err := Open(ctx, url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	var ids [2]int64
	if err := stores[0].Write(ctx, func(tx *Tx) error {
		for i, email := range []string{a, b} {
			c, _, err := tx.EnsureContact(email, "")
			if err != nil {
				return err
			}
			ids[i] = c.ID
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return stores, ids
}

// renameLocked renames contact id and reads it back: the read sends the
// UPDATE a fast attempt queued before it, so the row is locked once it
// returns.
func renameLocked(tx *Tx, id int64, name string) error {
	if err := tx.SetContactName(id, name); err != nil {
		return err
	}
	_, err := tx.Contact(id)
	return err
}

// TestLockAheadBounded: a batch whose mail names more senders and
// tickets than PostgreSQL's lock table holds (hostile mail: a Reply-To
// of thousands of addresses, 100 ticket candidates a mail, 256 mails a
// batch) takes at most maxLockAhead locks and commits, rather than
// failing with "out of shared memory" (as 200,000 locks did, unbounded)
// and taking every other sender's mail of the batch down with it.
func TestLockAheadBounded(t *testing.T) {
	if !pgCluster.Available(t) {
		t.Skip("PostgreSQL is not available")
	}
	s := openKind(t, postgresStore, Options{})
	emails := make([]string, 200000)
	for i := range emails {
		emails[i] = fmt.Sprintf("sender%d@example.com", i)
	}
	var held int
	if err := s.WriteBatch(context.Background(), func(tx *Tx) error {
		if err := tx.LockAhead(emails); err != nil {
			return err
		}
		return tx.row(`SELECT COUNT(*) FROM pg_locks WHERE locktype='advisory' AND pid=pg_backend_pid()`).Scan(&held)
	}); err != nil {
		t.Fatalf("batch: %v", err)
	}
	if held == 0 || held > maxLockAhead {
		t.Errorf("%d advisory locks held, want 1..%d", held, maxLockAhead)
	}
}
