package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
