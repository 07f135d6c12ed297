package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// ErrUnavailable marks an error meaning the database cannot take
// writes now (disk full, read-only, locked past the timeout); such a
// failure is temporary from the caller's view: retry later.
var ErrUnavailable = errors.New("database cannot take writes")

// MinFreeBytes is the free space below which ProbeWrite reports the
// disk full: a write the size of one large message would fail.
const MinFreeBytes = 1 << 20

// IsUnavailable reports whether err means the database cannot take
// writes now: ErrUnavailable, or SQLite's full, read-only, busy,
// locked, I/O or cannot-open errors.
func IsUnavailable(err error) bool {
	if errors.Is(err, ErrUnavailable) || pgUnavailable(err) {
		return true
	}
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case sqlite3.ErrFull, sqlite3.ErrReadonly, sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrIoErr, sqlite3.ErrCantOpen:
		return true
	}
	return false
}

// ProbeWrite checks that the database takes writes: the file system
// holding it has at least MinFreeBytes free, and a write transaction
// (the settings row ready_probe) commits within timeout — on the same
// writer connection as every other write, so a lock held elsewhere, a
// read-only file system or a full disk all fail it. The error wraps
// ErrUnavailable.
func (s *Store) ProbeWrite(ctx context.Context, timeout time.Duration) error {
	if !s.d.pg { // PostgreSQL's disk is the server's: the write below tells
		dir := filepath.Dir(s.path)
		var fs syscall.Statfs_t
		if err := syscall.Statfs(dir, &fs); err == nil {
			if free := fs.Bavail * uint64(fs.Bsize); free < MinFreeBytes {
				return fmt.Errorf("%w: disk full (%d bytes free in %s)", ErrUnavailable, free, dir)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- s.Write(ctx, func(tx *Tx) error { return tx.PutSetting("ready_probe", ts(tx.now())) })
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil
	case <-ctx.Done():
		// SQLite's busy handler does not watch the context: the write
		// goes on waiting for the lock in the background and gives up
		// at the busy timeout.
		return fmt.Errorf("%w: no write lock within %s (the database is locked or the writer is stuck)", ErrUnavailable, timeout)
	}
}
