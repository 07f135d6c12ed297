package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
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

// shortDriver is the writer's driver in a ShortLived store: such a
// command (one `deskmail ingest -` per mail) does not copy the WAL back
// when it closes, so SQLite's own automatic checkpoint bounds the WAL
// instead — run by the commit that takes the WAL past shortAutoCheckpoint
// frames (16 MiB), after that commit, once in a few hundred mails.
const shortDriver = "sqlite3_deskmail_short"

// shortAutoCheckpoint is the ShortLived writer's wal_autocheckpoint:
// above the checkpointer's PASSIVE rounds in a long batch, so that a
// batch's commits rarely checkpoint on the writer.
const shortAutoCheckpoint = 4096

// writerTempStore keeps the writer's temporary files in memory. The one
// that matters is the savepoint's sub-journal: every message of a batch
// runs in a savepoint (Tx.Savepoint), and SQLite copies each page that
// existed before the savepoint into it the first time the message
// changes that page — some 25 pages per mail (the last leaf of every
// table, index leaves). In a file (/var/tmp/etilqs_*) that was two
// pwrite calls per page, half the process's system calls; in memory it
// is a copy, truncated at each RELEASE. Nothing durable lives there:
// the sub-journal only serves ROLLBACK TO.
const writerTempStore = "PRAGMA temp_store=MEMORY"

func init() {
	sql.Register(shortDriver, &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			if _, err := c.Exec(writerTempStore, nil); err != nil {
				return err
			}
			_, err := c.Exec(fmt.Sprintf("PRAGMA wal_autocheckpoint=%d", shortAutoCheckpoint), nil)
			return err
		},
	})
	sql.Register(writerDriver, &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			if _, err := c.Exec(writerTempStore, nil); err != nil {
				return err
			}
			_, err := c.Exec("PRAGMA wal_autocheckpoint=0", nil)
			return err
		},
	})
}

// Checkpoint tuning: how often the checkpointer runs, and the WAL size
// (in 4 KiB frames) above which it makes the WAL start over.
//
// SQLite reuses the WAL from its beginning only when a write begins
// after every frame was copied back; with a writer that is always busy
// that moment never comes, the WAL grows without bound and every
// lookup in it gets slower. So past walRestartFrames the checkpointer
// takes the write lock for a moment (an empty write transaction), copies
// the few frames written since its last pass, and lets the next write
// start the WAL over.
const (
	checkpointEvery  = 250 * time.Millisecond
	walRestartFrames = 16 << 10 // 64 MiB
)

// startCheckpointer arranges the checkpointer's rounds, every
// checkpointEvery. Its connection and its goroutine wait for the first
// round (time.AfterFunc runs the loop then): a command that ends
// sooner, such as one `deskmail ingest -` per mail behind an MTA,
// never opens the one nor starts the other (each goroutine of a
// process whose main thread is locked, see internal/oneshot, has to
// run on a second thread). The rounds are the same as with a ticker
// started at Open.
func (s *Store) startCheckpointer(busy time.Duration) error {
	s.ckpt = sync.OnceValues(func() (*sql.DB, error) {
		c, err := sql.Open("sqlite3", dsn(s.path, busy, false))
		if err != nil {
			return nil, fmt.Errorf("store: checkpointer: %w", err)
		}
		c.SetMaxOpenConns(1)
		s.ckptOpened.Store(true)
		return c, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopCkpt, s.ckptDone = cancel, done
	s.ckptStart = time.AfterFunc(checkpointEvery, func() {
		defer close(done)
		t := time.NewTicker(checkpointEvery)
		defer t.Stop()
		for {
			s.checkpoint(ctx, "PASSIVE")
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return nil
}

// checkpoint runs one checkpoint; errors (a busy database) are left
// for the next round. A PASSIVE one that leaves a long WAL is finished
// under the write lock so that the WAL starts over (see above).
func (s *Store) checkpoint(ctx context.Context, mode string) error {
	frames, done, err := s.walCheckpoint(ctx, mode)
	if err != nil {
		return err
	}
	if mode == "PASSIVE" && frames > s.walRestart {
		// Nothing is written while this empty transaction holds the
		// write lock, so this second pass copies everything left and
		// the next write restarts the WAL.
		err = s.Write(ctx, func(*Tx) error {
			frames, done, err = s.walCheckpoint(ctx, "PASSIVE")
			return err
		})
		if err == nil && done < frames {
			// A long read transaction still needs the old frames; the
			// next round tries again.
			return nil
		}
		if err == nil {
			s.walRestarts.Add(1)
		}
	}
	return err
}

// walCheckpoint runs PRAGMA wal_checkpoint(mode) on the checkpoint
// connection and returns the WAL's frames and how many are copied back.
func (s *Store) walCheckpoint(ctx context.Context, mode string) (frames, done int, err error) {
	c, err := s.ckpt()
	if err != nil {
		return 0, 0, err
	}
	var busy int
	err = c.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &frames, &done)
	if err != nil {
		return 0, 0, fmt.Errorf("store: checkpoint: %w", err)
	}
	return frames, done, nil
}

func (s *Store) stopCheckpointer() error {
	if s.stopCkpt == nil {
		return nil
	}
	s.stopCkpt()
	if !s.ckptStart.Stop() {
		// The rounds had begun: wait for the one under way.
		<-s.ckptDone
	}
	s.stopCkpt = nil
	if s.shortLived {
		// See Options.ShortLived: never wait for other processes, and
		// leave the copying to the automatic checkpoint (shortDriver)
		// or to SQLite's own at the last close.
		return s.closeCkpt()
	}
	// Fold the WAL into the database so the file is complete on its own.
	err := s.checkpoint(context.Background(), "TRUNCATE")
	return errors.Join(err, s.closeCkpt())
}

// closeCkpt closes the checkpointer's connection if a checkpoint
// opened it.
func (s *Store) closeCkpt() error {
	if !s.ckptOpened.Load() {
		return nil
	}
	c, err := s.ckpt()
	if err != nil {
		return err
	}
	return c.Close()
}
