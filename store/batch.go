package store

import (
	"context"
	"fmt"
)

// A WriteBatch runs its function twice at most. The first attempt, the
// fast one, runs each Savepoint function without a SAVEPOINT: on SQLite
// a savepoint costs its SAVEPOINT and RELEASE statements and, above
// all, a copy of every page the function is the first to change into
// the statement journal, so that ROLLBACK TO can restore them (9% of
// the CPU of a batch ingest of 5,000 gen-mails); on PostgreSQL it also
// costs a round trip (see pgwrite.go). A failing Savepoint function is
// rare — a message that cannot be threaded — but the fast attempt
// cannot undo it alone: the attempt is then abandoned (the statements
// after it fail at once, its context being cancelled), rolled back,
// and the function runs again as Write runs it, with real savepoints,
// so that the failing message is set aside while its neighbours are
// stored.

// fastAttempt is the state of a fast attempt (on PostgreSQL shared
// with its pgTx): the first failure, and how to stop the statements
// after it.
type fastAttempt struct {
	failed error
	cancel context.CancelFunc
}

// fail records err as the reason the attempt is abandoned (the first
// one wins).
func (f *fastAttempt) fail(err error) {
	if f.failed == nil {
		f.failed = err
		f.cancel()
	}
}

// fastSavepoint is Savepoint in a fast attempt: fn runs without a
// SAVEPOINT, and if it fails or panics (on PostgreSQL: or a statement
// failed inside it), the attempt is abandoned, to run again with real
// savepoints.
func (t *Tx) fastSavepoint(fn func() error) (err error) {
	t.sp++
	defer func() { t.sp-- }()
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
			t.fast.fail(err)
		}
	}()
	if err := fn(); err != nil {
		t.fast.fail(fmt.Errorf("savepoint: %w", err))
		if t.pg != nil && t.pg.conflict != nil {
			return t.pg.conflicted() // as Savepoint returns it
		}
		return err
	}
	if err := t.flushClaim(); err != nil {
		return err
	}
	if f := t.fast.failed; f != nil {
		return fmt.Errorf("%w: %w", errAbandoned, f)
	}
	if t.pg != nil {
		t.pg.stream(t.quiet)
	}
	return nil
}
