package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTest(t *testing.T, k storeKind) *Store {
	t.Helper()
	return openKind(t, k, Options{})
}

func TestOpenSettings(t *testing.T) {
	s := openTest(t, sqliteStore)
	ctx := context.Background()
	var mode string
	var fk, sync int
	s.writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
	s.writer.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk)
	s.writer.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync)
	if mode != "wal" || fk != 1 || sync != 2 {
		t.Fatalf("journal_mode=%s foreign_keys=%d synchronous=%d", mode, fk, sync)
	}
	// Readers cannot write.
	err := s.Read(ctx, func(tx *Tx) error { _, _, err := tx.EnsureContact("x@example.com", ""); return err })
	if err == nil {
		t.Fatal("a read transaction wrote")
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, _ := sql.Open("sqlite3", path)
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion()+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(context.Background(), path, Options{})
	if !errors.Is(err, ErrTooNew) || !strings.Contains(err.Error(), "upgrade deskmail") {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestMessageIDIsUnique(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		err := s.Write(ctx, func(tx *Tx) error {
			if err := tx.AddMessageID(MessageRef{MessageID: "a@b", Direction: "in"}); err != nil {
				return err
			}
			return tx.AddMessageID(MessageRef{MessageID: "a@b", Direction: "in"})
		})
		if !errors.Is(err, ErrDuplicate) {
			t.Fatalf("want ErrDuplicate, got %v", err)
		}
	})
}

func TestSavepointRollsBackOnlyItself(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		err := s.Write(ctx, func(tx *Tx) error {
			if _, _, err := tx.EnsureContact("kept@example.com", ""); err != nil {
				return err
			}
			err := tx.Savepoint(func() error {
				if _, _, err := tx.EnsureContact("dropped@example.com", ""); err != nil {
					return err
				}
				return errors.New("boom")
			})
			if err == nil {
				t.Error("savepoint error lost")
			}
			return tx.Savepoint(func() error { panic("bad message") })
		})
		if err != nil {
			// The panicking savepoint reports an error but the outer
			// transaction is intact; the test returns it to check that.
			if !strings.Contains(err.Error(), "panic") {
				t.Fatal(err)
			}
		}
		s.Write(ctx, func(tx *Tx) error { _, _, err := tx.EnsureContact("kept@example.com", ""); return err })
		s.Read(ctx, func(tx *Tx) error {
			if _, err := tx.ContactByEmail("dropped@example.com"); !errors.Is(err, ErrNotFound) {
				t.Errorf("rolled-back contact exists: %v", err)
			}
			return nil
		})
	})
}

// TestWriteBatchIsolatesFailures: in a WriteBatch, a change that fails
// — a statement the database refuses (on PostgreSQL its error only
// shows when the pipelined statements are sent), an error, a panic —
// rolls back that change only; its neighbours and what the batch does
// after it commit. On PostgreSQL the batch then runs twice (the fast
// attempt is abandoned); a batch without failures runs once.
func TestWriteBatchIsolatesFailures(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		runs := 0
		failed := make([]bool, 5)
		err := s.WriteBatch(ctx, func(tx *Tx) error {
			runs++
			for i := range failed {
				err := tx.Savepoint(func() error {
					if _, _, err := tx.EnsureContact(fmt.Sprintf("item%d@example.com", i), ""); err != nil {
						return err
					}
					switch i {
					case 1: // violates message_ids' CHECK on direction
						if _, err := tx.exec(`INSERT INTO message_ids(message_id, direction, created_at) VALUES (?,?,?)`, "bad@x", "sideways", ts(time.Now())); err != nil {
							return err
						}
					case 2:
						return errors.New("bad message")
					case 3:
						panic("bad message")
					}
					return tx.AddMessageID(MessageRef{MessageID: fmt.Sprintf("m%d@x", i), Direction: "in"})
				})
				if err != nil && tx.Context().Err() != nil {
					return err // the attempt is abandoned
				}
				failed[i] = err != nil
				if _, _, err := tx.EnsureContact(fmt.Sprintf("after%d@example.com", i), ""); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := []bool{false, true, true, true, false}; !slices.Equal(failed, want) {
			t.Errorf("failed = %v, want %v", failed, want)
		}
		// The fast attempt stops at the first failing savepoint; the
		// second runs with real savepoints.
		if runs != 2 {
			t.Errorf("batch ran %d times, want 2", runs)
		}
		s.Read(ctx, func(tx *Tx) error {
			for i, bad := range failed {
				_, err := tx.ContactByEmail(fmt.Sprintf("item%d@example.com", i))
				if bad != errors.Is(err, ErrNotFound) {
					t.Errorf("item %d (failed %v): contact: %v", i, bad, err)
				}
				if _, err := tx.ContactByEmail(fmt.Sprintf("after%d@example.com", i)); err != nil {
					t.Errorf("after item %d: %v", i, err)
				}
			}
			refs, err := tx.LookupMessageIDs([]string{"m0@x", "m4@x", "bad@x", "m2@x"})
			if err != nil || len(refs) != 2 {
				t.Errorf("message-ids %v, %v: want m0 and m4", refs, err)
			}
			return nil
		})
		runs = 0
		if err := s.WriteBatch(ctx, func(tx *Tx) error {
			runs++
			return tx.Savepoint(func() error { return tx.AddMessageID(MessageRef{MessageID: "ok@x", Direction: "in"}) })
		}); err != nil || runs != 1 {
			t.Errorf("batch without failures: %v, ran %d times", err, runs)
		}
	})
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					if err := s.Write(ctx, func(tx *Tx) error {
						_, _, err := tx.EnsureContact(fmt.Sprintf("g%d-%d@EXAMPLE.com", g, i), "")
						return err
					}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					if err := s.Read(ctx, func(tx *Tx) error { _, err := tx.Contacts(0, 10); return err }); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		s.Read(ctx, func(tx *Tx) error {
			c, err := tx.ContactByEmail("g3-7@example.COM")
			if err != nil || c.Email != "g3-7@EXAMPLE.com" {
				t.Errorf("case-insensitive contact lookup: %v %v", c, err)
			}
			return nil
		})
	})
}

func TestAttachmentContentStoredOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		err := s.Write(ctx, func(tx *Tx) error {
			c, _, err := tx.EnsureContact("a@example.com", "A")
			if err != nil {
				return err
			}
			tk := &Ticket{Subject: "s", Status: 2, RequesterID: c.ID}
			if err := tx.CreateTicket(tk); err != nil {
				return err
			}
			for i := 0; i < 3; i++ {
				conv := &Conversation{TicketID: tk.ID, Incoming: true, Files: []Attachment{{Filename: fmt.Sprintf("f%d.pdf", i), Content: []byte("same bytes")}}}
				if err := tx.AddConversation(conv); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var blobs, atts int
		s.writer.QueryRow("SELECT COUNT(*) FROM blobs").Scan(&blobs)
		s.writer.QueryRow("SELECT COUNT(*) FROM attachments").Scan(&atts)
		if blobs != 1 || atts != 3 {
			t.Fatalf("blobs=%d attachments=%d", blobs, atts)
		}
		s.Read(ctx, func(tx *Tx) error {
			a, err := tx.AttachmentContent(2)
			if err != nil || string(a.Content) != "same bytes" || a.Filename != "f1.pdf" {
				t.Errorf("attachment 2: %+v %v", a, err)
			}
			return nil
		})
	})
}

func TestCheckpointerKeepsWALOffTheWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var auto int
	s.writer.QueryRow("PRAGMA wal_autocheckpoint").Scan(&auto)
	if auto != 0 {
		t.Fatalf("writer wal_autocheckpoint = %d, want 0", auto)
	}
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		s.Write(ctx, func(tx *Tx) error {
			_, err := tx.AddRaw(&RawMessage{Source: "pipe", Data: make([]byte, 64<<10)})
			return err
		})
	}
	if err := s.checkpoint(ctx, "PASSIVE"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		t.Fatalf("WAL not folded back at close: %d bytes", fi.Size())
	}
	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _ := countRawForTest(s); n != 20 {
		t.Fatalf("raw messages after reopen: %d", n)
	}
}

func countRawForTest(s *Store) (int, error) {
	var n int
	err := s.Read(context.Background(), func(tx *Tx) error { var err error; n, err = tx.CountRaw(""); return err })
	return n, err
}

// TestWALStartsOverUnderContinuousWrites: with a writer that never
// pauses, the checkpointer still makes the WAL start over, so its file
// stays near the restart size instead of growing with everything ever
// written.
func TestWALStartsOverUnderContinuousWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	s, err := Open(context.Background(), path, Options{WALRestartFrames: 256}) // 1 MiB
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	written := 0
	var maxWAL int64
	blob := make([]byte, 64<<10)
	// Write without a pause until at least 40 MiB are written, the WAL
	// has started over a few times, and its file is no more than a
	// third of what was written — which a WAL that grows with
	// everything written never reaches. An amount of work, not a time:
	// on a loaded machine 2 seconds wrote too little to tell, and one
	// late checkpointer round can leave a larger peak, which more
	// writing then has to dwarf. The deadline and the 256 MiB bound only
	// stop a WAL that never starts over.
	deadline := time.Now().Add(2 * time.Minute)
	for written < 40<<20 || s.walRestarts.Load() < 3 || maxWAL > int64(written)/3 {
		if time.Now().After(deadline) || written > 256<<20 {
			t.Fatalf("WAL grew to %d MiB while %d MiB were written (it started over %d times): it does not stay small",
				maxWAL>>20, written>>20, s.walRestarts.Load())
		}
		err := s.Write(ctx, func(tx *Tx) error {
			for i := 0; i < 4; i++ {
				if _, err := tx.AddRaw(&RawMessage{Source: "pipe", Data: blob}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		written += 4 * len(blob)
		if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > maxWAL {
			maxWAL = fi.Size()
		}
	}
	t.Logf("wrote %d MiB, WAL peaked at %.1f MiB, started over %d times", written>>20, float64(maxWAL)/(1<<20), s.walRestarts.Load())
}

// A ShortLived store's Close does not wait for another process's open
// read transaction (a TRUNCATE checkpoint would, for the busy
// timeout), and a lone ShortLived store still leaves one complete file.
func TestShortLivedCloseDoesNotWait(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	other, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path, Options{ShortLived: true, BusyTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := addOneRaw(ctx, s); err != nil {
		t.Fatal(err)
	}
	reading, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- other.Read(ctx, func(tx *Tx) error {
			if _, err := tx.CountRaw(""); err != nil {
				return err
			}
			close(reading)
			<-release
			return nil
		})
	}()
	<-reading
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close waited %v for the other reader", d)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(ctx, path, Options{ShortLived: true})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := countRawForTest(s); err != nil || n != 1 {
		t.Fatalf("raw messages after reopen: %d (%v)", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		t.Fatalf("a lone short-lived store left a WAL of %d bytes", fi.Size())
	}
}

// A ShortLived store reads on its writer's connection (no second
// connection: SQLite parses the whole schema for each), sees what it
// wrote, is not held up by another process's write lock, falls back to
// the read pool for a Read inside a Write instead of waiting for itself,
// and leaves no transaction open when the context ends mid-read.
func TestShortLivedReadsOnWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := Open(ctx, path, Options{ShortLived: true, BusyTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	add := func() error { return addOneRaw(ctx, s) }
	if err := add(); err != nil {
		t.Fatal(err)
	}
	if n, err := countRawForTest(s); err != nil || n != 1 {
		t.Fatalf("raw messages: %d (%v)", n, err)
	}
	if s.reader != nil || s.readerOpened.Load() {
		t.Fatal("a ShortLived store opened its read pool for Reads outside a Write")
	}

	// Another process holds the write lock: reading goes on.
	other, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	locked, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- other.Write(ctx, func(tx *Tx) error {
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	start := time.Now()
	if n, err := countRawForTest(s); err != nil || n != 1 {
		t.Fatalf("raw messages under another's write lock: %d (%v)", n, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("read waited %v for another process's write lock", d)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A Read inside a Write.
	inner := make(chan error, 1)
	go func() {
		inner <- s.Write(ctx, func(tx *Tx) error {
			_, err := countRawForTest(s)
			return err
		})
	}()
	select {
	case err := <-inner:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Read inside a Write waited for its own connection")
	}
	if !s.readerOpened.Load() {
		t.Fatal("a Read inside a Write did not open the read pool")
	}

	// The context ends while reading: the connection goes back with no
	// transaction open, so the next write commits.
	cctx, cancel := context.WithCancel(ctx)
	err = s.Read(cctx, func(tx *Tx) error {
		if _, err := tx.CountRaw(""); err != nil {
			return err
		}
		cancel()
		return cctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read under a cancelled context: %v", err)
	}
	if err := add(); err != nil {
		t.Fatalf("write after a cancelled read: %v", err)
	}
	if n, err := countRawForTest(s); err != nil || n != 2 {
		t.Fatalf("raw messages: %d (%v)", n, err)
	}
}

// Short-lived commands that overlap (one `deskmail ingest -` per mail)
// never copy the WAL back at Close, and no Close is the last one while
// another connection stays open: the writer's automatic checkpoint
// still keeps the WAL from growing with everything written.
func TestShortLivedWALBounded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "b.db")
	s, err := Open(ctx, path, Options{ShortLived: true})
	if err != nil {
		t.Fatal(err)
	}
	var auto int
	if err := s.writer.QueryRow("PRAGMA wal_autocheckpoint").Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != shortAutoCheckpoint {
		t.Fatalf("short-lived writer wal_autocheckpoint = %d, want %d", auto, shortAutoCheckpoint)
	}
	s.Close()
	// Another process keeps the database open throughout.
	held, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.Exec("SELECT COUNT(*) FROM raw_messages"); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 64<<10)
	const runs, perRun = 40, 16 // 40 MiB in all
	for range runs {
		s, err := Open(ctx, path, Options{ShortLived: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, func(tx *Tx) error {
			for range perRun {
				if _, err := tx.AddRaw(&RawMessage{Source: "pipe", Data: blob}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if written := int64(runs * perRun * len(blob)); fi.Size() > written*2/3 {
		t.Fatalf("WAL grew to %d MiB while %d MiB were written", fi.Size()>>20, written>>20)
	}
	t.Logf("WAL %.1f MiB after %d MiB written", float64(fi.Size())/(1<<20), runs*perRun*len(blob)>>20)
}

// TestCancelStopsAtNextWrite: statements that write run under a context
// without cancellation (no goroutine per Exec in go-sqlite3), yet a
// transaction whose context is done stops at its next write — in a
// savepoint too — and commits nothing. The writer's temporary files
// (the savepoints' sub-journal) are in memory.
func TestCancelStopsAtNextWrite(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		if k == sqliteStore {
			var temp int
			if err := s.writer.QueryRowContext(context.Background(), "PRAGMA temp_store").Scan(&temp); err != nil || temp != 2 {
				t.Errorf("writer temp_store = %d (%v), want 2 (memory)", temp, err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		err := s.Write(ctx, func(tx *Tx) error {
			if _, _, err := tx.EnsureContact("first@example.com", ""); err != nil {
				return err
			}
			cancel()
			err := tx.Savepoint(func() error {
				_, _, err := tx.EnsureContact("second@example.com", "")
				return err
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("savepoint after cancel: %v, want context.Canceled", err)
			}
			_, _, err = tx.EnsureContact("third@example.com", "")
			return err
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("write after cancel: %v, want context.Canceled", err)
		}
		s.Read(context.Background(), func(tx *Tx) error {
			for _, e := range []string{"first@example.com", "second@example.com", "third@example.com"} {
				if _, err := tx.ContactByEmail(e); !errors.Is(err, ErrNotFound) {
					t.Errorf("%s committed by a cancelled transaction: %v", e, err)
				}
			}
			return nil
		})
	})
}

// TestCancelBeforeCommit: a transaction whose context ends after its
// last statement is rolled back, not committed, and says so; a read
// whose context ends stops at its next query. The connections go back
// to their pools with no transaction open.
func TestCancelBeforeCommit(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx, cancel := context.WithCancel(context.Background())
		err := s.Write(ctx, func(tx *Tx) error {
			_, _, err := tx.EnsureContact("late@example.com", "")
			cancel()
			return err
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("write cancelled before commit: %v, want context.Canceled", err)
		}
		rctx, rcancel := context.WithCancel(context.Background())
		err = s.Read(rctx, func(tx *Tx) error {
			rcancel()
			_, err := tx.ContactByEmail("late@example.com")
			return err
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel: %v, want context.Canceled", err)
		}
		if err := s.Write(context.Background(), func(tx *Tx) error {
			_, _, err := tx.EnsureContact("next@example.com", "")
			return err
		}); err != nil {
			t.Fatalf("write after a cancelled one: %v", err)
		}
		s.Read(context.Background(), func(tx *Tx) error {
			if _, err := tx.ContactByEmail("late@example.com"); !errors.Is(err, ErrNotFound) {
				t.Errorf("late@example.com committed by a cancelled transaction: %v", err)
			}
			if _, err := tx.ContactByEmail("next@example.com"); err != nil {
				t.Errorf("next@example.com: %v", err)
			}
			return nil
		})
	})
}

// TestReplyTextStoredOnce: a conversation whose reply text is its whole
// text (trimmed) keeps one copy of it (reply_is_text, reply_text
// empty); every conversation reads back with the reply text it was
// stored with, and editing the body makes the reply the new text.
func TestReplyTextStoredOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		cases := []struct{ text, reply string }{
			{"Bonjour,\nmon imprimante ne marche plus.\n", "Bonjour,\nmon imprimante ne marche plus."},
			{"Merci !\n\n> Le 3 mars, support a écrit :\n> texte cité\n", "Merci !"},
			{"Bonjour\n", "Bonjour\n"}, // not the trimmed text: stored as is
			{"  \n", ""},
			{"", ""},
		}
		var ticket int64
		err := s.Write(ctx, func(tx *Tx) error {
			c, _, err := tx.EnsureContact("a@example.com", "A")
			if err != nil {
				return err
			}
			tk := &Ticket{Subject: "s", Status: 2, RequesterID: c.ID}
			if err := tx.CreateTicket(tk); err != nil {
				return err
			}
			ticket = tk.ID
			for _, c := range cases {
				if err := tx.AddConversation(&Conversation{TicketID: tk.ID, Incoming: true, BodyText: c.text, ReplyText: c.reply}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var once, stored int
		if err := s.Read(ctx, func(tx *Tx) error {
			return tx.row(`SELECT COALESCE(SUM(reply_is_text), 0), COALESCE(SUM(LENGTH(reply_text)), 0) FROM conversations`).Scan(&once, &stored)
		}); err != nil {
			t.Fatal(err)
		}
		if want := len("Merci !") + len("Bonjour\n"); once != 3 || stored != want {
			t.Errorf("reply_is_text on %d conversations, %d bytes of reply_text stored; want 3 and %d", once, stored, want)
		}
		var convs []Conversation
		s.Read(ctx, func(tx *Tx) error { convs, err = tx.Conversations(ticket); return err })
		if len(convs) != len(cases) {
			t.Fatalf("%d conversations (%v), want %d", len(convs), err, len(cases))
		}
		for i, c := range cases {
			if convs[i].BodyText != c.text || convs[i].ReplyText != c.reply {
				t.Errorf("conversation %d: text %q reply %q, want %q %q", i, convs[i].BodyText, convs[i].ReplyText, c.text, c.reply)
			}
		}
		if err := s.Write(ctx, func(tx *Tx) error { return tx.UpdateConversationBody(convs[1].ID, "Edited\n", "") }); err != nil {
			t.Fatal(err)
		}
		s.Read(ctx, func(tx *Tx) error {
			c, err := tx.Conversation(convs[1].ID)
			if err != nil || c.BodyText != "Edited\n" || c.ReplyText != "Edited\n" {
				t.Errorf("edited conversation: %+v %v", c, err)
			}
			return nil
		})
	})
}

// TestReadersMapTheFile: the read pool's connections map the database
// (readerDriver), the writer's do not need to.
func TestReadersMapTheFile(t *testing.T) {
	s := openTest(t, sqliteStore)
	var size int64
	if err := s.reader.QueryRowContext(context.Background(), "PRAGMA mmap_size").Scan(&size); err != nil {
		t.Fatal(err)
	}
	if size != readerMmapSize {
		t.Fatalf("reader mmap_size = %d, want %d", size, readerMmapSize)
	}
}

// TestShortLivedOpensOnlyItsWriter: a ShortLived store that writes,
// reads and closes (one `deskmail ingest -`) opens no read pool and no
// checkpointer, not even at Close.
func TestShortLivedOpensOnlyItsWriter(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "one.db"), Options{ShortLived: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := addOneRaw(ctx, s); err != nil {
		t.Fatal(err)
	}
	if n, err := countRawForTest(s); err != nil || n != 1 {
		t.Fatalf("raw messages: %d (%v)", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.readerOpened.Load() || s.ckptOpened.Load() {
		t.Fatalf("read pool opened %v, checkpointer opened %v", s.readerOpened.Load(), s.ckptOpened.Load())
	}
}

// addOneRaw stores one small raw mail in its own write transaction.
func addOneRaw(ctx context.Context, s *Store) error {
	return s.Write(ctx, func(tx *Tx) error {
		_, err := tx.AddRaw(&RawMessage{Source: "pipe", Data: []byte("Subject: x\r\n\r\nbody\r\n")})
		return err
	})
}
