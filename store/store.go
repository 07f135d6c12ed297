// Package store keeps deskmail's state in one SQLite database (WAL
// mode, foreign keys on, synchronous=FULL) or in a PostgreSQL database
// shared by several instances (see postgres.go), and is the only
// package that speaks SQL. One schema, one migration list and one set
// of queries serve both; dialect.go holds the little that differs.
//
// Concurrency: one writer connection serializes all writes through
// Store.Write, which runs a function inside one IMMEDIATE transaction;
// a pool of read-only connections serves Store.Read, each call seeing
// one consistent snapshot. Both are safe for use by many goroutines.
//
// Durability: when Write returns nil, the transaction is committed and
// synced to disk (synchronous=FULL in WAL mode; synchronous_commit=on
// on PostgreSQL), so callers may then acknowledge the mail to its
// source.
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
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
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
	path string
	// verifyTickets is Options.VerifyTicketCache.
	verifyTickets bool
	// name is path fit for logs (a PostgreSQL URL without password).
	name   string
	d      *dialect
	writer *sql.DB
	// reader is the read pool, through readPool: in a ShortLived
	// SQLite store it is opened at its first use (openReader), since
	// such a command reads on its writer's connection (see Read) and
	// most never need it — database/sql starts a goroutine for every
	// pool it opens, which a process on internal/oneshot's locked main
	// thread runs on a second thread.
	reader     *sql.DB
	openReader func() (*sql.DB, error)
	// readerOpened tells Close whether openReader opened the pool.
	readerOpened atomic.Bool
	// ckpt is the connection that runs WAL checkpoints off the
	// writer's path, opened at its first use (see checkpoint.go).
	ckpt func() (*sql.DB, error)
	// ckptOpened tells Close whether ckpt opened the connection.
	ckptOpened atomic.Bool
	// ckptStart starts the checkpointer's rounds (see
	// startCheckpointer).
	ckptStart  *time.Timer
	walRestart int
	// walRestarts counts the checkpoints that let the WAL start over
	// (tests read it).
	walRestarts atomic.Int64
	stopCkpt    context.CancelFunc
	ckptDone    chan struct{}
	shortLived  bool
	// writing counts the Writes in progress (see Read).
	writing atomic.Int32
	// writes counts the Writes begun (PostgreSQL: see replan).
	writes atomic.Int64
	// conflicts counts the WriteBatch runs PostgreSQL aborted for a
	// conflict with another transaction, and that ran again (see
	// ErrConflict).
	conflicts atomic.Int64
	// pgDeps is what PostgreSQL's fast write attempts know of the
	// schema (see pgdeps.go); nil on SQLite.
	pgDeps *pgDeps
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
	// Read): such a command opens one connection, not two.
	ShortLived bool
	// Password is the PostgreSQL password when the URL has none (from
	// the configuration's database_password secret); PostgreSQL's own
	// PGPASSWORD and PGPASSFILE work too. Ignored for SQLite.
	Password string
	// VerifyTicketCache checks every ticket a write transaction answers
	// from memory against the database and fails the read on a
	// difference (see tickets): for tests; the environment variable
	// DESKMAIL_VERIFY_TICKET_CACHE=1 sets it too, so that the built
	// binary the integration tests run is checked as well.
	VerifyTicketCache bool
}

// verifyTickets is whether opts or the environment asks for the ticket
// cache to be checked.
func verifyTickets(opts Options) bool {
	return opts.VerifyTicketCache || os.Getenv("DESKMAIL_VERIFY_TICKET_CACHE") == "1"
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
// path is a SQLite file, or a postgres:// URL (IsPostgres) naming an
// existing PostgreSQL database.
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
	if IsPostgres(path) {
		return openPG(ctx, path, opts)
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
	s := &Store{path: path, name: path, d: &dialect{}, writer: w, shortLived: opts.ShortLived, verifyTickets: verifyTickets(opts)}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	openReader := func() (*sql.DB, error) {
		r, err := sql.Open(readerDriver, dsn(path, opts.BusyTimeout, true))
		if err != nil {
			return nil, fmt.Errorf("store: open %s for reading: %w", path, err)
		}
		r.SetMaxOpenConns(opts.Readers)
		r.SetMaxIdleConns(opts.Readers)
		return r, nil
	}
	if opts.ShortLived {
		s.openReader = sync.OnceValues(func() (*sql.DB, error) {
			r, err := openReader()
			if err == nil {
				s.readerOpened.Store(true)
			}
			return r, err
		})
	} else if s.reader, err = openReader(); err != nil {
		w.Close()
		return nil, err
	}
	s.walRestart = opts.WALRestartFrames
	if s.walRestart <= 0 {
		s.walRestart = walRestartFrames
	}
	if err := s.startCheckpointer(opts.BusyTimeout); err != nil {
		s.closeReader()
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// readPool returns the read pool, opening it if it is not yet open.
func (s *Store) readPool() (*sql.DB, error) {
	if s.reader != nil {
		return s.reader, nil
	}
	return s.openReader()
}

// closeReader closes the read pool if it was opened.
func (s *Store) closeReader() error {
	if s.reader != nil {
		return s.reader.Close()
	}
	if s.readerOpened.Load() {
		r, _ := s.openReader()
		return r.Close()
	}
	return nil
}

// Path returns the database file name (or PostgreSQL URL).
func (s *Store) Path() string { return s.path }

// Name returns the database for logs and status output: the file
// name, or the PostgreSQL URL without its password.
func (s *Store) Name() string { return s.name }

// Kind names the store: "sqlite" or "postgresql".
func (s *Store) Kind() string { return s.d.name() }

// Postgres reports whether the store is a PostgreSQL database.
func (s *Store) Postgres() bool { return s.d.pg }

// Version reads the schema version the database is at.
func (s *Store) Version(ctx context.Context) (int, error) {
	q := "PRAGMA user_version"
	if s.d.pg {
		q = "SELECT version FROM deskmail_schema"
	}
	r, err := s.readPool()
	if err != nil {
		return 0, err
	}
	var v int
	if err := r.QueryRowContext(ctx, q).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}

// Close stops the checkpointer, folds the WAL back into the database
// and closes every connection.
func (s *Store) Close() error {
	if s.d.pg {
		return errors.Join(s.reader.Close(), s.writer.Close())
	}
	ckErr := s.stopCheckpointer()
	return errors.Join(ckErr, s.closeReader(), s.writer.Close())
}

// SchemaVersion is the number of migrations this binary knows.
func SchemaVersion() int { return len(migrations) }

func (s *Store) migrate(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var version int
	// Not under ctx: database/sql watches a query's cancellable
	// context on a goroutine of its own, and this one is short.
	if err := s.writer.QueryRowContext(context.WithoutCancel(ctx), "PRAGMA user_version").Scan(&version); err != nil {
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
	ctx context.Context
	// quiet is ctx without its cancellation, for SQLite statements that
	// write (see execContext).
	quiet context.Context
	tx    querier
	d     *dialect
	sp    int // savepoint depth
	now   func() time.Time
	read  bool
	hook  TicketHook
	// people is what the transaction has read of agents and contacts
	// (see people).
	people *people
	// tickets is what the transaction has read and written of tickets
	// (see tickets); verifyTickets checks each answer from it against
	// the database (Options.VerifyTicketCache).
	tickets       *tickets
	verifyTickets bool
	// writingThrough is set while a write whose effect on the caches
	// its caller applies runs (see throughCaches).
	writingThrough bool
	// msgIDs is what the transaction remembers of message_ids
	// (PrefetchMessageIDs); nil: nothing.
	msgIDs *msgIDs
	// threads are the ticket threads the transaction knows whole, kept
	// up to date (see thread); enqueuing is set while EnqueueOutbox
	// runs.
	threads   *threadState
	enqueuing bool
	// sentTo is what the transaction remembers of mail sent to a few
	// addresses (PrefetchOutboxTo).
	sentTo *sentTo
	// pg, in a PostgreSQL write transaction, runs the statements
	// instead of tx (see pgwrite.go).
	pg *pgTx
	// fast is the state of a WriteBatch's first attempt (see
	// batch.go; on PostgreSQL pg.fast too); nil otherwise.
	fast *fastAttempt
	// later is what the transaction puts off until its function
	// returns (see RenderLater); nil when nothing may be.
	later *later
	// claim is the Message-ID insertion put off, missing the ids a
	// lookup found missing since the last write to message_ids (see
	// claim.go).
	claim   *claim
	missing map[string]bool
}

// rows are the rows of a query: *sql.Rows, or *pgRows in a PostgreSQL
// write transaction.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Close() error
	Err() error
}

// row is the result of a single-row query (sql.ErrNoRows when none).
type row interface {
	Scan(dest ...any) error
}

// querier is what a Tx runs its statements on outside a PostgreSQL
// write (see pgwrite.go): the *sql.Tx of Read on PostgreSQL, or on
// SQLite a *sql.Conn inside a BEGIN of its own (readOn, writeSQLite).
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Write runs fn in one write transaction and commits it when fn
// returns nil; any error (or panic) rolls everything back. Writes are
// serialized: one Write runs at a time.
func (s *Store) Write(ctx context.Context, fn func(*Tx) error) (err error) {
	if s.d.pg {
		return s.writePG(ctx, false, fn)
	}
	return s.writeSQLite(ctx, nil, fn)
}

// writeSQLite is Write on the SQLite writer's connection, in a
// transaction begun (BEGIN IMMEDIATE) and ended by hand rather than by
// database/sql's Tx, for the reason readOn gives: a Tx starts a
// goroutine for every query run in it, a dozen per message of a batch.
// A cancelled ctx stops fn at its next statement (execContext,
// stmtContext) and the transaction is rolled back, never committed.
// fast, when not nil, makes it WriteBatch's first attempt (batch.go).
func (s *Store) writeSQLite(ctx context.Context, fast *fastAttempt, fn func(*Tx) error) error {
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer conn.Close()
	quiet := context.WithoutCancel(ctx)
	if _, err := conn.ExecContext(quiet, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	rollback := func() error { return rollbackConn(quiet, conn) }
	commit := func() error {
		if err := ctx.Err(); err != nil {
			rollback()
			return err
		}
		if _, err := conn.ExecContext(quiet, "COMMIT"); err != nil {
			// SQLite may leave the transaction open (SQLITE_BUSY).
			rollback()
			return err
		}
		return nil
	}
	return s.runWrite(ctx, conn, fast, fn, commit, rollback)
}

// runWrite runs fn in the write transaction q, then commits it (or
// rolls it back on an error or a panic). In a fast attempt (fast not
// nil) whose savepoint function failed, it rolls back and returns
// errAbandoned.
func (s *Store) runWrite(ctx context.Context, q querier, fast *fastAttempt, fn func(*Tx) error, commit, rollback func() error) (err error) {
	t := &Tx{ctx: ctx, quiet: context.WithoutCancel(ctx), tx: q, d: s.d, now: time.Now, verifyTickets: s.verifyTickets}
	defer t.stopLater()
	if fast != nil {
		var cancel context.CancelFunc
		t.ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		fast.cancel = cancel
		t.fast = fast
	}
	if h := s.hook.Load(); h != nil {
		t.hook = *h
	}
	s.writing.Add(1)
	defer s.writing.Add(-1)
	defer func() {
		if p := recover(); p != nil {
			rollback()
			if fast != nil {
				err = fmt.Errorf("%w: panic in transaction: %v", errAbandoned, p)
				return
			}
			err = fmt.Errorf("store: panic in transaction: %v", p)
		}
	}()
	ferr := fn(t)
	if fast != nil && fast.failed != nil {
		rollback()
		return fmt.Errorf("%w: %w", errAbandoned, fast.failed)
	}
	if ferr != nil {
		rollback()
		return ferr
	}
	if err := t.flushClaim(); err != nil {
		rollback()
		return fmt.Errorf("%w: %w", errAbandoned, err)
	}
	if err := t.runLater(); err != nil {
		rollback()
		return err
	}
	if err := commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// WriteBatch is Write for a batch of independent changes, each inside
// its own Tx.Savepoint (a group commit of messages): the same contract,
// but fn may run twice. It first runs without savepoints (on
// PostgreSQL also with its statements pipelined); if any Savepoint
// function fails (on PostgreSQL: or any statement), that attempt is
// rolled back and fn runs again exactly as Write runs it (see
// batch.go). fn must therefore keep no state across runs other than
// what it sets afresh (results it overwrites), and do nothing outside
// the transaction.
func (s *Store) WriteBatch(ctx context.Context, fn func(*Tx) error) error {
	if s.d.pg {
		return s.writePG(ctx, true, fn)
	}
	err := s.writeSQLite(ctx, &fastAttempt{}, fn)
	if errors.Is(err, errAbandoned) {
		return s.writeSQLite(ctx, nil, fn)
	}
	return err
}

// Read runs fn in one read-only transaction (a consistent snapshot).
func (s *Store) Read(ctx context.Context, fn func(*Tx) error) error {
	if s.d.pg {
		// One snapshot for the whole function, as SQLite's read
		// transaction gives.
		tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
		if err != nil {
			return fmt.Errorf("store: begin read: %w", err)
		}
		defer tx.Rollback()
		return fn(&Tx{ctx: ctx, quiet: context.WithoutCancel(ctx), tx: tx, d: s.d, now: time.Now, read: true})
	}
	if s.shortLived && s.writing.Load() == 0 {
		// A short-lived command that reads a few rows at start (the
		// configuration check of `deskmail ingest -`, once per mail
		// behind an MTA) then opens no second connection, which costs
		// about a millisecond of CPU (SQLite parses the whole schema for
		// each). A plain BEGIN takes no write lock until something
		// writes, so other processes write on. While a Write holds the
		// writer (a Read inside it), Read uses the read pool as usual.
		return s.readOn(ctx, s.writer, fn)
	}
	r, err := s.readPool()
	if err != nil {
		return fmt.Errorf("store: begin read: %w", err)
	}
	return s.readOn(ctx, r, fn)
}

// readOn runs fn in a read transaction on a connection of db, begun
// and ended by hand rather than by database/sql's Tx: a Tx watches its
// context on a goroutine of its own and, through it, starts one more
// goroutine for every query run in it — whatever the query's context —
// which cost an API ticket view (six short queries) a tenth of its CPU.
// Statements run under a context that is never cancelled (see
// stmtContext): each checks ctx first, so fn stops at its next
// statement once ctx is done; the long scans of searches and lists stay
// interruptible (scanQuery, scanRow).
func (s *Store) readOn(ctx context.Context, db *sql.DB, fn func(*Tx) error) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: begin read: %w", err)
	}
	defer conn.Close()
	quiet := context.WithoutCancel(ctx)
	if _, err := conn.ExecContext(quiet, "BEGIN"); err != nil {
		return fmt.Errorf("store: begin read: %w", err)
	}
	defer func() {
		// Not ctx, which may be done: the connection goes back to the
		// pool, and must not go back inside the transaction.
		if rerr := rollbackConn(quiet, conn); rerr != nil {
			err = errors.Join(err, fmt.Errorf("store: end read: %w", rerr))
		}
	}()
	return fn(&Tx{ctx: ctx, quiet: quiet, tx: conn, d: s.d, now: time.Now, read: true})
}

// rollbackConn ends the transaction open on conn; a connection whose
// ROLLBACK fails is discarded, never put back in its pool inside a
// transaction.
func rollbackConn(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn })
		return err
	}
	return nil
}

// Savepoint runs fn inside a savepoint: if fn fails, only its changes
// are rolled back and the outer transaction goes on. This is how a
// batch commits many messages at once, each all-or-nothing. A conflict
// with another transaction (ErrConflict) is the exception: it fails the
// whole transaction, which WriteBatch runs again.
func (t *Tx) Savepoint(fn func() error) (err error) {
	if t.fast != nil {
		return t.fastSavepoint(fn)
	}
	// Named by depth, not by count: the few names are prepared once and
	// stay in the statement caches (PostgreSQL's pgx and SQLite's), where
	// a new name per message cost a prepare each and filled the caches.
	// A name reused at the same depth is never ambiguous: the savepoint
	// before it was released or rolled back.
	t.sp++
	defer func() { t.sp-- }()
	name := "sp" + strconv.Itoa(t.sp)
	ctx, err := t.execContext()
	if err != nil {
		return fmt.Errorf("store: savepoint: %w", err)
	}
	if _, err := t.plainExec(ctx, "SAVEPOINT "+name); err != nil {
		return fmt.Errorf("store: savepoint: %w", err)
	}
	mark := t.laterMark()
	rollback := func() error {
		t.people, t.tickets, t.msgIDs, t.threads, t.sentTo = nil, nil, nil, nil, nil
		t.laterRollback(mark)
		// Even when ctx is done: the outer transaction goes on.
		if _, err := t.plainExec(t.quiet, "ROLLBACK TO "+name); err != nil {
			return err
		}
		_, err := t.plainExec(t.quiet, "RELEASE "+name)
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
		if t.pg != nil && (t.pg.conflict != nil || isConflict(err)) {
			// Not this savepoint's failure: the whole transaction
			// runs again (see ErrConflict).
			if t.pg.conflict == nil {
				t.pg.conflict = err
			}
			return t.pg.conflicted()
		}
		if rerr := rollback(); rerr != nil {
			return fmt.Errorf("%w (and rollback to savepoint failed: %v)", err, rerr)
		}
		return err
	}
	if ctx, err = t.execContext(); err != nil {
		if rerr := rollback(); rerr != nil {
			return fmt.Errorf("store: release savepoint: %w (and rollback failed: %v)", err, rerr)
		}
		return fmt.Errorf("store: release savepoint: %w", err)
	}
	if _, err := t.plainExec(ctx, "RELEASE "+name); err != nil {
		return fmt.Errorf("store: release savepoint: %w", err)
	}
	return nil
}

// plainExec runs a statement without arguments as it is, under ctx.
func (t *Tx) plainExec(ctx context.Context, query string) (sql.Result, error) {
	if t.pg != nil {
		return t.pg.exec(ctx, ctx, query, nil)
	}
	return t.tx.ExecContext(ctx, query)
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

// exec, query and row run one statement written for SQLite (`?`
// placeholders) in the store's dialect.
func (t *Tx) exec(query string, args ...any) (sql.Result, error) {
	if err := t.beforeStatement(query); err != nil {
		return nil, err
	}
	t.forgetPeople(query, args)
	if t.pg != nil {
		return t.pg.exec(t.ctx, t.quiet, t.d.q(query), pgArgs(args))
	}
	if t.d.pg {
		return t.tx.ExecContext(t.ctx, t.d.q(query), pgArgs(args)...)
	}
	ctx, err := t.execContext()
	if err != nil {
		return nil, err
	}
	return t.tx.ExecContext(ctx, query, args...)
}

// execContext is the context a SQLite statement that writes runs
// under: none once t's context is done (the transaction then stops at
// its next statement), else one that is never cancelled. go-sqlite3
// runs every Exec whose context can be cancelled on a goroutine of its
// own, to interrupt it; for the dozen short INSERTs and UPDATEs of each
// message that goroutine and the wake-ups around it cost more than the
// statements (half the process's futex calls in a batch ingest).
// Queries are not concerned: go-sqlite3 watches their context without
// a goroutine, and a long read may still be interrupted.
func (t *Tx) execContext() (context.Context, error) {
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	return t.quiet, nil
}

func (t *Tx) query(query string, args ...any) (rows, error) {
	if err := t.beforeStatement(query); err != nil {
		return nil, err
	}
	if t.pg != nil {
		r, err := t.pg.query(t.ctx, t.quiet, t.d.q(query), pgArgs(args))
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	if t.d.pg {
		return t.tx.QueryContext(t.ctx, t.d.q(query), pgArgs(args)...)
	}
	return t.tx.QueryContext(t.stmtContext(), query, args...)
}

func (t *Tx) row(query string, args ...any) row {
	if err := t.beforeStatement(query); err != nil {
		return failedRow{err}
	}
	if t.pg != nil {
		return t.pg.row(t.ctx, t.quiet, t.d.q(query), pgArgs(args))
	}
	if t.d.pg {
		return t.tx.QueryRowContext(t.ctx, t.d.q(query), pgArgs(args)...)
	}
	return t.tx.QueryRowContext(t.stmtContext(), query, args...)
}

// scanQuery and scanRow are query and row for the statements that may
// scan many rows (searches, filtered lists, counts): they run under the
// transaction's own context, so that go-sqlite3 interrupts them when it
// is cancelled (a client gone, the daemon stopping).
func (t *Tx) scanQuery(query string, args ...any) (rows, error) {
	if err := t.beforeStatement(query); err != nil {
		return nil, err
	}
	if t.pg != nil {
		return t.query(query, args...)
	}
	if t.d.pg {
		return t.tx.QueryContext(t.ctx, t.d.q(query), pgArgs(args)...)
	}
	return t.tx.QueryContext(t.ctx, query, args...)
}

func (t *Tx) scanRow(query string, args ...any) row {
	if err := t.beforeStatement(query); err != nil {
		return failedRow{err}
	}
	if t.pg != nil {
		return t.row(query, args...)
	}
	if t.d.pg {
		return t.tx.QueryRowContext(t.ctx, t.d.q(query), pgArgs(args)...)
	}
	return t.tx.QueryRowContext(t.ctx, query, args...)
}

// stmtContext is the context a short SQLite query runs under: t's own
// once it is done (the query then fails at once with its error), else
// one that is never cancelled. database/sql starts a goroutine to watch
// a query's context when it can be cancelled; for the short lookups
// that make up most transactions, that goroutine cost more than the
// query. The statement that is running when ctx is cancelled finishes.
func (t *Tx) stmtContext() context.Context {
	if t.ctx.Err() != nil {
		return t.ctx
	}
	return t.quiet
}

// insert runs an INSERT into a table with an id column and returns
// the new row's id (RETURNING id on PostgreSQL, which has no
// LastInsertId).
func (t *Tx) insert(query string, args ...any) (int64, error) {
	if t.pg != nil && t.fast != nil {
		// queueInsert runs no beforeStatement.
		t.forgetCached(query)
		if id, ok, err := t.queueInsert(query, args); ok {
			return id, err
		}
	}
	if t.d.pg {
		// Sent now: a mail's bytes put off are waited for here.
		if err := resolveLazy(args); err != nil {
			return 0, err
		}
		t.forgetPeople(query, args)
		var id int64
		err := t.row(query+" RETURNING id", args...).Scan(&id)
		return id, err
	}
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// insertOrNothing runs an INSERT … ON CONFLICT DO NOTHING into a table
// with an id column: the new id and true, or false when the row
// existed.
func (t *Tx) insertOrNothing(query string, args ...any) (int64, bool, error) {
	if t.d.pg {
		id, err := t.insert(query, args...)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false, nil
		}
		return id, err == nil, err
	}
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, false, err
	}
	id, err := res.LastInsertId()
	return id, err == nil, err
}

// isUnique reports whether err is a UNIQUE or PRIMARY KEY violation.
func isUnique(err error) bool {
	if pgUnique(err) {
		return true
	}
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
