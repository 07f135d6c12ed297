package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// writeFunc is Store.Write or Store.WriteBatch.
type writeFunc func(context.Context, func(*Tx) error) error

// forEachWriteMode runs fn on each store, once with Write and once with
// WriteBatch (whose first attempt on PostgreSQL queues statements),
// each time on a fresh store with one ticket, tk.
func forEachWriteMode(t *testing.T, fn func(t *testing.T, st *Store, tk int64, write writeFunc)) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
				st := openOutboxTestStore(t, k)
				tk := outboxTestTicket(t, st, "ann@example.com")
				write := st.Write
				if batch {
					write = st.WriteBatch
				}
				fn(t, st, tk, write)
			})
		}
	})
}

// TestRenderLater: mail put off with EnqueueOutboxLater is read back
// inside its transaction (without its bytes yet, or with them: the read
// then waited for the rendering) and whole after COMMIT, in a Write and
// in a WriteBatch (whose fast attempt on PostgreSQL inserts the row with
// its bytes, lazyRaw); a rendering that fails fails the whole Write
// with ErrLater and commits nothing.
func TestRenderLater(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T, st *Store, tk int64, write writeFunc) {
		mail := func(id string) *OutboxMail {
			return &OutboxMail{TicketID: &tk, Kind: "notification", MailFrom: "support@example.com",
				RcptTo: []string{"agent@example.com"}, Subject: "New ticket", MessageID: id}
		}
		slow := func(body string) func() ([]byte, error) {
			return func() ([]byte, error) {
				time.Sleep(30 * time.Millisecond)
				return []byte("Subject: New ticket\r\n\r\n" + body + "\r\n"), nil
			}
		}
		var ids []int64
		err := write(context.Background(), func(tx *Tx) error {
			ids = ids[:0]
			tx.RenderLater()
			for i := range 3 {
				m := mail(fmt.Sprintf("later-%d@deskmail", i))
				if err := tx.EnqueueOutboxLater(m, slow(fmt.Sprint("body ", i))); err != nil {
					return err
				}
				ids = append(ids, m.ID)
			}
			// Read inside the transaction: the row, whose bytes are
			// not written yet or are the mail's.
			got, err := tx.OutboxMailByID(ids[1])
			if err != nil {
				return err
			}
			if want := "Subject: New ticket\r\n\r\nbody 1\r\n"; got.MessageID != "later-1@deskmail" || (len(got.Raw) != 0 && string(got.Raw) != want) {
				t.Errorf("read in the transaction: %s %q, want later-1@deskmail with no bytes or %q", got.MessageID, got.Raw, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		st.Read(context.Background(), func(tx *Tx) error {
			for i, id := range ids {
				got, err := tx.OutboxMailByID(id)
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("Subject: New ticket\r\n\r\nbody %d\r\n", i); string(got.Raw) != want {
					t.Errorf("mail %d committed with %q, want %q", id, got.Raw, want)
				}
			}
			return nil
		})

		boom := errors.New("template broke")
		err = write(context.Background(), func(tx *Tx) error {
			tx.RenderLater()
			if err := tx.EnqueueOutboxLater(mail("fine@deskmail"), slow("fine")); err != nil {
				return err
			}
			return tx.EnqueueOutboxLater(mail("broken@deskmail"), func() ([]byte, error) { return nil, boom })
		})
		if !errors.Is(err, ErrLater) || !errors.Is(err, boom) {
			t.Fatalf("a failed rendering: %v, want ErrLater and its cause", err)
		}
		st.Read(context.Background(), func(tx *Tx) error {
			refs, err := tx.LookupMessageIDs([]string{"fine@deskmail", "broken@deskmail"})
			if err != nil {
				t.Fatal(err)
			}
			if len(refs) != 0 {
				t.Errorf("a Write whose rendering failed committed %v", refs)
			}
			return nil
		})
	})
}

// TestReserveConversations: conversations added in a batch after
// ReserveConversations get increasing ids in the order they are added,
// past the ids reserved and with one taken before them (PostgreSQL's
// fast attempt; elsewhere it does nothing).
func TestReserveConversations(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		st := openOutboxTestStore(t, k)
		tk := outboxTestTicket(t, st, "ann@example.com")
		var added []int64
		err := st.WriteBatch(context.Background(), func(tx *Tx) error {
			added = added[:0]
			// A read first: it may take a conversation id ahead.
			if _, err := tx.Ticket(tk); err != nil {
				return err
			}
			if err := tx.ReserveConversations(2); err != nil {
				return err
			}
			for i := range 4 {
				c := &Conversation{TicketID: tk, Incoming: true, FromEmail: "ann@example.com", BodyText: fmt.Sprint("message ", i)}
				if err := tx.AddConversation(c); err != nil {
					return err
				}
				added = append(added, c.ID)
				if _, err := tx.Ticket(tk); err != nil { // a round trip that may take the next id
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(added); i++ {
			if added[i] <= added[i-1] {
				t.Fatalf("conversation ids %v do not follow the order they were added in", added)
			}
		}
		st.Read(context.Background(), func(tx *Tx) error {
			cs, err := tx.Conversations(tk)
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != 4 {
				t.Fatalf("%d conversations, want 4", len(cs))
			}
			for i, c := range cs {
				if c.ID != added[i] || c.BodyText != fmt.Sprint("message ", i) {
					t.Errorf("conversation %d: id %d %q, want id %d %q", i, c.ID, c.BodyText, added[i], fmt.Sprint("message ", i))
				}
			}
			return nil
		})
	})
}

// TestExpectNewTickets: in a batch told how many new tickets to expect,
// tickets get increasing ids in the order they are created, without a
// gap when the expectation holds, and the Message-ID claimed before each
// (queued ahead of its ticket on PostgreSQL) points at it; a ticket not
// expected still gets a number.
func TestExpectNewTickets(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		st := openOutboxTestStore(t, k)
		first := outboxTestTicket(t, st, "ann@example.com")
		var ids []int64
		err := st.WriteBatch(context.Background(), func(tx *Tx) error {
			ids = ids[:0]
			c, _, err := tx.EnsureContact("bob@example.com", "Bob")
			if err != nil {
				return err
			}
			for i := range 3 {
				tx.ExpectNewTickets(3 - i)
				msgID := fmt.Sprintf("new-%d@example.com", i)
				if _, err := tx.LookupMessageIDs([]string{msgID}); err != nil { // a round trip, as threading makes
					return err
				}
				if err := tx.AddMessageID(MessageRef{MessageID: msgID, Direction: "in"}); err != nil {
					return err
				}
				tk := &Ticket{Subject: fmt.Sprint("new ", i), Status: 2, RequesterID: c.ID}
				if err := tx.CreateTicket(tk); err != nil {
					return err
				}
				conv := &Conversation{TicketID: tk.ID, Incoming: true, FromEmail: "bob@example.com", BodyText: "x"}
				if err := tx.AddConversation(conv); err != nil {
					return err
				}
				if err := tx.SetMessageIDTarget(msgID, &tk.ID, &conv.ID); err != nil {
					return err
				}
				if _, err := tx.Ticket(tk.ID); err != nil { // read back, as threading does
					return err
				}
				ids = append(ids, tk.ID)
			}
			// No more expected: a round trip takes no ticket id.
			tx.ExpectNewTickets(0)
			_, err = tx.Ticket(first)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// A ticket not expected, in a Write of its own, still gets the
		// next number.
		if err := st.Write(context.Background(), func(tx *Tx) error {
			c, _, err := tx.EnsureContact("cid@example.com", "")
			if err != nil {
				return err
			}
			tk := &Ticket{Subject: "new 3", Status: 2, RequesterID: c.ID}
			if err := tx.CreateTicket(tk); err != nil {
				return err
			}
			ids = append(ids, tk.ID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			if id != first+int64(i)+1 {
				t.Fatalf("ticket ids %v after %d, want %d…%d with no gap", ids, first, first+1, first+4)
			}
		}
		st.Read(context.Background(), func(tx *Tx) error {
			for i, id := range ids {
				if i < 3 {
					msgID := fmt.Sprintf("new-%d@example.com", i)
					refs, err := tx.LookupMessageIDs([]string{msgID})
					if err != nil {
						t.Fatal(err)
					}
					if r := refs[msgID]; r.TicketID == nil || *r.TicketID != id || r.ConversationID == nil {
						t.Errorf("%s: %+v, want ticket %d and a conversation", msgID, r, id)
					}
				}
				tk, err := tx.Ticket(id)
				if err != nil || tk.Subject != fmt.Sprint("new ", i) {
					t.Errorf("ticket %d: %+v, %v", id, tk, err)
				}
			}
			return nil
		})
	})
}
