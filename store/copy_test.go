package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// TestCopyToPostgres: a SQLite database with tickets (one a follow-up
// of another), attachments, raw mail, an outbox mail, a bounce that
// flags a contact (contacts and bounces reference each other), OAuth
// tokens and settings is copied into PostgreSQL; counts and blob
// SHA-256 match, reads agree, a re-run copies nothing and still
// verifies, and new rows in the target get ids past the copied ones.
func TestCopyToPostgres(t *testing.T) {
	if !pgCluster.Available(t) {
		return
	}
	ctx := context.Background()
	src, err := Open(ctx, filepath.Join(t.TempDir(), "src.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var first, follow int64
	err = src.Write(ctx, func(tx *Tx) error {
		c, _, err := tx.EnsureContact("Jane@Customer.example", "Jane")
		if err != nil {
			return err
		}
		for i := range 3 {
			raw := []byte(fmt.Sprintf("Subject: s%d\r\n\r\nbody %d \x00\xff", i, i))
			rawID, err := tx.AddRaw(&RawMessage{Source: "smtp", Data: raw, MessageID: fmt.Sprintf("m%d@x", i)})
			if err != nil {
				return err
			}
			tk := &Ticket{Subject: fmt.Sprintf("ticket %d", i), Status: 2, RequesterID: c.ID}
			if i > 0 {
				tk.ParentID = &first
			}
			if err := tx.CreateTicket(tk); err != nil {
				return err
			}
			if i == 0 {
				first = tk.ID
			}
			follow = tk.ID
			conv := &Conversation{TicketID: tk.ID, RawID: &rawID, Incoming: true, MessageID: fmt.Sprintf("m%d@x", i),
				Files: []Attachment{{Filename: "a.pdf", Content: []byte(fmt.Sprintf("pdf %d", i%2))}}}
			if err := tx.AddConversation(conv); err != nil {
				return err
			}
			if err := tx.AddMessageID(MessageRef{MessageID: conv.MessageID, Direction: "in", TicketID: &tk.ID, ConversationID: &conv.ID, RawID: &rawID}); err != nil {
				return err
			}
			if err := tx.AddTag(tk.ID, "vip"); err != nil {
				return err
			}
		}
		if err := tx.EnqueueOutbox(&OutboxMail{TicketID: &first, Kind: "confirmation", MailFrom: "s@x", RcptTo: []string{"jane@customer.example"},
			MessageID: "out1@x", Raw: []byte("Subject: hi\r\n\r\nhello")}); err != nil {
			return err
		}
		b := &Bounce{FromEmail: "mailer-daemon@x", Outcome: BounceFlagged}
		if err := tx.AddBounce(b); err != nil {
			return err
		}
		if _, err := tx.MarkBouncing("jane@customer.example", BounceFlag{Reason: "5.1.1", BounceID: &b.ID}); err != nil {
			return err
		}
		if err := tx.PutOAuthToken("m365", "refresh-1", "abc"); err != nil {
			return err
		}
		return tx.PutSetting("k", "v")
	})
	if err != nil {
		t.Fatal(err)
	}
	dst := openKind(t, postgresStore, Options{})
	rep, err := Copy(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, tb := range rep.Tables {
		counts[tb.Table] = tb.Target
	}
	if counts["tickets"] != 3 || counts["blobs"] != 2 || counts["attachments"] != 3 || counts["outbox_rcpt"] != 1 || rep.BlobsVerified != 5 {
		t.Fatalf("report %+v", rep)
	}
	again, err := Copy(ctx, src, dst)
	if err != nil {
		t.Fatalf("re-run: %v", err)
	}
	for _, tb := range again.Tables {
		if tb.Copied != 0 {
			t.Errorf("re-run copied %d rows of %s", tb.Copied, tb.Table)
		}
	}
	err = dst.Write(ctx, func(tx *Tx) error {
		tk, err := tx.Ticket(follow)
		if err != nil {
			return err
		}
		if tk.ParentID == nil || *tk.ParentID != first || len(tk.Tags) != 1 {
			t.Errorf("copied ticket %+v", tk)
		}
		c, err := tx.ContactByEmail("JANE@customer.example")
		if err != nil || !c.Bouncing {
			t.Errorf("copied contact %+v %v", c, err)
		}
		if tok, err := tx.OAuthRefreshToken("m365"); err != nil || tok != "refresh-1" {
			t.Errorf("copied token %q %v", tok, err)
		}
		raw, err := tx.RawData(1)
		if err != nil || string(raw) != "Subject: s0\r\n\r\nbody 0 \x00\xff" {
			t.Errorf("copied raw %q %v", raw, err)
		}
		nt := &Ticket{Subject: "new", Status: 2, RequesterID: c.ID}
		if err := tx.CreateTicket(nt); err != nil {
			return err
		}
		if nt.ID <= follow {
			t.Errorf("new ticket id %d, want past %d", nt.ID, follow)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
