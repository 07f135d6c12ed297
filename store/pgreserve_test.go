package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// TestEnsureContactReservedTaken: a batch's fast attempt reserves a
// contact id when an address has no contact, and inserts with it; when
// another instance creates the contact meanwhile, the insert finds the
// address taken, the attempt is abandoned and the safe mode returns the
// other instance's contact.
func TestEnsureContactReservedTaken(t *testing.T) {
	if !pgCluster.Available(t) {
		t.Skip("PostgreSQL not available")
	}
	ctx := context.Background()
	url := pgCluster.URL(t)
	s, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	const addr = "late@example.com"
	var otherID int64
	runs := 0
	var got *Contact
	var created bool
	err = s.WriteBatch(ctx, func(tx *Tx) error {
		runs++
		_, err := tx.ContactByEmail(addr)
		if runs == 1 {
			if err == nil {
				t.Error("contact found before anybody created it")
			}
			if err := other.Write(ctx, func(tx *Tx) error {
				c, _, err := tx.EnsureContact(addr, "Other")
				if c != nil {
					otherID = c.ID
				}
				return err
			}); err != nil {
				return err
			}
		}
		got, created, err = tx.EnsureContact(addr, "Mine")
		if err != nil {
			return err
		}
		// A statement that reads contacts sends the queued INSERT.
		_, err = tx.ContactByEmail("someone-else@example.com")
		if err != nil && tx.Context().Err() != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Errorf("runs = %d, want 2 (the fast attempt abandoned)", runs)
	}
	if got == nil || got.ID != otherID || created {
		t.Errorf("EnsureContact = %+v, created %v; want the other instance's contact %d", got, created, otherID)
	}
	var n int
	if err := s.Read(ctx, func(tx *Tx) error {
		return tx.row(`SELECT COUNT(*) FROM contacts WHERE email=?`, addr).Scan(&n)
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d contacts with %s, want 1", n, addr)
	}

	// Without interference the reserved id is the contact's.
	err = s.WriteBatch(ctx, func(tx *Tx) error {
		if _, err := tx.ContactByEmail("fresh@example.com"); err == nil {
			t.Error("fresh contact found")
		}
		got, created, err = tx.EnsureContact("fresh@example.com", "Fresh")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := s.Read(ctx, func(tx *Tx) error {
		return tx.row(`SELECT id FROM contacts WHERE email=?`, "fresh@example.com").Scan(&id)
	}); err != nil {
		t.Fatal(err)
	}
	if !created || got.ID != id {
		t.Errorf("EnsureContact = %+v, created %v; stored id %d", got, created, id)
	}
}

// TestConversationReservedAfterClaim: in a fast attempt a conversation
// gets an id taken one round trip ahead and its INSERT is queued; a
// Message-ID claimed before it and then pointed at it names it, the
// attempt commits without falling back to the safe mode, and the
// conversations' ids follow the order they were added in.
func TestConversationReservedAfterClaim(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		var convs []int64
		runs := 0
		err := s.WriteBatch(ctx, func(tx *Tx) error {
			runs++
			convs = convs[:0]
			if _, err := tx.LookupMessageIDs([]string{"conv@x"}); err != nil {
				return err
			}
			if err := tx.AddMessageID(MessageRef{MessageID: "conv@x", Direction: "in"}); err != nil {
				return err
			}
			c, _, err := tx.EnsureContact("conv@example.com", "Conv")
			if err != nil {
				return err
			}
			tk := &Ticket{Subject: "s", Status: 2, RequesterID: c.ID}
			if err := tx.CreateTicket(tk); err != nil {
				return err
			}
			// A statement about message_ids queues the claim's INSERT.
			if _, err := tx.LookupMessageIDs([]string{"other@x"}); err != nil {
				return err
			}
			for i := range 3 {
				cv := &Conversation{TicketID: tk.ID, Incoming: true, Kind: "reply", FromEmail: "conv@example.com", BodyText: fmt.Sprint(i)}
				if err := tx.AddConversation(cv); err != nil {
					return err
				}
				convs = append(convs, cv.ID)
				if i == 0 {
					if err := tx.SetMessageIDTarget("conv@x", &tk.ID, &cv.ID); err != nil {
						return err
					}
				}
				// A read between conversations.
				if _, err := tx.Ticket(tk.ID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if runs != 1 {
			t.Errorf("runs = %d, want 1 (no abandoned attempt)", runs)
		}
		if !slices.IsSorted(convs) || len(convs) != 3 {
			t.Errorf("conversation ids %v, want 3 rising", convs)
		}
		s.Read(ctx, func(tx *Tx) error {
			refs, err := tx.LookupMessageIDs([]string{"conv@x"})
			if err != nil {
				t.Fatal(err)
			}
			if r := refs["conv@x"]; r.ConversationID == nil || *r.ConversationID != convs[0] {
				t.Errorf("conv@x: %+v, want conversation %d", r, convs[0])
			}
			return nil
		})
	})
}
