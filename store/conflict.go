package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrConflict marks a write transaction that PostgreSQL aborted because
// it conflicted with another one, of this instance or of another on the
// same database: a deadlock (two batches waiting for rows each other
// holds: the tickets they update, the contacts they create) or a
// serialization failure. Nothing of such a transaction is committed,
// and nothing in it was wrong: run again, it goes through. WriteBatch
// runs it again by itself (see conflictRetries); Write, whose function
// runs once, returns the error.
//
// A conflict is never confined to a savepoint: the message whose
// statement lost the deadlock did nothing wrong, and keeping it raw as
// "failed" while its batch commits would leave a customer's mail off
// its ticket. Once a statement of a transaction has failed so, every
// later statement fails with ErrConflict too.
var ErrConflict = errors.New("store: the transaction conflicted with another one")

// Conflicts returns how many times WriteBatch ran a transaction again
// after a conflict, since the store was opened.
func (s *Store) Conflicts() int64 { return s.conflicts.Load() }

// conflictRetries is how many times WriteBatch runs a transaction
// again after a conflict before it gives up and returns ErrConflict.
const conflictRetries = 8

// isConflict reports whether err is PostgreSQL's deadlock_detected
// (40P01) or serialization_failure (40001).
func isConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// conflicted is the error a statement of p fails with once the
// transaction has conflicted; nil while it has not.
func (p *pgTx) conflicted() error {
	if p.conflict == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrConflict, p.conflict)
}

// conflictPause waits before the attempt-th run again (from 0) of a
// transaction that conflicted: a few milliseconds, doubling, with
// jitter, so that two instances that deadlocked do not meet again in
// step. It returns ctx's error if ctx ends first.
func conflictPause(ctx context.Context, attempt int) error {
	d := time.Duration(2<<min(attempt, 7)) * time.Millisecond
	d = d/2 + rand.N(d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maxLockAhead bounds the locks one LockAhead takes: PostgreSQL's
// lock table holds max_locks_per_transaction (64) times
// max_connections locks for all transactions together.
const maxLockAhead = 512

// Advisory lock classes of LockAhead (the first key of PostgreSQL's
// two-key advisory locks; pgSchemaLock uses the one-key form).
const (
	lockTicket  int32 = 0x646d0001
	lockAddress int32 = 0x646d0002
)

// LockAhead takes, at the start of a batch and in the one order every
// instance follows, the locks its messages' rows will need: advisory
// locks, held until the transaction ends, on the tickets the batch's
// Message-IDs name (those PrefetchMessageIDs found) and on the
// addresses given (the senders) whose contacts the batch may create or
// change: all but those PrefetchContacts found with a name. Two batches that touch the same tickets or customers then
// wait for each other at their start, whole, rather than each take one
// row and wait for the other's: the deadlock PostgreSQL would break
// after deadlock_timeout (1 s) by failing one of them (see
// ErrConflict). Rows reached another way (a ticket named by a subject
// token) can still cross; the batch then runs again.
//
// It does nothing on SQLite, whose writes are one at a time. The
// statement is queued in a fast attempt: it goes out before the next
// one, as anything but a plain INSERT does.
func (t *Tx) LockAhead(emails []string) error {
	if t.pg == nil {
		return nil
	}
	type key struct{ class, id int32 }
	seen := map[key]bool{}
	if c := t.msgIDs; c != nil {
		for _, m := range c.rows {
			if m.TicketID != nil {
				seen[key{lockTicket, int32(*m.TicketID)}] = true
			}
		}
	}
	for _, e := range emails {
		if c := t.contactFromCache(e, 0); c != nil && c.Name != "" {
			// A contact the batch only reads (EnsureContact changes
			// nothing but an empty name): no row of it gets locked.
			continue
		}
		if e = strings.ToLower(strings.TrimSpace(e)); e != "" {
			h := fnv.New32a()
			h.Write([]byte(e))
			seen[key{lockAddress, int32(h.Sum32())}] = true
		}
	}
	if len(seen) == 0 {
		return nil
	}
	keys := slices.SortedFunc(maps.Keys(seen), func(a, b key) int {
		return cmp.Or(cmp.Compare(a.class, b.class), cmp.Compare(a.id, b.id))
	})
	if len(keys) > maxLockAhead {
		// Hostile mail can name thousands of senders (a long Reply-To)
		// and tickets (100 candidates a mail, 256 mails a batch), past
		// what PostgreSQL's lock table holds ("out of shared memory"
		// would fail the whole batch, every other sender's mail with
		// it). The first ones in the order stay deadlock-free among
		// themselves; the rest may cross, and the batch then runs
		// again.
		keys = keys[:maxLockAhead]
	}
	classes, ids := make([]int32, len(keys)), make([]int32, len(keys))
	for i, k := range keys {
		classes[i], ids[i] = k.class, k.id
	}
	// unnest returns the rows in the arrays' order, and the locks are
	// taken row after row.
	if _, err := t.exec(`SELECT pg_advisory_xact_lock(c, k) FROM unnest(CAST(? AS INT4[]), CAST(? AS INT4[])) AS l(c, k)`, classes, ids); err != nil {
		return fmt.Errorf("store: lock ahead: %w", err)
	}
	return nil
}
