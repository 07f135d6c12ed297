package store

import (
	"context"
	"testing"
)

// TestDescription: a ticket's description is its first conversation,
// with its attachments, whatever came after; a ticket without
// conversations has none.
func TestDescription(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		st := openOutboxTestStore(t, k)
		ctx := context.Background()
		id := outboxTestTicket(t, st, "jane@example.com")
		empty := outboxTestTicket(t, st, "bob@example.com")
		err := st.Write(ctx, func(tx *Tx) error {
			for i, body := range []string{"first", "second", "third"} {
				c := &Conversation{TicketID: id, Incoming: true, BodyText: body}
				if i == 0 {
					c.Files = []Attachment{{Filename: "invoice.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4")}}
				}
				if err := tx.AddConversation(c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = st.Read(ctx, func(tx *Tx) error {
			d, err := tx.Description(id)
			if err != nil {
				return err
			}
			if d == nil || d.BodyText != "first" || len(d.Files) != 1 || d.Files[0].Filename != "invoice.pdf" {
				t.Errorf("description = %+v", d)
			}
			all, err := tx.Conversations(id)
			if err != nil {
				return err
			}
			if len(all) != 3 || all[0].ID != d.ID {
				t.Errorf("conversations %d, first %d; description %d", len(all), all[0].ID, d.ID)
			}
			if d, err := tx.Description(empty); err != nil || d != nil {
				t.Errorf("description of a ticket without conversations = %+v, %v", d, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
