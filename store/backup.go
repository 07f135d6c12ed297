package store

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// ErrUsePgDump is Backup's answer on PostgreSQL.
var ErrUsePgDump = errors.New("store: a PostgreSQL database is backed up with pg_dump (pg_dump -Fc -f deskmail.dump 'postgres://…'; restore with pg_restore -d 'postgres://…' deskmail.dump), not deskmail backup")

// Backup writes a consistent copy of the database to dest with
// VACUUM INTO: it reads one snapshot, so ingestion goes on while it
// runs, and the copy is a complete, compact database that Open accepts
// as it is. dest must not exist.
//
// A PostgreSQL store is backed up with PostgreSQL's own tools
// (pg_dump); Backup returns ErrUsePgDump.
func (s *Store) Backup(ctx context.Context, dest string) error {
	if s.d.pg {
		return ErrUsePgDump
	}
	if _, err := os.Stat(dest); err == nil {
		return fmt.Errorf("store: backup: %s already exists", dest)
	}
	r, err := s.readPool()
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	conn, err := r.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	defer conn.Close()
	// The read pool is query_only; VACUUM INTO writes only the new file
	// but SQLite still checks the flag, so lift it on this connection.
	if _, err := conn.ExecContext(ctx, "PRAGMA query_only = false"); err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA query_only = true")
	if _, err := conn.ExecContext(ctx, "VACUUM INTO ?", dest); err != nil {
		return fmt.Errorf("store: backup to %s: %w", dest, err)
	}
	return nil
}
