package outbound

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
)

// TestCustomerReplyToConfirmationThreads drives the whole path: a
// customer's mail through the ingest pipeline, the confirmation queued
// in its transaction and delivered to the sink, then the customer's
// reply to that confirmation (answered by a mail client: To the
// Reply-To address, In-Reply-To our Message-ID) back through the
// pipeline — it must land on the same ticket.
func TestCustomerReplyToConfirmationThreads(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	ingestOne := roundtrip(t, e)
	first := ingestOne(`From: Ann Smith <ann@customer.test>
To: support@acme.test
Subject: Printer broken
Message-ID: <first@customer.test>
Date: Mon, 2 Mar 2026 10:00:00 +0000

The printer prints blank pages.
`)
	if first.Action != ingest.ActionCreated || first.TicketID == nil {
		t.Fatalf("first mail: %+v", first)
	}
	run(t, e.fastWorker())
	var conf parsed
	for _, m := range s.wait(3, 10*time.Second) {
		if m.to[0] == "ann@customer.test" {
			conf = parse(t, m.data)
		}
	}
	if conf.h.Len() == 0 {
		t.Fatal("no confirmation delivered")
	}
	confID, _ := conf.h.MessageID()
	replyTo := conf.addrs(t, "Reply-To")[0].Address
	subject := conf.subject(t)

	// A normal client reply: threads by In-Reply-To.
	reply := ingestOne(fmt.Sprintf(`From: Ann Smith <ann@customer.test>
To: Support ACME <%s>
Subject: RE: %s
Message-ID: <second@customer.test>
In-Reply-To: <%s>
References: <first@customer.test> <%s>
Date: Mon, 2 Mar 2026 11:00:00 +0000

It also makes a strange noise.
`, replyTo, subject, confID, confID))
	if reply.Action != ingest.ActionAppended || reply.TicketID == nil || *reply.TicketID != *first.TicketID {
		t.Fatalf("reply to the confirmation: %+v (ticket %d)", reply, *first.TicketID)
	}
	// A client that drops In-Reply-To/References: the signed reply
	// address still finds the ticket.
	bare := ingestOne(fmt.Sprintf(`From: Ann Smith <ann@customer.test>
To: %s
Subject: one more thing
Message-ID: <third@customer.test>
Date: Mon, 2 Mar 2026 12:00:00 +0000

And the paper tray is stuck.
`, replyTo))
	if bare.TicketID == nil || *bare.TicketID != *first.TicketID {
		t.Fatalf("reply by reply address only: %+v", bare)
	}
	// Alice answers from her notification; the pipeline turns it into
	// an agent reply, which is mailed to the customer from the channel.
	var note parsed
	for _, m := range s.all() {
		if m.to[0] == "alice@agents.test" {
			note = parse(t, m.data)
			break
		}
	}
	noteID, _ := note.h.MessageID()
	answer := ingestOne(fmt.Sprintf(`From: Alice Martin <alice@agents.test>
To: %s
Subject: RE: %s
Message-ID: <alice-1@agents.test>
In-Reply-To: <%s>
Date: Mon, 2 Mar 2026 13:00:00 +0000

Hello Ann, the technician will come this afternoon.
`, note.addrs(t, "Reply-To")[0].Address, note.subject(t), noteID))
	if answer.TicketID == nil || *answer.TicketID != *first.TicketID {
		t.Fatalf("agent answer: %+v", answer)
	}
	replies := e.outbox(store.OutboxFilter{TicketID: *first.TicketID, Kind: KindAgentReply, WithRaw: true})
	if len(replies) != 1 || replies[0].RcptTo[0] != "ann@customer.test" {
		t.Fatalf("agent replies: %s", summarize(replies))
	}
	ar := parse(t, replies[0].Raw)
	if !strings.Contains(ar.text, "the technician will come this afternoon") || strings.Contains(string(replies[0].Raw), "alice@agents.test") {
		t.Errorf("agent reply as mailed:\n%s", replies[0].Raw)
	}
	if from := ar.addrs(t, "From")[0]; from.Name != "Alice Martin (Support ACME)" {
		t.Errorf("agent reply From %v", from)
	}
	// The customer's replies notified the agents, not the customer.
	rows := e.outbox(store.OutboxFilter{TicketID: *first.TicketID, Kind: KindConfirmation})
	if len(rows) != 1 {
		t.Errorf("confirmations on the ticket: %s", summarize(rows))
	}
}

// roundtrip connects a real ingest pipeline to e's outbox, as the
// daemon does, and returns a function that ingests one mail.
func roundtrip(t *testing.T, e *env) func(raw string) ingest.Result {
	t.Helper()
	ctx := context.Background()
	p, err := ingest.NewPipeline(ctx, e.st, ingest.Env{Config: e.cfg, Signer: e.signer,
		Notify: func(tx *store.Tx, n ingest.Notice) error {
			if n.NoMail {
				return nil
			}
			return e.o.Enqueue(tx, Event{Kind: EventKind(n.Event), Ticket: n.Ticket, Conversation: n.Conversation, Channel: n.Channel,
				InReplyTo: n.InReplyTo, Quiet: n.Quiet, Agent: n.Agent, SuppressReason: n.Suppress, ErrorText: n.ErrorText})
		}})
	if err != nil {
		t.Fatal(err)
	}
	return func(raw string) ingest.Result {
		t.Helper()
		res, err := p.Ingest(ctx, []ingest.Raw{{Data: []byte(strings.ReplaceAll(raw, "\n", "\r\n")), Source: ingest.SourcePipe, Name: "test"}})
		if err != nil || len(res) != 1 || res[0].Err != nil {
			t.Fatalf("ingest: %v %+v", err, res)
		}
		return res[0]
	}
}

// TestAgentCommandsEndToEnd: an agent answers a notification with a bad
// command, then with a private note. The agent receives one error mail
// quoting the bad line; the customer receives nothing for either.
func TestAgentCommandsEndToEnd(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	ingestOne := roundtrip(t, e)
	first := ingestOne("From: Ann Smith <ann@customer.test>\nTo: support@acme.test\nSubject: Printer broken\nMessage-ID: <c1@customer.test>\n\nBlank pages.\n")
	run(t, e.fastWorker())
	var note parsed
	for _, m := range s.wait(3, 10*time.Second) {
		if m.to[0] == "alice@agents.test" {
			note = parse(t, m.data)
		}
	}
	if note.h.Len() == 0 {
		t.Fatal("no notification for alice")
	}
	noteID, _ := note.h.MessageID()
	replyTo := note.addrs(t, "Reply-To")[0].Address
	before := len(s.all())
	answer := func(id, body string) {
		ingestOne(fmt.Sprintf("From: Alice Martin <alice@agents.test>\nTo: %s\nSubject: RE: %s\nMessage-ID: <%s@agents.test>\nIn-Reply-To: <%s>\n\n%s",
			replyTo, note.subject(t), id, noteID, body))
	}
	answer("bad", "#status bogus\n\nHello Ann, fixed.\n")
	msgs := s.wait(before+1, 10*time.Second)
	errMail := parse(t, msgs[len(msgs)-1].data)
	if got := msgs[len(msgs)-1].to[0]; got != "alice@agents.test" || !strings.Contains(errMail.text, "#status bogus") {
		t.Fatalf("error mail to %s:\n%s", got, errMail.text)
	}
	answer("note", "#note\nAnn is a VIP, be nice.\n")
	if err := e.st.Read(context.Background(), func(tx *store.Tx) error {
		convs, err := tx.Conversations(*first.TicketID)
		if err != nil {
			return err
		}
		if last := convs[len(convs)-1]; !last.Private || !strings.Contains(last.BodyText, "VIP") {
			t.Errorf("note stored as %+v", last)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.outbox(store.OutboxFilter{TicketID: *first.TicketID}) {
		if r.RcptTo[0] == "ann@customer.test" && r.Kind != KindConfirmation {
			t.Errorf("the customer was sent %s %q", r.Kind, r.Subject)
		}
	}
}
