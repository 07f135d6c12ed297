package store

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

// TestThreadRemembered: the thread a transaction remembers (PostgreSQL)
// stays what the query answers through the transaction's own
// EnqueueOutbox (with and without a conversation, queued or suppressed,
// stamped before earlier rows), a claim pointed at the ticket, another
// write to a table the query reads, and a savepoint rolled back; in a
// Write and in a WriteBatch.
func TestThreadRemembered(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T, st *Store, tk int64, write writeFunc) {
		base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		err := write(context.Background(), func(tx *Tx) error {
			// check compares the thread as the transaction answers it
			// with the query's answer.
			check := func(step string, want int) {
				t.Helper()
				got, err := tx.TicketThread(tk)
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				ids, err := tx.TicketThreadIDs(tk)
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				kept := tx.threads
				tx.threads = nil
				readIDs, err := tx.TicketThreadIDs(tk)
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				if !slices.Equal(ids, readIDs) {
					t.Errorf("%s: thread ids remembered %v, the query reads %v", step, ids, readIDs)
				}
				read, err := tx.TicketThread(tk)
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				tx.threads = kept
				if !reflect.DeepEqual(got, read) {
					t.Errorf("%s: thread remembered\n%+v\nthe query reads\n%+v", step, got, read)
				}
				if len(read) != want {
					t.Errorf("%s: %d messages in the thread, want %d", step, len(read), want)
				}
			}
			tx.SetNow(base)
			conv := &Conversation{TicketID: tk, Incoming: true, FromEmail: "ann@example.com", BodyText: "help", MessageID: "ann-1@example.com"}
			if err := tx.AddConversation(conv); err != nil {
				return err
			}
			if err := tx.AddMessageID(MessageRef{MessageID: "ann-1@example.com", Direction: "in", TicketID: &tk, ConversationID: &conv.ID}); err != nil {
				return err
			}
			check("the customer's mail", 1)
			enqueue := func(id, kind string, conv *int64, state string, at time.Time) error {
				tx.SetNow(at)
				return tx.EnqueueOutbox(&OutboxMail{TicketID: &tk, ConversationID: conv, Kind: kind, MailFrom: "support@example.com",
					RcptTo: []string{"ann@example.com"}, Subject: "Re: help", MessageID: id, Raw: []byte("x"), State: state})
			}
			// The confirmation answers the customer's conversation.
			if err := enqueue("conf@deskmail", "confirmation", &conv.ID, "", base.Add(time.Second)); err != nil {
				return err
			}
			check("after the confirmation", 2)
			if err := enqueue("note@deskmail", "notification", nil, "", base.Add(2*time.Second)); err != nil {
				return err
			}
			check("after the notification", 3)
			if err := enqueue("sup@deskmail", "confirmation", nil, OutboxSuppressed, base.Add(3*time.Second)); err != nil {
				return err
			}
			check("after a suppressed mail", 3)
			// Stamped before the notification: it sorts before it.
			if err := enqueue("early@deskmail", "agent_reply", nil, "", base.Add(1500*time.Millisecond)); err != nil {
				return err
			}
			check("after a mail stamped earlier", 4)
			// A conversation the thread does not show yet.
			other := &Conversation{TicketID: tk, Private: true, FromEmail: "agent@example.com", BodyText: "note"}
			if err := tx.AddConversation(other); err != nil {
				return err
			}
			if err := enqueue("other@deskmail", "notification", &other.ID, "", base.Add(4*time.Second)); err != nil {
				return err
			}
			check("after a mail on another conversation", 5)
			// A claim, then pointed at the ticket.
			tx.SetNow(base.Add(5 * time.Second))
			if err := tx.AddMessageID(MessageRef{MessageID: "ann-2@example.com", Direction: "in"}); err != nil {
				return err
			}
			check("after a claim", 5)
			if err := tx.SetMessageIDTarget("ann-2@example.com", &tk, &conv.ID); err != nil {
				return err
			}
			check("after the claim's target", 6)
			if _, err := tx.exec(`UPDATE conversations SET message_id=? WHERE id=?`, "changed@example.com", conv.ID); err != nil {
				return err
			}
			check("after a conversation changed", 6)
			if err := tx.Savepoint(func() error {
				if err := enqueue("rolled@deskmail", "notification", nil, "", base.Add(6*time.Second)); err != nil {
					return err
				}
				return fmt.Errorf("the message fails")
			}); err == nil {
				t.Error("the failing savepoint succeeded")
			}
			if tx.Context().Err() != nil {
				return nil // a fast attempt is abandoned: it runs again
			}
			check("after a savepoint rolled back", 6)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
