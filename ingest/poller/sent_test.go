package poller

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/store"
)

// TestSentFolder: a reply an agent writes straight from the shared
// mailbox is threaded onto its ticket as an agent reply, never mailed,
// and left untouched in the Sent folder.
func TestSentFolder(t *testing.T) {
	b := memServer(t, memOptions{})
	if err := b.mem.Create("Sent", nil); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, b, "sent_folder: Sent")
	h.start()
	eventually(t, 10*time.Second, "first poll", func() bool { hl := h.health(); return hl != nil && hl.LastOKAt != nil })
	b.appendMsg(t, "INBOX", message("q1@example.net", "alice@example.net", "Parcel missing"), time.Now())
	eventually(t, 20*time.Second, "a ticket", func() bool { return len(h.tickets()) == 1 })

	reply := []byte("From: Support <support@example.com>\r\nTo: alice@example.net\r\nSubject: RE: Parcel missing\r\n" +
		"Message-ID: <r1@example.com>\r\nIn-Reply-To: <q1@example.net>\r\n\r\nIt left our warehouse today.\r\n\r\n> Hello, my order did not arrive.\r\n")
	b.appendMsg(t, "Sent", reply, time.Now())
	var convs []store.Conversation
	eventually(t, 20*time.Second, "the sent reply on the ticket", func() bool {
		h.st.Read(context.Background(), func(tx *store.Tx) error {
			var err error
			convs, err = tx.Conversations(h.tickets()[0].ID)
			return err
		})
		return len(convs) == 2
	})
	if c := convs[1]; c.Incoming || c.Private || c.BodyText != "It left our warehouse today." {
		t.Fatalf("sent reply stored as incoming=%v private=%v body=%q", c.Incoming, c.Private, c.BodyText)
	}
	if tk := h.tickets()[0]; tk.Status != 3 {
		t.Fatalf("agent-reply rule not applied: status %d", tk.Status)
	}
	h.mu.Lock()
	for _, n := range h.notices {
		if n.Event == "agent_replied" && !n.NoMail {
			t.Error("a reply from the Sent folder would be mailed again")
		}
	}
	h.mu.Unlock()
	for uid, fs := range b.flags(t, "Sent") {
		if len(fs) != 0 {
			t.Errorf("sent message %d was changed: %v", uid, fs)
		}
	}
}

// TestPollMetrics: successful polls and failures by kind are counted.
func TestPollMetrics(t *testing.T) {
	b := memServer(t, memOptions{})
	h := newHarness(t, b)
	m := metrics.New()
	h.opts.Metrics = m
	h.start()
	eventually(t, 10*time.Second, "first poll", func() bool { hl := h.health(); return hl != nil && hl.LastOKAt != nil })
	h.stop()

	bad := newHarness(t, b, `password: "wrong"`)
	bad.opts.Metrics = m
	bad.start()
	eventually(t, 10*time.Second, "a failed login", func() bool { hl := bad.health(); return hl != nil && hl.ConsecutiveFailures > 0 })
	bad.stop()

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`deskmail_imap_polls_total{channel="support",result="ok"}`, `deskmail_imap_errors_total{channel="support",kind="auth"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
}

// TestSentMailStartsConversation: a mail the team sends from the shared
// mailbox to a customer, about no ticket, opens a ticket for that
// customer (requester = the recipient, the mail its first outgoing
// conversation, the agent-reply status), mails nobody, and the
// customer's answer threads onto it. Mail to colleagues only opens
// nothing.
func TestSentMailStartsConversation(t *testing.T) {
	b := memServer(t, memOptions{})
	if err := b.mem.Create("Sent", nil); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, b, "sent_folder: Sent")
	h.start()
	eventually(t, 10*time.Second, "first poll", func() bool { hl := h.health(); return hl != nil && hl.LastOKAt != nil })

	internal := []byte("From: Support <support@example.com>\r\nTo: support@example.com\r\nSubject: Rota for next week\r\n" +
		"Message-ID: <s0@example.com>\r\n\r\nSee the attached rota.\r\n")
	b.appendMsg(t, "Sent", internal, time.Now())
	first := []byte("From: Support <support@example.com>\r\nTo: Bob Stone <bob@example.org>\r\nCc: carol@example.org\r\nSubject: Your renewal\r\n" +
		"Message-ID: <s1@example.com>\r\n\r\nYour licence expires on 31 March; shall we renew it?\r\n")
	b.appendMsg(t, "Sent", first, time.Now())
	eventually(t, 20*time.Second, "a ticket for bob", func() bool { return len(h.tickets()) == 1 })
	tk := h.tickets()[0]
	var convs []store.Conversation
	var cc []string
	h.st.Read(context.Background(), func(tx *store.Tx) error {
		c, err := tx.Contact(tk.RequesterID)
		if err != nil || c.Email != "bob@example.org" {
			t.Errorf("requester %+v %v, want bob@example.org", c, err)
		}
		convs, _ = tx.Conversations(tk.ID)
		full, _ := tx.Ticket(tk.ID)
		cc = full.CcEmails
		return nil
	})
	if len(convs) != 1 || convs[0].Incoming || convs[0].Private || tk.Subject != "Your renewal" || tk.Status != 3 {
		t.Fatalf("ticket %+v conversations %+v", tk, convs)
	}
	if len(cc) != 1 || cc[0] != "carol@example.org" {
		t.Errorf("cc %v, want carol", cc)
	}
	h.mu.Lock()
	// Its events reach webhooks and rules (not quiet), never the mail.
	var events []string
	for _, n := range h.notices {
		if !n.NoMail || n.Quiet {
			t.Errorf("mail from the Sent folder may be mailed: %+v", n)
		}
		events = append(events, string(n.Event))
	}
	if strings.Join(events, ",") != "ticket_created,agent_replied,status_changed" {
		t.Errorf("events of the Sent folder's mail: %v", events)
	}
	h.notices = nil
	h.mu.Unlock()

	answer := []byte("From: Bob Stone <bob@example.org>\r\nTo: support@example.com\r\nSubject: Re: Your renewal\r\n" +
		"Message-ID: <b1@example.org>\r\nIn-Reply-To: <s1@example.com>\r\n\r\nYes please, renew it.\r\n")
	b.appendMsg(t, "INBOX", answer, time.Now())
	eventually(t, 20*time.Second, "bob's answer on the ticket", func() bool {
		h.st.Read(context.Background(), func(tx *store.Tx) error {
			convs, _ = tx.Conversations(tk.ID)
			return nil
		})
		return len(convs) == 2
	})
	if n := len(h.tickets()); n != 1 {
		t.Errorf("%d tickets, want 1 (the internal mail opens none, the answer threads)", n)
	}
}

// TestHistoryImportStartsNoClock: mail already in the folder, imported
// as history (existing: import), writes its tickets without the SLA
// hook (old targets would escalate at once); mail that arrives later
// goes through it.
func TestHistoryImportStartsNoClock(t *testing.T) {
	b := memServer(t, memOptions{})
	b.appendMsg(t, "INBOX", message("old-1@example.net", "erin@example.net", "Old question"), time.Now().Add(-30*24*time.Hour))
	h := newHarness(t, b, "existing: import")
	var mu sync.Mutex
	hooked := map[string]int{}
	h.st.SetTicketHook(func(tx *store.Tx, tk *store.Ticket) error {
		mu.Lock()
		hooked[tk.Subject]++
		mu.Unlock()
		return nil
	})
	h.start()
	eventually(t, 10*time.Second, "the old mail as a ticket", func() bool { return len(h.tickets()) == 1 })
	b.appendMsg(t, "INBOX", message("new-1@example.net", "fred@example.net", "New question"), time.Now())
	eventually(t, 10*time.Second, "the new mail as a ticket", func() bool { return len(h.tickets()) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if hooked["Old question"] != 0 || hooked["New question"] == 0 {
		t.Errorf("ticket hook calls %v: want none for history, some for live mail", hooked)
	}
}
