package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// IsPostgres reports whether a database setting names a PostgreSQL
// database (a postgres:// or postgresql:// URL) rather than a SQLite
// file.
func IsPostgres(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// Redact returns a database setting fit for logs and status output: a
// PostgreSQL URL without its password; a SQLite path as it is.
func Redact(database string) string {
	if !IsPostgres(database) {
		return database
	}
	u, err := url.Parse(database)
	if err != nil {
		return "postgres://(unparseable URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// pgSchemaLock is the advisory lock key under which migrations run, so
// that instances starting together migrate once.
const pgSchemaLock = 0x6465736b6d61696c // "deskmail"

// openPG opens a PostgreSQL store: the same shape as SQLite's — one
// writer connection (writes of one instance are serialized, which
// group commit relies on) and a pool of readers, each Read one
// REPEATABLE READ snapshot. Several instances share the database;
// PostgreSQL's row locks order their writes. synchronous_commit is
// forced on, so a committed Write is durable.
func openPG(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, fmt.Errorf("store: %s: invalid PostgreSQL URL", Redact(dsn))
	}
	if cfg.Password == "" && opts.Password != "" {
		cfg.Password = opts.Password
	}
	cfg.RuntimeParams["synchronous_commit"] = "on"
	cfg.RuntimeParams["application_name"] = "deskmail"
	name := Redact(dsn)
	// The writer waits for PostgreSQL's answer thousands of times a
	// second: on a blocking socket (pgsocket_linux.go).
	wcfg := cfg.Copy()
	wcfg.DialFunc = pgBlockingDial(cfg.DialFunc)
	w := stdlib.OpenDB(*wcfg, stdlib.OptionAfterConnect(pgWriterAfterConnect))
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", name, err)
	}
	s := &Store{path: dsn, name: name, writer: w, d: &dialect{pg: true}, shortLived: opts.ShortLived, verifyTickets: verifyTickets(opts)}
	if err := s.migratePG(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: %s: %w", name, err)
	}
	if s.pgDeps, err = s.loadPGDeps(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: %s: %w", name, err)
	}
	r := stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(pgAfterConnect))
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	s.reader = r
	return s, nil
}

// pgAfterConnect tunes each new connection: raw mail, bodies and
// blobs are compressed with LZ4 rather than PostgreSQL's default pglz,
// which cost about a tenth of the server's CPU per ingested message
// (the values it stores are stored as they were; reading needs no
// setting). A server built without LZ4, or older than PostgreSQL 14,
// refuses the setting and keeps pglz.
func pgAfterConnect(ctx context.Context, c *pgx.Conn) error {
	_, _ = c.Exec(ctx, "SET default_toast_compression = 'lz4'")
	return nil
}

// pgWriterAfterConnect tunes the writer's connection as pgAfterConnect
// does, and makes PostgreSQL plan each of its prepared statements once,
// generically (plan_cache_mode, PostgreSQL 12 and later; an older
// server keeps its default). The default plans a statement anew for
// its parameters (a custom plan) whenever that looks cheaper than the
// generic plan: the writer's thread query (TicketThread), run for every
// outbound mail, was planned again at 85% of its runs, 0.16 ms each, a
// tenth of PostgreSQL's CPU per ingested message. The writer's
// statements look rows up by key, where one plan serves every value;
// replan renews the plans as the tables grow. The readers, which run
// the searches and filtered lists whose best plan may depend on the
// values, keep the default.
func pgWriterAfterConnect(ctx context.Context, c *pgx.Conn) error {
	_, _ = c.Exec(ctx, "SET default_toast_compression = 'lz4'")
	_, _ = c.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	return nil
}

// pgAnalyzed are the tables ingestion looks rows up in, whose
// statistics replan keeps up to date while they are young.
var pgAnalyzed = []string{"agents", "contacts", "tickets", "ticket_tags", "ticket_cc", "ticket_custom_fields", "ticket_sla",
	"raw_messages", "conversations", "attachments", "blobs", "message_ids", "history", "outbox", "outbox_rcpt", "thread_indexes", "bounces"}

// replan renews the writer's query plans as the tables grow; Write
// calls it at the writer's 2nd, 4th, 8th… write. pgx prepares each
// statement once per connection, and PostgreSQL keeps a generic plan
// for it (see pgWriterAfterConnect), made with the statistics of the
// time: on a
// new database, for empty tables, where a sequential scan, or a walk
// through the hour's confirmations for the rate limit, looks cheapest
// and then gets slower with every message (measured: most of
// PostgreSQL's CPU in a 5,000-mail batch, until autovacuum's first
// ANALYZE a minute or more later). replan runs ANALYZE on the tables of
// pgAnalyzed with at least 1,000 rows (below, a never analyzed table is planned from its size on disk, which served better than statistics of a few pages) that were never analyzed or have
// more than doubled since (more changed rows than they had then), and
// drops the connection's cached plans (DISCARD PLANS; the statements
// stay prepared). On an established database it finds nothing to
// analyze. Failures are ignored: statistics only make plans better,
// and the write that follows must not fail for them (without the right
// to analyze a table, PostgreSQL skips it with a warning).
func (s *Store) replan(ctx context.Context) {
	rows, err := s.writer.QueryContext(ctx, `SELECT c.relname FROM pg_class c JOIN pg_stat_user_tables st ON st.relid = c.oid
		WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
		AND c.relname = ANY($1) AND st.n_live_tup >= 1000 AND (c.reltuples < 0 OR st.n_mod_since_analyze > c.reltuples)`, pgAnalyzed)
	if err != nil {
		return
	}
	var grown []string
	for rows.Next() {
		var name string
		if rows.Scan(&name) == nil {
			grown = append(grown, pgx.Identifier{name}.Sanitize())
		}
	}
	rows.Close()
	if len(grown) > 0 {
		_, _ = s.writer.ExecContext(ctx, "ANALYZE "+strings.Join(grown, ", "))
	}
	_, _ = s.writer.ExecContext(ctx, "DISCARD PLANS")
}

// migratePG applies pending migrations under an advisory lock; the
// version lives in the table deskmail_schema (SQLite's user_version).
func (s *Store) migratePG(ctx context.Context) error {
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", int64(pgSchemaLock)); err != nil {
		return fmt.Errorf("lock schema: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(pgSchemaLock))
	if _, err := conn.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE IF NOT EXISTS deskmail_schema (version INTEGER NOT NULL);
INSERT INTO deskmail_schema(version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM deskmail_schema)`); err != nil {
		return fmt.Errorf("create schema table: %w", err)
	}
	var version int
	if err := conn.QueryRowContext(ctx, "SELECT version FROM deskmail_schema").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: database is at version %d, this binary knows %d; upgrade deskmail", ErrTooNew, version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, s.d.migration(i)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE deskmail_schema SET version = $1", i+1); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: set version: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: commit: %w", i+1, err)
		}
	}
	return nil
}

// pgUnique reports whether err is PostgreSQL's unique_violation.
func pgUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// pgUnavailable reports whether err means PostgreSQL cannot take
// writes now: the server is unreachable or shutting down, out of disk
// or connections, or read-only (a standby).
func pgUnavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"),  // insufficient resources (disk full, too many connections)
			strings.HasPrefix(pe.Code, "57P"), // operator intervention (shutdown)
			pe.Code == "25006",                // read-only SQL transaction
			pe.Code == "55P03":                // lock not available
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, sql.ErrConnDone)
}

// Inspect names the store at path ("sqlite" or "postgresql") and the
// schema version its database is at, without creating or migrating it
// (what `deskmail version` reports). A database never opened by
// deskmail is at version 0.
func Inspect(ctx context.Context, path string, opts Options) (kind string, version int, err error) {
	if !IsPostgres(path) {
		if _, err := os.Stat(path); err != nil {
			return "sqlite", 0, fmt.Errorf("store: %w", err)
		}
		db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?mode=ro")
		if err != nil {
			return "sqlite", 0, fmt.Errorf("store: open %s: %w", path, err)
		}
		defer db.Close()
		if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
			return "sqlite", 0, fmt.Errorf("store: %s: %w", path, err)
		}
		return "sqlite", version, nil
	}
	cfg, err := pgx.ParseConfig(path)
	if err != nil {
		return "postgresql", 0, fmt.Errorf("store: %s: invalid PostgreSQL URL", Redact(path))
	}
	if cfg.Password == "" && opts.Password != "" {
		cfg.Password = opts.Password
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	err = db.QueryRowContext(ctx, "SELECT version FROM deskmail_schema").Scan(&version)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
		return "postgresql", 0, nil
	}
	if err != nil {
		return "postgresql", 0, fmt.Errorf("store: %s: %w", Redact(path), err)
	}
	return "postgresql", version, nil
}
