package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestTicketThreadIDsMatchTicketThread checks that TicketThreadIDs
// lists the Message-IDs of TicketThread, in its order (and that
// TicketThread gives our mail its outbox kind), on a ticket
// with incoming mail, queued and suppressed outbound mail, an id
// without a conversation and ids recorded out of time order, next to
// another ticket's.
func TestTicketThreadIDsMatchTicketThread(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		clock := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		var tickets [2]int64
		err := s.Write(ctx, func(tx *Tx) error {
			// Each statement reads the clock; the steps below go back
			// in time now and then, as a wall clock may.
			steps := []time.Duration{time.Second, time.Second, -time.Minute, time.Second, 0, time.Second, -time.Hour, time.Second}
			n := 0
			tx.now = func() time.Time {
				clock = clock.Add(steps[n%len(steps)])
				n++
				return clock
			}
			c, _, err := tx.EnsureContact("a@example.com", "A")
			if err != nil {
				return err
			}
			for i := range tickets {
				tk := &Ticket{Subject: "s", Status: 2, RequesterID: c.ID}
				if err := tx.CreateTicket(tk); err != nil {
					return err
				}
				tickets[i] = tk.ID
			}
			for i := range 12 {
				tk := tickets[i%2]
				conv := &Conversation{TicketID: tk, Incoming: i%3 != 2, FromEmail: "a@example.com", MessageID: fmt.Sprintf("in%d@example.com", i)}
				if err := tx.AddConversation(conv); err != nil {
					return err
				}
				if err := tx.AddMessageID(MessageRef{MessageID: conv.MessageID, Direction: "in", TicketID: &tk, ConversationID: &conv.ID}); err != nil {
					return err
				}
				state := OutboxQueued
				if i%4 == 3 {
					state = OutboxSuppressed
				}
				m := &OutboxMail{TicketID: &tk, ConversationID: &conv.ID, Kind: "confirmation", MailFrom: "support@example.com",
					RcptTo: []string{"a@example.com"}, MessageID: fmt.Sprintf("out%d@deskmail.test", i), Raw: []byte("x"), State: state}
				if err := tx.EnqueueOutbox(m); err != nil {
					return err
				}
				if i%5 == 0 {
					if err := tx.AddMessageID(MessageRef{MessageID: fmt.Sprintf("bare%d@example.com", i), Direction: "in", TicketID: &tk}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		check := func(tx *Tx) error {
			for _, id := range append(tickets[:], 999) {
				thread, err := tx.TicketThread(id)
				if err != nil {
					return err
				}
				var want []string
				for _, m := range thread {
					want = append(want, m.MessageID)
					// Our mail names its kind; received ids name none.
					if kind := map[string]string{"out": "confirmation", "in": ""}[m.Direction]; m.OutboxKind != kind {
						t.Errorf("ticket %d: %s (%s) has outbox kind %q, want %q", id, m.MessageID, m.Direction, m.OutboxKind, kind)
					}
				}
				got, err := tx.TicketThreadIDs(id)
				if err != nil {
					return err
				}
				if !slices.Equal(got, want) {
					t.Errorf("ticket %d: TicketThreadIDs %q, TicketThread %q", id, got, want)
				}
				if id != 999 && len(got) < 8 {
					t.Errorf("ticket %d: only %d ids", id, len(got))
				}
			}
			return nil
		}
		if err := s.Read(ctx, check); err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, check); err != nil {
			t.Fatal(err)
		}
	})
}
