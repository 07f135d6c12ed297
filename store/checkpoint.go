package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// writerDriver is the SQLite driver for the writer connection: it turns
// off SQLite's automatic checkpoint, which would otherwise copy WAL
// pages into the database inside a commit — on the one connection every
// message waits for. A checkpointer goroutine on its own connection does
// that work beside the writer instead (PASSIVE checkpoints never block
// writers or readers).
const writerDriver = "sqlite3_deskmail_writer"

func init() {
	sql.Register(writerDriver, &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			_, err := c.Exec("PRAGMA wal_autocheckpoint=0", nil)
			return err
		},
	})
}

// Checkpoint tuning: how often the checkpointer runs, and the WAL size
// (in 4 KiB frames) above which it waits for readers to make the WAL
// restart from the beginning, so that the file stays bounded.
const (
	checkpointEvery   = 250 * time.Millisecond
	checkpointRestart = 64 << 10 // frames: 256 MiB
)

func (s *Store) startCheckpointer(busy time.Duration) error {
	c, err := sql.Open("sqlite3", dsn(s.path, busy, false))
	if err != nil {
		return fmt.Errorf("checkpointer: %w", err)
	}
	c.SetMaxOpenConns(1)
	s.ckpt = c
	ctx, cancel := context.WithCancel(context.Background())
	s.stopCkpt, s.ckptDone = cancel, make(chan struct{})
	go func() {
		defer close(s.ckptDone)
		t := time.NewTicker(checkpointEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.checkpoint(ctx, "PASSIVE")
			}
		}
	}()
	return nil
}

// checkpoint runs one checkpoint; errors (a busy database) are left
// for the next round.
func (s *Store) checkpoint(ctx context.Context, mode string) error {
	var busy, frames, done int
	err := s.ckpt.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &frames, &done)
	if err != nil {
		return fmt.Errorf("store: checkpoint: %w", err)
	}
	if mode == "PASSIVE" && frames > checkpointRestart {
		return s.checkpoint(ctx, "RESTART")
	}
	return nil
}

func (s *Store) stopCheckpointer() error {
	if s.stopCkpt == nil {
		return nil
	}
	s.stopCkpt()
	<-s.ckptDone
	s.stopCkpt = nil
	// Fold the WAL into the database so the file is complete on its own.
	err := s.checkpoint(context.Background(), "TRUNCATE")
	return errors.Join(err, s.ckpt.Close())
}
