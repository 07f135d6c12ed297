package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestPrefetchMessageIDs: after PrefetchMessageIDs, LookupMessageIDs
// answers what the database holds in the transaction, through the
// transaction's own claims, targets, savepoint rollbacks and other
// writes to message_ids, in a Write and in a WriteBatch (whose fast
// attempt on PostgreSQL queues the claims).
func TestPrefetchMessageIDs(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T, s *Store, ticketID int64, write writeFunc) {
		ctx := context.Background()
		if err := s.Write(ctx, func(tx *Tx) error {
			return tx.AddMessageID(MessageRef{MessageID: "old@x", Direction: "in", TicketID: &ticketID})
		}); err != nil {
			t.Fatal(err)
		}
		lookup := func(tx *Tx, id string) (MessageRef, bool) {
			t.Helper()
			refs, err := tx.LookupMessageIDs([]string{id})
			if err != nil {
				t.Fatalf("lookup %s: %v", id, err)
			}
			r, ok := refs[id]
			return r, ok
		}
		err := write(ctx, func(tx *Tx) error {
			if err := tx.PrefetchMessageIDs([]string{"old@x", "new@x", "sp@x", "new@x"}); err != nil {
				return err
			}
			if r, ok := lookup(tx, "old@x"); !ok || r.TicketID == nil || *r.TicketID != ticketID {
				t.Errorf("old@x: %+v, %v; want ticket %d", r, ok, ticketID)
			}
			if _, ok := lookup(tx, "new@x"); ok {
				t.Error("new@x found before its claim")
			}
			if err := tx.Savepoint(func() error {
				if err := tx.AddMessageID(MessageRef{MessageID: "new@x", Direction: "in"}); err != nil {
					return err
				}
				if r, ok := lookup(tx, "new@x"); !ok || r.TicketID != nil {
					t.Errorf("new@x after its claim: %+v, %v; want found, no ticket", r, ok)
				}
				if err := tx.SetMessageIDTarget("new@x", &ticketID, nil); err != nil {
					return err
				}
				if r, ok := lookup(tx, "new@x"); !ok || r.TicketID == nil || *r.TicketID != ticketID {
					t.Errorf("new@x after its target: %+v, %v; want ticket %d", r, ok, ticketID)
				}
				return nil
			}); err != nil {
				return err
			}
			// Any other write to message_ids is read back.
			if _, err := tx.exec(`UPDATE message_ids SET ticket_id=NULL WHERE message_id=?`, "old@x"); err != nil {
				return err
			}
			if r, ok := lookup(tx, "old@x"); !ok || r.TicketID != nil {
				t.Errorf("old@x after an UPDATE: %+v, %v; want found, no ticket", r, ok)
			}
			// A claim rolled back with its savepoint is forgotten.
			sp := tx.Savepoint(func() error {
				if err := tx.AddMessageID(MessageRef{MessageID: "sp@x", Direction: "in"}); err != nil {
					return err
				}
				return errors.New("the message fails")
			})
			if sp == nil {
				t.Error("the failing savepoint succeeded")
			}
			if tx.Context().Err() != nil {
				return sp // a fast attempt is abandoned: it runs again
			}
			if _, ok := lookup(tx, "sp@x"); ok {
				t.Error("sp@x found after its savepoint was rolled back")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Read(ctx, func(tx *Tx) error {
			refs, err := tx.LookupMessageIDs([]string{"old@x", "new@x", "sp@x"})
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := refs["new@x"]; !ok || r.TicketID == nil || *r.TicketID != ticketID {
				t.Errorf("new@x committed as %+v, %v; want ticket %d", r, ok, ticketID)
			}
			if r, ok := refs["old@x"]; !ok || r.TicketID != nil {
				t.Errorf("old@x committed as %+v, %v; want no ticket", r, ok)
			}
			if _, ok := refs["sp@x"]; ok {
				t.Error("sp@x committed")
			}
			return nil
		})
	})
}

// TestPrefetchManyMessageIDs: a prefetch of more ids than one query
// asks for (a batch of hostile mails naming a hundred each) answers
// every one of them.
func TestPrefetchManyMessageIDs(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		ids := make([]string, prefetchChunk+100)
		for i := range ids {
			ids[i] = fmt.Sprintf("m%d@x", i)
		}
		if err := s.Write(ctx, func(tx *Tx) error {
			for _, i := range []int{0, prefetchChunk - 1, prefetchChunk, len(ids) - 1} {
				if err := tx.AddMessageID(MessageRef{MessageID: ids[i], Direction: "in"}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, func(tx *Tx) error {
			if err := tx.PrefetchMessageIDs(append(ids, "bad\x00id@x")); err != nil {
				return err
			}
			refs, err := tx.LookupMessageIDs(ids)
			if err != nil {
				return err
			}
			if len(refs) != 4 {
				t.Errorf("found %d of the 4 stored ids", len(refs))
			}
			for _, i := range []int{0, prefetchChunk - 1, prefetchChunk, len(ids) - 1} {
				if _, ok := refs[ids[i]]; !ok {
					t.Errorf("%s not found", ids[i])
				}
			}
			_, err = tx.LookupMessageIDs([]string{"bad\x00id@x"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	})
}
