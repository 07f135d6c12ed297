// Package store keeps deskmail's state in one SQLite database (WAL
// mode, foreign keys on, synchronous=FULL) and is the only package
// that speaks SQL.
//
// Concurrency: one writer connection serializes all writes through
// Store.Write, which runs a function inside one IMMEDIATE transaction;
// a pool of read-only connections serves Store.Read, each call seeing
// one consistent snapshot. Both are safe for use by many goroutines.
//
// Durability: when Write returns nil, the transaction is committed and
// synced to disk (synchronous=FULL in WAL mode), so callers may then
// acknowledge the mail to its source.
//
// Schema versions: migrations in schema.go run at Open. A database
// written by a newer deskmail (a higher user_version) is refused.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// ErrNotFound is returned when a requested row does not exist.
var ErrNotFound = errors.New("not found")

// ErrDuplicate is returned when a unique key (a Message-ID) is already
// present.
var ErrDuplicate = errors.New("duplicate")

// ErrTooNew is returned by Open for a database written by a newer
// deskmail.
var ErrTooNew = errors.New("database schema is newer than this deskmail")

// Store is an open deskmail database.
type Store struct {
	path   string
	writer *sql.DB
	reader *sql.DB
	// ckpt runs WAL checkpoints off the writer's path (see checkpoint.go).
	ckpt       *sql.DB
	walRestart int
	stopCkpt   context.CancelFunc
	ckptDone   chan struct{}
	shortLived bool
	// writing counts the Writes in progress (see readOnWriter).
	writing atomic.Int32
	// hook runs after every ticket write (see SetTicketHook).
	hook atomic.Pointer[TicketHook]
}

// Options tunes Open. The zero value is the durable default.
type Options struct {
	// Readers is the size of the read pool (default: 2×CPUs, at least 4).
	Readers int
	// BusyTimeout is how long a connection waits for a lock
	// (default 10s).
	BusyTimeout time.Duration
	// WALRestartFrames is the WAL length (4 KiB frames) past which the
	// checkpointer makes the WAL start over (default 16384: 64 MiB).
	WALRestartFrames int
	// ShortLived is for commands that open the database, do their work
	// and exit (`deskmail ingest -` behind an MTA runs once per mail,
	// several at a time): Close then copies nothing back (folding the
	// WAL in and truncating it waits for every other reader and writer,
	// and even a PASSIVE checkpoint of its own frames cost each such
	// process two fsyncs); the writer's automatic checkpoint (every 4096
	// frames, see shortDriver) bounds the WAL instead. SQLite itself
	// folds the WAL in when the last connection to the database closes,
	// so a lone command still leaves one complete file.
	// Reads outside a Write run on the writer's connection (see
	// readOnWriter): such a command opens one connection, not two.
	ShortLived bool
}

func dsn(path string, busy time.Duration, readOnly bool) string {
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_foreign_keys", "on")
	v.Set("_busy_timeout", fmt.Sprint(busy.Milliseconds()))
	v.Set("_synchronous", "FULL")
	v.Set("_txlock", "immediate")
	// Keep prepared statements per connection: a batch of messages runs
	// the same few queries thousands of times, and preparing each again
	// cost as much as running it. A page cache of 32 MB keeps the
	// indexes hot as the database grows.
	v.Set("_stmt_cache_size", "128")
	v.Set("_cache_size", "-32768")
	if readOnly {
		v.Set("_query_only", "true")
		v.Set("_txlock", "deferred")
	}
	return "file:" + url.PathEscape(path) + "?" + v.Encode()
}

// Open opens (creating if needed) the database at path, applies
// pending migrations and returns a Store ready for concurrent use.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty database path")
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.Readers <= 0 {
		opts.Readers = max(4, 2*runtime.NumCPU())
	}
	driverName := writerDriver
	if opts.ShortLived {
		driverName = shortDriver
	}
	w, err := sql.Open(driverName, dsn(path, opts.BusyTimeout, false))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Store{path: path, writer: w, shortLived: opts.ShortLived}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	r, err := sql.Open("sqlite3", dsn(path, opts.BusyTimeout, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	s.reader = r
	s.walRestart = opts.WALRestartFrames
	if s.walRestart <= 0 {
		s.walRestart = walRestartFrames
	}
	if err := s.startCheckpointer(opts.BusyTimeout); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// Path returns the database file name.
func (s *Store) Path() string { return s.path }

// Close stops the checkpointer, folds the WAL back into the database
// and closes every connection.
func (s *Store) Close() error {
	ckErr := s.stopCheckpointer()
	return errors.Join(ckErr, s.reader.Close(), s.writer.Close())
}

// SchemaVersion is the number of migrations this binary knows.
func SchemaVersion() int { return len(migrations) }

func (s *Store) migrate(ctx context.Context) error {
	var version int
	if err := s.writer.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: database is at version %d, this binary knows %d; upgrade deskmail", ErrTooNew, version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		tx, err := s.writer.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: set version: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: commit: %w", i+1, err)
		}
	}
	return nil
}

// Tx is one transaction: read-write inside Store.Write, read-only
// inside Store.Read. It must not be used after the function that
// received it returns.
type Tx struct {
	ctx  context.Context
	tx   querier
	sp   int
	now  func() time.Time
	read bool
	hook TicketHook
}

// querier is what a Tx runs its statements on: the *sql.Tx of Write
// and Read, or the writer's *sql.Conn inside a BEGIN (Read of a
// short-lived store, see readOnWriter).
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Write runs fn in one write transaction and commits it when fn
// returns nil; any error (or panic) rolls everything back. Writes are
// serialized: one Write runs at a time.
func (s *Store) Write(ctx context.Context, fn func(*Tx) error) (err error) {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	t := &Tx{ctx: ctx, tx: tx, now: time.Now}
	if h := s.hook.Load(); h != nil {
		t.hook = *h
	}
	s.writing.Add(1)
	defer s.writing.Add(-1)
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			err = fmt.Errorf("store: panic in transaction: %v", p)
		}
	}()
	if err := fn(t); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// Read runs fn in one read-only transaction (a consistent snapshot).
func (s *Store) Read(ctx context.Context, fn func(*Tx) error) error {
	if s.shortLived && s.writing.Load() == 0 {
		return s.readOnWriter(ctx, fn)
	}
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("store: begin read: %w", err)
	}
	defer tx.Rollback()
	return fn(&Tx{ctx: ctx, tx: tx, now: time.Now, read: true})
}

// readOnWriter runs fn in a read transaction on the writer's
// connection: a short-lived command that reads a few rows at start
// (the configuration check of `deskmail ingest -`, once per mail behind
// an MTA) then opens no second connection, which costs about a
// millisecond of CPU (SQLite parses the whole schema for each). A plain
// BEGIN takes no write lock until something writes, so other processes
// write on. While a Write holds the connection (a Read inside it), Read
// uses the read pool as before.
func (s *Store) readOnWriter(ctx context.Context, fn func(*Tx) error) (err error) {
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: begin read: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("store: begin read: %w", err)
	}
	defer func() {
		// Not ctx, which may be done: the connection goes back to the
		// pool, and must not go back inside the transaction.
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn }) // discarded, not reused
			err = errors.Join(err, fmt.Errorf("store: end read: %w", rerr))
		}
	}()
	return fn(&Tx{ctx: ctx, tx: conn, now: time.Now, read: true})
}

// Savepoint runs fn inside a savepoint: if fn fails, only its changes
// are rolled back and the outer transaction goes on. This is how a
// batch commits many messages at once, each all-or-nothing.
func (t *Tx) Savepoint(fn func() error) (err error) {
	t.sp++
	name := fmt.Sprintf("sp%d", t.sp)
	if _, err := t.tx.ExecContext(t.ctx, "SAVEPOINT "+name); err != nil {
		return fmt.Errorf("store: savepoint: %w", err)
	}
	rollback := func() error {
		if _, err := t.tx.ExecContext(t.ctx, "ROLLBACK TO "+name); err != nil {
			return err
		}
		_, err := t.tx.ExecContext(t.ctx, "RELEASE "+name)
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			if rerr := rollback(); rerr != nil {
				err = fmt.Errorf("store: panic %v; rollback failed: %w", p, rerr)
				return
			}
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	if err := fn(); err != nil {
		if rerr := rollback(); rerr != nil {
			return fmt.Errorf("%w (and rollback to savepoint failed: %v)", err, rerr)
		}
		return err
	}
	if _, err := t.tx.ExecContext(t.ctx, "RELEASE "+name); err != nil {
		return fmt.Errorf("store: release savepoint: %w", err)
	}
	return nil
}

// SetNow makes the rows this transaction writes from now on carry the
// time t (updated_at, created_at…) instead of the wall clock: the
// pipeline stamps a message's effects with its arrival time, so every
// timestamp of one change agrees.
func (t *Tx) SetNow(at time.Time) {
	if at.IsZero() {
		t.now = time.Now
		return
	}
	t.now = func() time.Time { return at }
}

// Now is the time the transaction stamps rows with (SetNow's, else
// the wall clock).
func (t *Tx) Now() time.Time { return t.now() }

// Context returns the context the transaction runs under.
func (t *Tx) Context() context.Context { return t.ctx }

func (t *Tx) exec(query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(t.ctx, query, args...)
}

func (t *Tx) query(query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(t.ctx, query, args...)
}

func (t *Tx) row(query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(t.ctx, query, args...)
}

func (t *Tx) insert(query string, args ...any) (int64, error) {
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// isUnique reports whether err is a UNIQUE or PRIMARY KEY violation.
func isUnique(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
	}
	return false
}

const timeLayout = "2006-01-02T15:04:05.000000Z"

// ts formats t for storage.
func ts(t time.Time) string { return t.UTC().Format(timeLayout) }

// nts formats an optional time.
func nts(t *time.Time) any {
	if t == nil || t.IsZero() {
		return nil
	}
	return ts(*t)
}

// pts parses a stored time; malformed values give the zero time.
func pts(s string) time.Time {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		t, _ = time.Parse(time.RFC3339Nano, s)
	}
	return t
}

// pnts parses an optional stored time.
func pnts(s sql.NullString) *time.Time {
	if !s.Valid || s.String == "" {
		return nil
	}
	t := pts(s.String)
	return &t
}

func nstr(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}

func nint(v sql.NullInt64) *int64 {
	if !v.Valid {
		return nil
	}
	return &v.Int64
}

func strOrNil(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func int64OrNil(v *int64) any {
	if v == nil {
		return nil
	}
	return *v
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}
