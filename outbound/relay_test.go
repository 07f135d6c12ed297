package outbound

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// TestChannelRelayOverride: a channel with its own relay sends through
// it (with its own credentials); the others use outbound.relay.
func TestChannelRelayOverride(t *testing.T) {
	global, eu := newSink(t), newSink(t)
	eu.users = map[string]string{"eu-user": "eu-pass"}
	e := newEnv(t, global.addr, fmt.Sprintf(`
  - name: eu
    addresses: [support@eu.test]
    relay:
      address: %s
      tls: none
      username: eu-user
      password: eu-pass
      connections: 2
`, eu.addr))
	for _, ch := range []string{"acme", "eu"} {
		for i := range 3 {
			tk, conv := e.newTicket(incoming{channel: ch, from: fmt.Sprintf("c%d@%s.customer.test", i, ch), subject: "x",
				msgID: fmt.Sprintf("%s%d@customer.test", ch, i), body: "x"})
			e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv, Channel: ch})
		}
	}
	run(t, e.fastWorker())
	// 3 confirmations and 3×2 notifications per channel.
	g, x := global.wait(9, 10*time.Second), eu.wait(9, 10*time.Second)
	for _, m := range g {
		if base, _ := threading.SplitAddress(m.from); base != "support@acme.test" || m.user != "" {
			t.Errorf("global relay got mail from %s (user %q)", m.from, m.user)
		}
	}
	for _, m := range x {
		if base, _ := threading.SplitAddress(m.from); base != "support@eu.test" || m.user != "eu-user" {
			t.Errorf("channel relay got mail from %s (user %q)", m.from, m.user)
		}
	}
	e.waitState(10*time.Second, allFinal)
	if n := len(global.all()) + len(eu.all()); n != 18 {
		t.Errorf("received %d, want 18", n)
	}
}

// TestChannelRelayOnly: with no outbound.relay, a channel's own relay
// still delivers its mail, and the other channels' mail stays queued
// without using up attempts.
func TestChannelRelayOnly(t *testing.T) {
	eu := newSink(t)
	e := newEnv(t, "", fmt.Sprintf(`
  - name: eu
    addresses: [support@eu.test]
    relay: {address: "%s", tls: none}
`, eu.addr))
	e.cfg.Channels[0].Send.Notification = new(bool)
	e.cfg.Channels[2].Send.Notification = new(bool)
	o, err := New(e.cfg, e.signer)
	if err != nil {
		t.Fatal(err)
	}
	e.o = o
	for _, ch := range []string{"acme", "eu"} {
		tk, conv := e.newTicket(incoming{channel: ch, from: "c@" + ch + ".customer.test", subject: "x", msgID: ch + "@customer.test", body: "x"})
		e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv, Channel: ch})
	}
	w := e.fastWorker()
	// Mail without a relay is claimed (an attempt counted for the
	// lease), then released with its attempt given back and its next
	// try a poll interval away. A long interval makes the released
	// state the one that lasts: with 50ms a loaded machine would read
	// the mail claimed again, or its next try already past.
	w.poll = time.Minute
	run(t, w)
	eu.wait(1, 10*time.Second)
	rows := e.waitState(10*time.Second, func(rows []store.OutboxMail) bool {
		for _, r := range rows {
			if r.MailFrom == "support@acme.test" && !strings.Contains(r.LastError, "no outbound relay") ||
				r.MailFrom == "support@eu.test" && r.State == store.OutboxQueued {
				return false
			}
		}
		return true
	})
	for _, r := range rows {
		switch r.MailFrom {
		case "support@eu.test":
			if r.State != store.OutboxSent {
				t.Errorf("eu mail %s", summarize([]store.OutboxMail{r}))
			}
		default:
			if r.State != store.OutboxQueued || r.Attempts != 0 || !r.NextAttemptAt.After(time.Now()) {
				t.Errorf("mail without a relay %s (next %v)", summarize([]store.OutboxMail{r}), r.NextAttemptAt)
			}
		}
	}
}

// TestUnknownRecipientFlagsBouncing: a 5.1.x refusal at RCPT (or a
// detail-less 550 "user unknown") fails the mail, flags the contact
// bouncing in the same transaction and says so on the ticket; a policy
// refusal fails the mail without flagging anyone.
func TestUnknownRecipientFlagsBouncing(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	e.cfg.Channels[0].Send.Notification = new(bool)
	o, err := New(e.cfg, e.signer)
	if err != nil {
		t.Fatal(err)
	}
	e.o = o
	s.setFail(func(stage, arg string, _ []byte) error {
		if stage != "rcpt" {
			return nil
		}
		switch arg {
		case "ghost@customer.test":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "mailbox does not exist"}
		case "old@customer.test":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.NoEnhancedCode, Message: "<old@customer.test>: User unknown in local recipient table"}
		case "blocked@customer.test":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "rejected by policy: user unknown to our spam filter"}
		case "carl@customer.test":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	tickets := map[string]*store.Ticket{}
	for _, who := range []string{"ghost", "old", "blocked", "ann"} {
		tk, conv := e.newTicket(incoming{from: who + "@customer.test", subject: who, msgID: who + "@m.test", body: "x"})
		e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv})
		tickets[who] = tk
	}
	// An agent reply to ann with carl (unknown) on cc reaches ann.
	tk := tickets["ann"]
	e.st.Write(context.Background(), func(tx *store.Tx) error {
		tx.EnsureContact("carl@customer.test", "Carl")
		_, err := tx.AddCC(tk.ID, "carl@customer.test")
		return err
	})
	e.st.Read(context.Background(), func(tx *store.Tx) error { tk, _ = tx.Ticket(tk.ID); return nil })
	agent, reply := e.agentReply(tk, "alice@agents.test", "Answer", nil, time.Time{})
	e.enqueue(Event{Kind: AgentReplied, Ticket: tk, Conversation: reply, Agent: agent})

	run(t, e.fastWorker())
	rows := e.waitState(10*time.Second, allFinal)
	for _, r := range rows {
		want := store.OutboxFailed
		if strings.HasPrefix(r.RcptTo[0], "ann@") {
			want = store.OutboxSent
		}
		if r.State != want || r.Attempts != 1 {
			t.Errorf("%s: want %s", summarize([]store.OutboxMail{r}), want)
		}
	}
	err = e.st.Read(context.Background(), func(tx *store.Tx) error {
		for addr, want := range map[string]bool{"ghost": true, "old": true, "carl": true, "blocked": false, "ann": false} {
			c, err := tx.ContactByEmail(addr + "@customer.test")
			if err != nil {
				return err
			}
			if c.Bouncing != want {
				t.Errorf("%s bouncing = %v, want %v (reason %q)", addr, c.Bouncing, want, c.BounceReason)
			}
			if want && (!strings.Contains(c.BounceReason, "550") || !strings.Contains(c.BounceReason, "Message-ID deskmail.t")) {
				t.Errorf("%s bounce reason %q", addr, c.BounceReason)
			}
		}
		for who, flagged := range map[string]string{"ghost": "ghost@customer.test", "ann": "carl@customer.test", "blocked": ""} {
			hist, err := tx.TicketHistory(tickets[who].ID)
			if err != nil {
				return err
			}
			found := false
			for _, h := range hist {
				if h.Action == "delivery_failed" {
					found = true
					if has := strings.Contains(h.Note, "flagged as bouncing: "+flagged); has != (flagged != "") {
						t.Errorf("%s: history note %q", who, h.Note)
					}
				}
			}
			if !found {
				t.Errorf("%s: no delivery_failed history: %+v", who, hist)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Later mail to a flagged address is held back.
	tk2, conv := e.newTicket(incoming{from: "ghost@customer.test", subject: "again", msgID: "ghost2@m.test", body: "x"})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk2, Conversation: conv})
	if r := e.outbox(store.OutboxFilter{TicketID: tk2.ID}); len(r) != 1 || r[0].State != store.OutboxSuppressed || !strings.Contains(r[0].LastError, "bouncing") {
		t.Errorf("mail to a bouncing address: %s", summarize(r))
	}
}

func TestIsUnknownRecipient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "x"}, true},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 10}, Message: "RESOLVER.ADR.RecipientNotFound"}, true},
		{&smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "bad syntax"}, true},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 8}, Message: "bad sender domain"}, false},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "user unknown"}, false},
		{&smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full"}, false},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 0, 0}, Message: "No such user here"}, true},
		{&smtp.SMTPError{Code: 550, Message: "Recipient address rejected: User unknown in virtual mailbox table"}, true},
		{&smtp.SMTPError{Code: 550, Message: "Relay access denied"}, false},
		{&smtp.SMTPError{Code: 554, Message: "user unknown"}, false},
		{&smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 1, 1}, Message: "try later"}, false},
		{fmt.Errorf("RCPT TO <a@b>: %w", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}}), true},
		{context.DeadlineExceeded, false},
	} {
		if got := isUnknownRecipient(c.err); got != c.want {
			t.Errorf("isUnknownRecipient(%v) = %v", c.err, got)
		}
	}
}

// TestCrashAfterRelayAccepted: the process dies after the relay's 250
// but before the result is committed. After the lease the mail is sent
// again — the worker cannot know the relay took it — with the same
// Message-ID and byte for byte the same text (DKIM signature included),
// so the recipient's client de-duplicates it. Mail that was claimed but
// never handed to the relay is sent once.
func TestCrashAfterRelayAccepted(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	entries, txt := dkimKeys(t)
	e.cfg.Outbound.DKIM = entries
	e.cfg.Channels[0].Send.Notification = new(bool)
	o, err := New(e.cfg, e.signer)
	if err != nil {
		t.Fatal(err)
	}
	e.o = o
	for i := range 2 {
		tk, conv := e.newTicket(incoming{from: fmt.Sprintf("c%d@customer.test", i), subject: "x", msgID: fmt.Sprintf("cr%d@customer.test", i), body: "x"})
		e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv})
	}
	ctx := context.Background()
	// The first process: claims both, delivers the first (the relay
	// answers 250), then dies before recording anything.
	w1 := e.fastWorker()
	claimed, err := w1.step(ctx, nil, 10)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claimed %d: %v", len(claimed), err)
	}
	var cur *conn
	if r := w1.deliver(ctx, w1.relay, &cur, claimed[0]); r.err != nil {
		t.Fatalf("first delivery: %v", r.err)
	}
	cur.close()
	s.wait(1, 5*time.Second)
	// Nothing recorded: both rows are queued, leased, one attempt each.
	for _, r := range e.outbox(store.OutboxFilter{}) {
		if r.State != store.OutboxQueued || r.Attempts != 1 {
			t.Fatalf("after the crash: %s", summarize([]store.OutboxMail{r}))
		}
	}
	// A new process before the lease ends takes nothing.
	w2 := e.fastWorker()
	if got, err := w2.step(ctx, nil, 10); err != nil || len(got) != 0 {
		t.Fatalf("claimed %d during the lease: %v", len(got), err)
	}
	// After the lease it delivers both.
	w2.now = func() time.Time { return time.Now().Add(2*w2.attemptTimeout + time.Second) }
	run(t, w2)
	got := s.wait(3, 10*time.Second)
	rows := e.waitState(10*time.Second, allFinal)
	copies := map[string][][]byte{}
	for _, m := range got {
		copies[m.msgID] = append(copies[m.msgID], m.data)
	}
	for i, r := range rows {
		want := []int{2, 1}[i] // copies; both were claimed twice
		if r.State != store.OutboxSent || r.Attempts != 2 || len(copies[r.MessageID]) != want {
			t.Errorf("%s: received %d copies, want %d", summarize([]store.OutboxMail{r}), len(copies[r.MessageID]), want)
		}
		for _, c := range copies[r.MessageID] {
			if !bytes.Equal(c, r.Raw) {
				t.Errorf("%s: a copy differs from the stored text", r.MessageID)
			}
			if vs := verifyDKIM(t, c, txt); vs[0].Err != nil {
				t.Errorf("%s: %v", r.MessageID, vs[0].Err)
			}
		}
	}
	if c := copies[claimed[0].MessageID]; len(c) == 2 && !bytes.Equal(c[0], c[1]) {
		t.Errorf("the re-sent mail is not byte-identical")
	}
}
