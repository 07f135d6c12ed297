package outbound

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/store"
)

// TestAgentReplyByMailKeepsAgentIDsOut: an agent answers the
// notification from a laptop's mail client (ingested by the real
// pipeline, proven by the notification's signed Reply-To). The
// customer's copy answers the latest message the customer saw, its
// References hold only the customer's thread, the conversation
// records the Message-ID sent — also when the copy is suppressed (a
// bouncing customer), so that the agent's id never joins a later
// mail's References either.
func TestAgentReplyByMailKeepsAgentIDsOut(t *testing.T) {
	e := newEnv(t, "", "")
	ingestOne := roundtrip(t, e)
	first := ingestOne("From: Ann Smith <ann@customer.test>\nTo: support@acme.test\nSubject: Printer broken\nMessage-ID: <c1@customer.test>\n\nBlank pages.\n")
	tkID := *first.TicketID
	var noteID, replyTo, confID string
	for _, r := range e.outbox(store.OutboxFilter{TicketID: tkID, WithRaw: true}) {
		switch {
		case r.Kind == KindConfirmation:
			confID = r.MessageID
		case r.Kind == KindNotification && r.RcptTo[0] == "alice@agents.test":
			p := parse(t, r.Raw)
			noteID, replyTo = r.MessageID, p.addrs(t, "Reply-To")[0].Address
		}
	}
	if confID == "" || noteID == "" {
		t.Fatalf("no confirmation or notification: %s", summarize(e.outbox(store.OutboxFilter{TicketID: tkID})))
	}
	answer := func(id, body string) {
		t.Helper()
		res := ingestOne(fmt.Sprintf("Received: from [10.0.0.7] (agent-laptop.local [10.0.0.7]) by mx.acme.test; Mon, 2 Mar 2026 10:00:00 +0000\n"+
			"From: Alice Martin <alice@agents.test>\nTo: %s\nSubject: RE: Printer broken [#%d]\nMessage-ID: <%s>\nIn-Reply-To: <%s>\nReferences: <%s>\n\n%s",
			replyTo, tkID, id, noteID, noteID, body))
		if res.Action != "appended" || *res.TicketID != tkID {
			t.Fatalf("agent reply %s: %+v", id, res)
		}
	}
	lastConv := func() store.Conversation {
		t.Helper()
		var cs []store.Conversation
		if err := e.st.Read(context.Background(), func(tx *store.Tx) (err error) { cs, err = tx.Conversations(tkID); return err }); err != nil {
			t.Fatal(err)
		}
		return cs[len(cs)-1]
	}
	agentReplies := func() []store.OutboxMail {
		return e.outbox(store.OutboxFilter{TicketID: tkID, Kind: KindAgentReply, WithRaw: true})
	}

	answer("a1@agent-laptop.local", "Try the new driver.\n")
	rows := agentReplies()
	if len(rows) != 1 || rows[0].State != store.OutboxQueued {
		t.Fatalf("agent replies: %s", summarize(rows))
	}
	p := parse(t, rows[0].Raw)
	if irt := p.ids(t, "In-Reply-To"); !slices.Equal(irt, []string{confID}) {
		t.Errorf("In-Reply-To %v, want our confirmation %s (the latest message the customer saw)", irt, confID)
	}
	if refs := p.ids(t, "References"); !slices.Equal(refs, []string{"c1@customer.test", confID}) {
		t.Errorf("References %v, want the customer's mail and our confirmation", refs)
	}
	if strings.Contains(string(rows[0].Raw), "agent-laptop") || strings.Contains(string(rows[0].Raw), noteID) {
		t.Errorf("the customer's copy names the agent's mail or the notification:\n%s", rows[0].Raw)
	}
	if c := lastConv(); c.MessageID != rows[0].MessageID {
		t.Errorf("conversation Message-ID %q, want the one sent, %q", c.MessageID, rows[0].MessageID)
	}

	// The customer bounces: the next reply is suppressed, and still the
	// conversation records our (unsent) Message-ID, not the agent's.
	if err := e.st.Write(context.Background(), func(tx *store.Tx) error {
		_, err := tx.MarkBouncing("ann@customer.test", store.BounceFlag{Reason: "test", Status: "5.1.1"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	answer("a2@agent-laptop.local", "Or the old one.\n")
	rows = agentReplies()
	if len(rows) != 2 || rows[1].State != store.OutboxSuppressed {
		t.Fatalf("agent replies: %s", summarize(rows))
	}
	if c := lastConv(); c.MessageID != rows[1].MessageID {
		t.Errorf("suppressed reply's conversation Message-ID %q, want %q", c.MessageID, rows[1].MessageID)
	}
	err := e.st.Read(context.Background(), func(tx *store.Tx) error {
		tk, err := tx.Ticket(tkID)
		if err != nil {
			return err
		}
		irt, refs, err := e.o.references(tx, tk, "a2@agent-laptop.local", true)
		if err != nil {
			return err
		}
		if irt != rows[0].MessageID || !slices.Equal(refs, []string{"c1@customer.test", confID, rows[0].MessageID}) {
			t.Errorf("customer thread after a suppressed reply: In-Reply-To %q References %v", irt, refs)
		}
		// The agents' thread keeps everything (their own mail included).
		_, refs, err = e.o.references(tx, tk, "", false)
		if err != nil {
			return err
		}
		if !slices.Contains(refs, "a1@agent-laptop.local") || !slices.Contains(refs, noteID) {
			t.Errorf("agents' References %v lack the agent's mail or the notification", refs)
		}
		// The agent's own id still leads to the ticket.
		ids, err := tx.LookupMessageIDs([]string{"a1@agent-laptop.local", "a2@agent-laptop.local"})
		if err != nil {
			return err
		}
		for id, ref := range ids {
			if ref.TicketID == nil || *ref.TicketID != tkID {
				t.Errorf("%s maps to %+v", id, ref)
			}
		}
		if len(ids) != 2 {
			t.Errorf("agent ids indexed: %v", ids)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOwnContentIDs: the Content-IDs of an agent's inline images are
// replaced by ours and the HTML follows; the same input gives the same
// ids.
func TestOwnContentIDs(t *testing.T) {
	e := newEnv(t, "", "")
	files := []file{{name: "a.png", contentID: "<part1.X@agent-laptop.local>", inline: true}, {name: "b.zip"}}
	html := e.o.ownContentIDs(files, `<img src="cid:part1.X@agent-laptop.local">`)
	if strings.Contains(html, "agent-laptop") || strings.Contains(files[0].contentID, "agent-laptop") || files[1].contentID != "" {
		t.Fatalf("html %q files %+v", html, files)
	}
	if !strings.HasSuffix(files[0].contentID, "@"+e.o.hostname) || !strings.Contains(html, "cid:"+files[0].contentID) {
		t.Errorf("html %q Content-ID %q", html, files[0].contentID)
	}
	again := []file{{contentID: "part1.X@agent-laptop.local"}}
	e.o.ownContentIDs(again, "")
	if again[0].contentID != files[0].contentID {
		t.Errorf("not reproducible: %q / %q", again[0].contentID, files[0].contentID)
	}
}
