package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestBatchStreamsItsStatements: in a batch on PostgreSQL, each
// message's queued statements go out at its end while the next one
// runs (pgTx.stream), new tickets take ids that rode along (numbered
// without gaps), everything commits; and a statement that fails on
// the server after it was streamed abandons the attempt as it would
// have at any send: the batch runs again with savepoints, the failing
// message alone is left out, and the ticket numbers skip no more than
// the abandoned attempt used and held.
func TestBatchStreamsItsStatements(t *testing.T) {
	if !pgCluster.Available(t) {
		t.Skip("PostgreSQL is not available")
	}
	s := openKind(t, postgresStore, Options{VerifyTicketCache: true})
	ctx := context.Background()
	const n = 40
	batch := func(prefix string, bad int) (ids []int64, streamed, runs int, failed []int) {
		err := s.WriteBatch(ctx, func(tx *Tx) error {
			runs++
			ids, failed = nil, nil
			tx.ExpectNewTickets(n)
			for i := range n {
				var id int64
				err := tx.Savepoint(func() error {
					c, _, err := tx.EnsureContact(fmt.Sprintf("%s%d@customer.example", prefix, i), "")
					if err != nil {
						return err
					}
					tk := &Ticket{Subject: fmt.Sprint(prefix, i), Status: 2, RequesterID: c.ID}
					if err := tx.CreateTicket(tk); err != nil {
						return err
					}
					id = tk.ID
					conv := &Conversation{TicketID: tk.ID, Incoming: true, FromEmail: c.Email, BodyText: "hello", MessageID: fmt.Sprintf("%s%d@customer.example", prefix, i)}
					if err := tx.AddConversation(conv); err != nil {
						return err
					}
					if i == bad {
						// Violates message_ids' CHECK on direction: queued,
						// it fails on the server only.
						if _, err := tx.exec(`INSERT INTO message_ids(message_id, direction, created_at) VALUES (?,?,?)`, prefix+"bad@x", "sideways", ts(time.Now())); err != nil {
							return err
						}
					}
					return tx.AddMessageID(MessageRef{MessageID: conv.MessageID, Direction: "in", TicketID: &tk.ID, ConversationID: &conv.ID})
				})
				if err != nil && tx.Context().Err() != nil {
					return err // the attempt is abandoned
				}
				if err != nil {
					failed = append(failed, i)
					continue
				}
				ids = append(ids, id)
			}
			if tx.pg != nil {
				streamed = tx.pg.streamed
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids, streamed, runs, failed
	}

	ids, streamed, runs, failed := batch("a", -1)
	if runs != 1 || len(failed) != 0 || len(ids) != n {
		t.Fatalf("runs %d, failed %v, %d tickets", runs, failed, len(ids))
	}
	if streamed < n/2 {
		t.Errorf("%d sends streamed for %d messages", streamed, n)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Errorf("ticket ids not consecutive: %v", ids)
			break
		}
	}
	last := ids[len(ids)-1]

	ids, _, runs, failed = batch("b", 25)
	if runs != 2 || len(failed) != 1 || failed[0] != 25 || len(ids) != n-1 {
		t.Fatalf("with a failing message: runs %d, failed %v, %d tickets", runs, failed, len(ids))
	}
	// Skipped: the tickets the abandoned attempt created (the 26 up
	// to the failing one, and those it went on to with ids in hand
	// before it learnt of the failure: at most ticketAheadMax+1) and
	// the ids it held unused (at most ticketAheadMax+1 again).
	if gap := ids[0] - last - 1; gap < 26 || gap > 26+2*(ticketAheadMax+1) {
		t.Errorf("%d ticket numbers skipped after an abandoned attempt (first %d after %d)", gap, ids[0], last)
	}
	err := s.Read(ctx, func(tx *Tx) error {
		got, err := tx.CountTickets()
		if err != nil {
			return err
		}
		if got != 2*n-1 {
			t.Errorf("%d tickets stored, want %d", got, 2*n-1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
