package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestDeferredClaim: a Message-ID claimed in a batch reads back, is
// unique, and gets its ticket, whether its insertion was put off or
// not (on PostgreSQL it never is; see claim.go).
func TestDeferredClaim(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		var ticketID int64
		var second error // the last run's (a fast attempt on PostgreSQL learns of the duplicate late, and runs again)
		err := s.WriteBatch(ctx, func(tx *Tx) error {
			// 1: claimed, then read back before it has a target.
			if err := tx.Savepoint(func() error {
				if refs, err := tx.LookupMessageIDs([]string{"one@x"}); err != nil || len(refs) != 0 {
					return errors.Join(err, errors.New("one@x found before it was claimed"))
				}
				if err := tx.AddMessageID(MessageRef{MessageID: "one@x", Direction: "in"}); err != nil {
					return err
				}
				refs, err := tx.LookupMessageIDs([]string{"one@x"})
				if err != nil {
					return err
				}
				if _, ok := refs["one@x"]; !ok {
					t.Error("one@x not found after its claim")
				}
				return nil
			}); err != nil {
				return err
			}
			// 2: the same id again is a duplicate, looked up or not.
			second = tx.Savepoint(func() error {
				return tx.AddMessageID(MessageRef{MessageID: "one@x", Direction: "in"})
			})
			if second != nil && tx.Context().Err() != nil {
				return second // the attempt is abandoned
			}
			// 3: claimed, then pointed at its ticket.
			return tx.Savepoint(func() error {
				if _, err := tx.LookupMessageIDs([]string{"two@x"}); err != nil {
					return err
				}
				if err := tx.AddMessageID(MessageRef{MessageID: "two@x", Direction: "in"}); err != nil {
					return err
				}
				c, _, err := tx.EnsureContact("req@example.com", "Req")
				if err != nil {
					return err
				}
				tk := &Ticket{Subject: "s", Status: 2, RequesterID: c.ID}
				if err := tx.CreateTicket(tk); err != nil {
					return err
				}
				ticketID = tk.ID
				return tx.SetMessageIDTarget("two@x", &tk.ID, nil)
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(second, ErrDuplicate) {
			t.Errorf("second claim of one@x: %v, want ErrDuplicate", second)
		}
		s.Read(ctx, func(tx *Tx) error {
			refs, err := tx.LookupMessageIDs([]string{"one@x", "two@x"})
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := refs["one@x"]; !ok || r.TicketID != nil {
				t.Errorf("one@x: %+v, %v; want stored without a ticket", r, ok)
			}
			if r := refs["two@x"]; r.TicketID == nil || *r.TicketID != ticketID {
				t.Errorf("two@x: %+v, want ticket %d", r, ticketID)
			}
			ids, err := tx.TicketMessageIDs(ticketID)
			if err != nil || len(ids) != 1 || ids[0] != "two@x" {
				t.Errorf("ticket %d message-ids %v, %v", ticketID, ids, err)
			}
			return nil
		})
	})
}

// TestMessageIDsReadOnlyByName: a claim put off (claim.go) is inserted
// before every statement that names message_ids, which is sound only
// while no view or trigger reads the table and no foreign key points
// at it. A migration that adds one must change claim.go first.
func TestMessageIDsReadOnlyByName(t *testing.T) {
	s := openTest(t, sqliteStore)
	ctx := context.Background()
	s.Read(ctx, func(tx *Tx) error {
		rows, err := tx.query(`SELECT type, name, COALESCE(sql,'') FROM sqlite_master WHERE type IN ('view','trigger')`)
		if err != nil {
			t.Fatal(err)
		}
		var tables []string
		for rows.Next() {
			var typ, name, def string
			if err := rows.Scan(&typ, &name, &def); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(def, "message_ids") {
				t.Errorf("%s %s reads message_ids", typ, name)
			}
		}
		rows.Close()
		tables, err = tx.strings(`SELECT name FROM sqlite_master WHERE type='table'`)
		if err != nil {
			t.Fatal(err)
		}
		for _, tbl := range tables {
			parents, err := tx.strings(`SELECT "table" FROM pragma_foreign_key_list(?)`, tbl)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range parents {
				if p == "message_ids" {
					t.Errorf("table %s has a foreign key to message_ids", tbl)
				}
			}
		}
		return nil
	})
}
