package outbound

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

var ourMsgID = regexp.MustCompile(`^deskmail\.t(\d+)\.[a-z2-7]{16}@deskmail\.test$`)

func TestTicketCreatedConfirmationAndNotifications(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	tk, conv := e.newTicket(incoming{from: "ann@customer.test", name: "Ann Smith", subject: "Printer broken",
		msgID: "orig-1@customer.test", body: "The printer on floor 2 prints blank pages."})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv, Channel: "acme", InReplyTo: conv.MessageID})
	run(t, e.fastWorker())
	got := s.wait(3, 10*time.Second)

	byTo := map[string]parsed{}
	for _, m := range got {
		if len(m.to) != 1 {
			t.Fatalf("envelope recipients %v", m.to)
		}
		// VERP: the channel address with the mail's signed bounce token.
		if base, tag := threading.SplitAddress(m.from); base != "support@acme.test" {
			t.Errorf("MAIL FROM %q", m.from)
		} else if _, ok := e.signer.CheckBounce(tag); !ok {
			t.Errorf("MAIL FROM %q carries no valid bounce token", m.from)
		}
		byTo[m.to[0]] = parse(t, m.data)
	}
	c, ok := byTo["ann@customer.test"]
	if !ok {
		t.Fatalf("no confirmation; got mail to %v", keys(byTo))
	}
	id, _ := c.h.MessageID()
	if m := ourMsgID.FindStringSubmatch(id); m == nil || m[1] != fmt.Sprint(tk.ID) {
		t.Errorf("Message-ID %q does not name ticket %d", id, tk.ID)
	}
	if irt := c.ids(t, "In-Reply-To"); !slices.Equal(irt, []string{"orig-1@customer.test"}) {
		t.Errorf("In-Reply-To = %v", irt)
	}
	if refs := c.ids(t, "References"); !slices.Equal(refs, []string{"orig-1@customer.test"}) {
		t.Errorf("References = %v", refs)
	}
	if sub := c.subject(t); sub != fmt.Sprintf("Re: Printer broken [#%d]", tk.ID) {
		t.Errorf("Subject = %q", sub)
	}
	if c.get("Auto-Submitted") != "auto-replied" || c.get("X-Auto-Response-Suppress") != "All" {
		t.Errorf("Auto-Submitted %q, X-Auto-Response-Suppress %q", c.get("Auto-Submitted"), c.get("X-Auto-Response-Suppress"))
	}
	from := c.addrs(t, "From")
	if len(from) != 1 || from[0].Name != "Support ACME" || from[0].Address != "support@acme.test" {
		t.Errorf("From = %v", from)
	}
	rt := c.addrs(t, "Reply-To")
	base, tag := threading.SplitAddress(rt[0].Address)
	if base != "support@acme.test" {
		t.Errorf("Reply-To = %s", rt[0].Address)
	}
	if chk, ok := e.signer.Check(tag, "ann@customer.test"); !ok || chk.TicketID != tk.ID || chk.Agent {
		t.Errorf("Reply-To token %q checks as %+v %v", tag, chk, ok)
	}
	if !strings.Contains(c.text, "We have received your request") || !strings.Contains(c.text, "Hello Ann Smith,") {
		t.Errorf("confirmation text:\n%s", c.text)
	}
	if !strings.Contains(c.html, "<strong>[#") || !strings.Contains(c.html, "Printer broken") {
		t.Errorf("confirmation HTML:\n%s", c.html)
	}
	// The Message-ID is in the index, pointing at the ticket.
	err := e.st.Read(context.Background(), func(tx *store.Tx) error {
		refs, err := tx.LookupMessageIDs([]string{id})
		if err != nil {
			return err
		}
		if r := refs[id]; r.Direction != "out" || r.TicketID == nil || *r.TicketID != tk.ID {
			t.Errorf("index entry for %s = %+v", id, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, agent := range []string{"alice@agents.test", "bob@agents.test"} {
		n, ok := byTo[agent]
		if !ok {
			t.Fatalf("no notification to %s", agent)
		}
		if sub := n.subject(t); sub != fmt.Sprintf("New ticket [#%d]: Printer broken", tk.ID) {
			t.Errorf("notification subject %q", sub)
		}
		if n.get("Auto-Submitted") != "auto-replied" {
			t.Errorf("notification Auto-Submitted %q", n.get("Auto-Submitted"))
		}
		rt := n.addrs(t, "Reply-To")
		_, tag := threading.SplitAddress(rt[0].Address)
		if chk, ok := e.signer.Check(tag, agent); !ok || !chk.Agent || chk.TicketID != tk.ID {
			t.Errorf("notification to %s: Reply-To token %q checks as %+v %v", agent, tag, chk, ok)
		}
		if from := n.addrs(t, "From"); from[0].Name != "Ann Smith via Support ACME" || from[0].Address != "support@acme.test" {
			t.Errorf("notification From %v", from[0])
		}
		if !strings.Contains(n.text, "prints blank pages") || !strings.Contains(n.text, "#status resolved") {
			t.Errorf("notification text:\n%s", n.text)
		}
	}
	rows := e.waitState(5*time.Second, allFinal)
	for _, r := range rows {
		if r.State != store.OutboxSent || r.SentAt == nil || r.Attempts != 1 {
			t.Errorf("row %d: %s attempts %d", r.ID, r.State, r.Attempts)
		}
	}
}

func keys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestFrenchConfirmationEncodedSubject(t *testing.T) {
	e := newEnv(t, "", "")
	tk, conv := e.newTicket(incoming{channel: "acmefr", from: "eloise@client.fr", name: "Éloïse Bérénice",
		subject: "RE: Réf : Problème d'accès à l'espace client", msgID: "fr-1@client.fr", body: "Bonjour, je n'arrive plus à me connecter."})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv, Channel: "acmefr", InReplyTo: conv.MessageID})
	rows := e.outbox(store.OutboxFilter{Kind: KindConfirmation, WithRaw: true})
	if len(rows) != 1 {
		t.Fatalf("confirmations: %s", summarize(rows))
	}
	raw := string(rows[0].Raw)
	if !strings.Contains(raw, "Subject: =?utf-8?") {
		t.Errorf("subject is not RFC 2047 encoded:\n%s", raw)
	}
	p := parse(t, rows[0].Raw)
	if sub := p.subject(t); sub != fmt.Sprintf("Re: Problème d'accès à l'espace client [#%d]", tk.ID) {
		t.Errorf("subject %q", sub)
	}
	if to := p.addrs(t, "To"); to[0].Name != "Éloïse Bérénice" {
		t.Errorf("To %v", to[0])
	}
	for _, want := range []string{"Bonjour Éloïse Bérénice,", "Nous avons bien reçu votre demande", "Cordialement,\nSupport ACME France"} {
		if !strings.Contains(p.text, want) {
			t.Errorf("French text lacks %q:\n%s", want, p.text)
		}
	}
	if p.get("Content-Language") != "fr" {
		t.Errorf("Content-Language %q", p.get("Content-Language"))
	}
	// Notifications on a French channel are French too.
	notes := e.outbox(store.OutboxFilter{Kind: KindNotification, WithRaw: true})
	if len(notes) != 2 {
		t.Fatalf("notifications: %s", summarize(notes))
	}
	if sub := parse(t, notes[0].Raw).subject(t); !strings.HasPrefix(sub, "Nouveau ticket [#") {
		t.Errorf("French notification subject %q", sub)
	}
}

func TestAgentReplyThreadingAttachmentsAndHistory(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	at := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	tk, conv := e.newTicket(incoming{from: "ann@customer.test", name: "Ann Smith", subject: "Fwd: RE: Printer broken",
		msgID: "orig-1@customer.test", body: "The printer prints blank pages.", at: at})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv, InReplyTo: conv.MessageID})
	// The customer adds a colleague and writes again.
	var second *store.Conversation
	err := e.st.Write(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.AddCC(tk.ID, "carl@customer.test"); err != nil {
			return err
		}
		var err error
		second, err = e.addIncoming(tx, tk.ID, tk.RequesterID, incoming{from: "ann@customer.test", name: "Ann Smith",
			subject: "Re: Printer broken [#1]", msgID: "orig-2@customer.test", body: "Still broken this morning.", at: at.Add(time.Hour)})
		if err != nil {
			return err
		}
		tk, err = tx.Ticket(tk.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.enqueue(Event{Kind: CustomerReplied, Ticket: tk, Conversation: second, InReplyTo: second.MessageID})
	agent, reply := e.agentReply(tk, "alice@agents.test", "Hello Ann,\n\nPlease try the new driver attached.\n\nAlice",
		[]store.Attachment{{Filename: "pilote imprimante é.zip", ContentType: "application/zip", Content: []byte("PK\x03\x04 zip bytes")}}, at.Add(2*time.Hour))
	// Reload the reply as the pipeline would hand it (files without
	// content: the outbound side reads the blob).
	err = e.st.Read(context.Background(), func(tx *store.Tx) error {
		var err error
		reply, err = tx.Conversation(reply.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.enqueue(Event{Kind: AgentReplied, Ticket: tk, Conversation: reply, Agent: agent, InReplyTo: second.MessageID})

	rows := e.outbox(store.OutboxFilter{Kind: KindAgentReply, WithRaw: true})
	if len(rows) != 1 {
		t.Fatalf("agent replies: %s", summarize(e.outbox(store.OutboxFilter{})))
	}
	if !slices.Equal(rows[0].RcptTo, []string{"ann@customer.test", "carl@customer.test"}) {
		t.Errorf("recipients %v", rows[0].RcptTo)
	}
	run(t, e.fastWorker())
	got := s.wait(1+2+2+1, 10*time.Second) // confirmation, 2+2 notifications, reply
	var p parsed
	for _, m := range got {
		if m.msgID == rows[0].MessageID {
			p = parse(t, m.data)
			if !slices.Equal(m.to, []string{"ann@customer.test", "carl@customer.test"}) {
				t.Errorf("envelope %v", m.to)
			}
		}
	}
	if p.h.Len() == 0 {
		t.Fatal("agent reply not received")
	}
	if sub := p.subject(t); sub != fmt.Sprintf("Re: Printer broken [#%d]", tk.ID) {
		t.Errorf("subject %q (prefixes stacked or token duplicated)", sub)
	}
	if p.get("Auto-Submitted") != "" || p.get("X-Auto-Response-Suppress") != "" {
		t.Errorf("agent reply marked automatic: %q %q", p.get("Auto-Submitted"), p.get("X-Auto-Response-Suppress"))
	}
	from := p.addrs(t, "From")
	if from[0].Name != "Alice Martin (Support ACME)" || from[0].Address != "support@acme.test" {
		t.Errorf("From %v", from[0])
	}
	if strings.Contains(string(rows[0].Raw), "alice@agents.test") {
		t.Errorf("agent address exposed")
	}
	to, cc := p.addrs(t, "To"), p.addrs(t, "Cc")
	if len(to) != 1 || to[0].Address != "ann@customer.test" || len(cc) != 1 || cc[0].Address != "carl@customer.test" {
		t.Errorf("To %v Cc %v", to, cc)
	}
	if irt := p.ids(t, "In-Reply-To"); !slices.Equal(irt, []string{"orig-2@customer.test"}) {
		t.Errorf("In-Reply-To %v", irt)
	}
	refs := p.ids(t, "References")
	if len(refs) < 3 || refs[0] != "orig-1@customer.test" || refs[len(refs)-1] != "orig-2@customer.test" {
		t.Errorf("References %v", refs)
	}
	for _, r := range refs {
		if m := ourMsgID.FindStringSubmatch(r); m != nil {
			// Our confirmation may be referenced; agents' notifications
			// must not leak into the customer's thread.
			for _, n := range e.outbox(store.OutboxFilter{Kind: KindNotification}) {
				if n.MessageID == r {
					t.Errorf("References include agent notification %s", r)
				}
			}
		}
	}
	if got := p.files["pilote imprimante é.zip"]; string(got) != "PK\x03\x04 zip bytes" {
		t.Errorf("attachment %q; files %v", got, keys(p.files))
	}
	if !strings.Contains(p.text, "Please try the new driver attached.") ||
		!strings.Contains(p.text, "On 2 March 2026 at 10:30 UTC, Ann Smith wrote:\n> Still broken this morning.") {
		t.Errorf("reply text:\n%s", p.text)
	}
	if !strings.Contains(p.html, "<blockquote") || !strings.Contains(p.html, "Still broken this morning.") {
		t.Errorf("reply html:\n%s", p.html)
	}
}

func TestSubjectsAndReferencesBounds(t *testing.T) {
	e := newEnv(t, "", "")
	for in, want := range map[string]string{
		"Printer broken":                       "Re: Printer broken [#7]",
		"Re: Printer broken [#7]":              "Re: Printer broken [#7]",
		"RE: AW: Re: [#7] Printer broken":      "Re: Printer broken [#7]",
		"Réf : TR: Printer broken [#3]":        "Re: Printer broken [#7]",
		"":                                     "Re: (no subject) [#7]",
		"Fwd: [# 7 ] Re:   Printer    broken ": "Re: Printer broken [#7]",
	} {
		_, _, got := e.o.subjects(&store.Ticket{ID: 7, Subject: in}, "en")
		if got != want {
			t.Errorf("subject %q → %q, want %q", in, got, want)
		}
	}
	if got := e.o.finalSubject("New ticket [#7]: x", "Re: x [#7]", 7); got != "New ticket [#7]: x" {
		t.Errorf("finalSubject kept token: %q", got)
	}
	if got := e.o.finalSubject("Hello", "Re: x [#7]", 7); got != "Hello [#7]" {
		t.Errorf("finalSubject added token: %q", got)
	}

	tk, _ := e.newTicket(incoming{from: "a@customer.test", subject: "s", msgID: "m0@customer.test", body: "b"})
	err := e.st.Write(context.Background(), func(tx *store.Tx) error {
		for i := 1; i < 30; i++ {
			if _, err := e.addIncoming(tx, tk.ID, tk.RequesterID, incoming{from: "a@customer.test", subject: "s", msgID: fmt.Sprintf("m%d@customer.test", i), body: "b"}); err != nil {
				return err
			}
		}
		irt, refs, err := e.o.references(tx, tk, "<m29@customer.test>", true)
		if err != nil {
			return err
		}
		if irt != "m29@customer.test" || len(refs) != maxReferences || refs[0] != "m0@customer.test" || refs[len(refs)-1] != "m29@customer.test" || refs[1] != "m21@customer.test" {
			t.Errorf("In-Reply-To %q References %v", irt, refs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLoopRules(t *testing.T) {
	e := newEnv(t, "", "")
	count := func(kind, state string) int {
		n := 0
		for _, r := range e.outbox(store.OutboxFilter{Kind: kind}) {
			if state == "" || r.State == state {
				n++
			}
		}
		return n
	}
	// Quiet import: nothing at all, not even a suppressed row.
	tk, conv := e.newTicket(incoming{from: "old@customer.test", subject: "old", msgID: "old@customer.test", body: "x"})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv, Quiet: true})
	if n := len(e.outbox(store.OutboxFilter{})); n != 0 {
		t.Fatalf("quiet import wrote %d rows", n)
	}
	cases := []struct {
		name, from, reason string
		prepare            func()
		suppress           string
	}{
		{name: "own support address", from: "help@acme.test", reason: "own support address"},
		{name: "plus-addressed own address", from: "support+t1.abcdefghij@acme.test", reason: "own support address"},
		{name: "other channel's address", from: "support@acme.fr", reason: "own support address"},
		{name: "noreply", from: "noreply@shop.test", reason: "automated sender address"},
		{name: "mailer-daemon", from: "MAILER-DAEMON@mx.test", reason: "automated sender address"},
		{name: "bouncing contact", from: "gone@customer.test", reason: "address is bouncing", prepare: func() {
			e.st.Write(context.Background(), func(tx *store.Tx) error {
				tx.EnsureContact("gone@customer.test", "")
				_, err := tx.MarkBouncing("gone@customer.test", store.BounceFlag{Reason: "550 5.1.1 user unknown", Status: "5.1.1"})
				return err
			})
		}},
		{name: "auto-reply", from: "ooo@customer.test", suppress: "auto_reply", reason: "triggering mail was auto_reply"},
	}
	for i, c := range cases {
		if c.prepare != nil {
			c.prepare()
		}
		before := count(KindConfirmation, store.OutboxSuppressed)
		tk, conv := e.newTicket(incoming{from: c.from, subject: c.name, msgID: fmt.Sprintf("loop%d@x.test", i), body: "x"})
		e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv, InReplyTo: conv.MessageID, SuppressReason: c.suppress})
		rows := e.outbox(store.OutboxFilter{TicketID: tk.ID, Kind: KindConfirmation})
		if len(rows) != 1 || rows[0].State != store.OutboxSuppressed || !strings.Contains(rows[0].LastError, c.reason) {
			t.Errorf("%s: confirmation rows %s", c.name, summarize(rows))
		}
		if count(KindConfirmation, store.OutboxSuppressed) != before+1 {
			t.Errorf("%s: not recorded as suppressed", c.name)
		}
		// Agents are still told about the ticket.
		if n := len(e.outbox(store.OutboxFilter{TicketID: tk.ID, Kind: KindNotification, State: store.OutboxQueued})); n != 2 {
			t.Errorf("%s: %d notifications", c.name, n)
		}
	}
	// A suppressed mail's Message-ID is not in the index.
	sup := e.outbox(store.OutboxFilter{State: store.OutboxSuppressed})
	err := e.st.Read(context.Background(), func(tx *store.Tx) error {
		refs, err := tx.LookupMessageIDs([]string{sup[0].MessageID})
		if len(refs) != 0 {
			t.Errorf("suppressed Message-ID indexed")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// An agent reply to a ticket whose cc is bouncing still reaches the
	// requester, and says who was left out.
	tk, conv = e.newTicket(incoming{from: "dora@customer.test", subject: "cc", msgID: "cc@customer.test", body: "x"})
	e.st.Write(context.Background(), func(tx *store.Tx) error { _, err := tx.AddCC(tk.ID, "gone@customer.test"); return err })
	e.st.Read(context.Background(), func(tx *store.Tx) error { tk, _ = tx.Ticket(tk.ID); return nil })
	agent, reply := e.agentReply(tk, "bob@agents.test", "Answer", nil, time.Time{})
	e.enqueue(Event{Kind: AgentReplied, Ticket: tk, Conversation: reply, Agent: agent, InReplyTo: conv.MessageID})
	rows := e.outbox(store.OutboxFilter{TicketID: tk.ID, Kind: KindAgentReply})
	if len(rows) != 1 || rows[0].State != store.OutboxQueued || !slices.Equal(rows[0].RcptTo, []string{"dora@customer.test"}) ||
		!strings.Contains(rows[0].LastError, "gone@customer.test: address is bouncing") {
		t.Errorf("agent reply with bouncing cc: %s", summarize(rows))
	}
	// The agent who replied is not notified of their own reply, and
	// closing mail is off by default.
	e.enqueue(Event{Kind: TicketResolved, Ticket: tk})
	if n := count(KindClosing, ""); n != 0 {
		t.Errorf("closing mail sent while off by default")
	}
}

func TestSwitchesPerChannel(t *testing.T) {
	e := newEnv(t, "", `
  - name: quiet
    addresses: [quiet@acme.test]
    send: {confirmation: false, notification: true, notify: assigned, closing_mail: true, agent_reply: false}
`)
	tk, conv := e.newTicket(incoming{channel: "quiet", from: "q@customer.test", subject: "hi", msgID: "q1@customer.test", body: "x"})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv, Channel: "quiet"})
	if n := len(e.outbox(store.OutboxFilter{Kind: KindConfirmation})); n != 0 {
		t.Errorf("confirmation sent while switched off")
	}
	if n := len(e.outbox(store.OutboxFilter{Kind: KindNotification})); n != 2 {
		t.Errorf("unassigned ticket with notify=assigned: %d notifications, want all agents", n)
	}
	// Assigned: only the responder hears about the customer's reply.
	err := e.st.Write(context.Background(), func(tx *store.Tx) error {
		a, err := tx.AgentByEmail("bob@agents.test")
		if err != nil {
			return err
		}
		tk.ResponderID = &a.ID
		if err := tx.UpdateTicket(tk); err != nil {
			return err
		}
		tk, err = tx.Ticket(tk.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.enqueue(Event{Kind: CustomerReplied, Ticket: tk, Conversation: conv, Channel: "quiet"})
	notes := e.outbox(store.OutboxFilter{Kind: KindNotification})
	if len(notes) != 3 || !slices.Equal(notes[2].RcptTo, []string{"bob@agents.test"}) {
		t.Errorf("notify assigned: %s", summarize(notes))
	}
	e.enqueue(Event{Kind: TicketClosed, Ticket: tk, Channel: "quiet"})
	closing := e.outbox(store.OutboxFilter{Kind: KindClosing, WithRaw: true})
	if len(closing) != 1 || parse(t, closing[0].Raw).get("Auto-Submitted") != "auto-generated" {
		t.Errorf("closing mail: %s", summarize(closing))
	}
	agent, reply := e.agentReply(tk, "alice@agents.test", "x", nil, time.Time{})
	e.enqueue(Event{Kind: AgentReplied, Ticket: tk, Conversation: reply, Agent: agent, Channel: "quiet"})
	if n := len(e.outbox(store.OutboxFilter{Kind: KindAgentReply})); n != 0 {
		t.Errorf("agent reply sent while switched off")
	}
	// A private note notifies the assigned agent only, not its author.
	e.enqueue(Event{Kind: NoteAdded, Ticket: tk, Conversation: reply, Agent: agent, Channel: "quiet"})
	notes = e.outbox(store.OutboxFilter{Kind: KindNotification})
	if len(notes) != 4 || !slices.Equal(notes[3].RcptTo, []string{"bob@agents.test"}) {
		t.Errorf("note notification: %s", summarize(notes))
	}
}

func TestCommandErrorMail(t *testing.T) {
	e := newEnv(t, "", "")
	tk, _ := e.newTicket(incoming{from: "ann@customer.test", subject: "Printer", msgID: "c1@customer.test", body: "x"})
	var agent *store.Agent
	e.st.Read(context.Background(), func(tx *store.Tx) error { agent, _ = tx.AgentByEmail("alice@agents.test"); return nil })
	e.enqueue(Event{Kind: CommandError, Ticket: tk, Agent: agent, InReplyTo: "agent-mail@agents.test",
		ErrorText: `line 1: "#status finished": unknown status "finished"`})
	rows := e.outbox(store.OutboxFilter{Kind: KindCommandError, WithRaw: true})
	if len(rows) != 1 || !slices.Equal(rows[0].RcptTo, []string{"alice@agents.test"}) {
		t.Fatalf("command error: %s", summarize(rows))
	}
	p := parse(t, rows[0].Raw)
	if !strings.Contains(p.text, `unknown status "finished"`) || !strings.Contains(p.html, "unknown status &#34;finished&#34;") {
		t.Errorf("text:\n%s\nhtml:\n%s", p.text, p.html)
	}
	if p.get("Auto-Submitted") != "auto-replied" {
		t.Errorf("Auto-Submitted %q", p.get("Auto-Submitted"))
	}
	if irt := p.ids(t, "In-Reply-To"); !slices.Equal(irt, []string{"agent-mail@agents.test"}) {
		t.Errorf("In-Reply-To %v", irt)
	}
}

func TestConfirmationRateLimit(t *testing.T) {
	e := newEnv(t, "", "")
	for i := range 7 {
		tk, conv := e.newTicket(incoming{from: "Flood@Customer.test", subject: fmt.Sprint("n", i), msgID: fmt.Sprintf("f%d@customer.test", i), body: "x"})
		e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv})
	}
	rows := e.outbox(store.OutboxFilter{Kind: KindConfirmation})
	var queued, suppressed int
	for _, r := range rows {
		switch r.State {
		case store.OutboxQueued:
			queued++
		case store.OutboxSuppressed:
			suppressed++
			if !strings.Contains(r.LastError, "rate limit") {
				t.Errorf("suppressed for %q", r.LastError)
			}
		}
	}
	if queued != 5 || suppressed != 2 {
		t.Errorf("queued %d suppressed %d, want 5 and 2 (default 5 per hour)", queued, suppressed)
	}
	// An hour later the sender gets confirmations again.
	e.o.now = func() time.Time { return time.Now().Add(61 * time.Minute) }
	tk, conv := e.newTicket(incoming{from: "flood@customer.test", subject: "later", msgID: "later@customer.test", body: "x"})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv})
	if r := e.outbox(store.OutboxFilter{TicketID: tk.ID, Kind: KindConfirmation}); len(r) != 1 || r[0].State != store.OutboxQueued {
		t.Errorf("after an hour: %s", summarize(r))
	}
}

func TestRetryThenSent(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	var calls atomic.Int32
	s.setFail(func(stage, arg string, _ []byte) error {
		if stage == "data" {
			if calls.Add(1) <= 2 {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
			}
		}
		return nil
	})
	tk, conv := e.newTicket(incoming{from: "ann@customer.test", subject: "x", msgID: "r1@customer.test", body: "x"})
	e.cfg.Channels[0].Send.Notification = new(bool)
	o, err := New(e.cfg, e.signer)
	if err != nil {
		t.Fatal(err)
	}
	e.o = o
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv})
	m := metrics.New()
	run(t, e.fastWorker().WithMetrics(m))
	rows := e.waitState(10*time.Second, allFinal)
	if len(rows) != 1 || rows[0].State != store.OutboxSent || rows[0].Attempts != 3 || !strings.Contains(rows[0].LastError, "451") {
		t.Errorf("after two 451s: %s", summarize(rows))
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`deskmail_outbox_deliveries_total{result="retry"} 2`, `deskmail_outbox_deliveries_total{result="sent"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if got := s.all(); len(got) != 1 {
		t.Errorf("received %d copies", len(got))
	}
}

func TestPermanentFailureRecordsHistory(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	s.setFail(func(stage, arg string, _ []byte) error {
		if stage == "rcpt" && arg == "ghost@customer.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	tk, conv := e.newTicket(incoming{from: "ghost@customer.test", subject: "x", msgID: "g1@customer.test", body: "x"})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv})
	run(t, e.fastWorker())
	rows := e.waitState(10*time.Second, allFinal)
	for _, r := range rows {
		want := store.OutboxSent
		if r.Kind == KindConfirmation {
			want = store.OutboxFailed
		}
		if r.State != want || r.Attempts != 1 {
			t.Errorf("row %d %s: %s after %d attempts (%s)", r.ID, r.Kind, r.State, r.Attempts, r.LastError)
		}
	}
	err := e.st.Read(context.Background(), func(tx *store.Tx) error {
		hist, err := tx.TicketHistory(tk.ID)
		if err != nil {
			return err
		}
		for _, h := range hist {
			if h.Action == "delivery_failed" && strings.Contains(h.Note, "550") && strings.Contains(h.Note, "ghost@customer.test") {
				return nil
			}
		}
		t.Errorf("no delivery_failed history entry: %+v", hist)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGiveUpAfterMaxAttempts(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	s.setFail(func(stage, _ string, _ []byte) error {
		if stage == "mail" {
			return &smtp.SMTPError{Code: 421, Message: "busy"}
		}
		return nil
	})
	e.cfg.Outbound.MaxAttempts = 3
	tk, conv := e.newTicket(incoming{from: "ann@customer.test", subject: "x", msgID: "m1@customer.test", body: "x"})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv})
	run(t, e.fastWorker())
	rows := e.waitState(10*time.Second, allFinal)
	for _, r := range rows {
		if r.State != store.OutboxFailed || r.Attempts != 3 || !strings.Contains(r.LastError, "gave up after 3 attempts") {
			t.Errorf("row %s", summarize([]store.OutboxMail{r}))
		}
	}
}

// TestOrderPerTicket: a ticket's second mail waits while its first is
// retried; other tickets' mail is not held up.
func TestOrderPerTicket(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	e.cfg.Channels[0].Send.Notification = new(bool)
	o, _ := New(e.cfg, e.signer)
	e.o = o
	tk1, c1 := e.newTicket(incoming{from: "one@customer.test", subject: "one", msgID: "o1@customer.test", body: "x"})
	tk2, c2 := e.newTicket(incoming{from: "two@customer.test", subject: "two", msgID: "o2@customer.test", body: "x"})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk1, Conversation: c1})
	first := e.outbox(store.OutboxFilter{TicketID: tk1.ID})[0].MessageID
	agent, reply := e.agentReply(tk1, "alice@agents.test", "reply one", nil, time.Time{})
	e.enqueue(Event{Kind: AgentReplied, Ticket: tk1, Conversation: reply, Agent: agent})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk2, Conversation: c2})
	var failures atomic.Int32
	s.setFail(func(stage, id string, _ []byte) error {
		if stage == "data" && strings.Trim(id, "<>") == first && failures.Add(1) <= 3 {
			return &smtp.SMTPError{Code: 452, Message: "insufficient storage"}
		}
		return nil
	})
	run(t, e.fastWorker())
	got := s.wait(3, 10*time.Second)
	var order []string
	for _, m := range got {
		order = append(order, m.msgID)
	}
	rows1 := e.outbox(store.OutboxFilter{TicketID: tk1.ID})
	if order[len(order)-2] != rows1[0].MessageID || order[len(order)-1] != rows1[1].MessageID {
		t.Errorf("ticket %d delivered out of order: %v (want %s then %s)", tk1.ID, order, rows1[0].MessageID, rows1[1].MessageID)
	}
	if rows2 := e.outbox(store.OutboxFilter{TicketID: tk2.ID}); order[0] != rows2[0].MessageID {
		t.Errorf("ticket %d held up behind another ticket: %v", tk2.ID, order)
	}
}

// TestRelayDownThenUp is the fault test: mail is queued while the relay
// refuses connections; when it comes back every mail is delivered
// exactly once and each ticket's mail in order.
func TestRelayDownThenUp(t *testing.T) {
	// The relay is down: its port is closed, connections are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &sink{t: t, got: make(chan sunk, 1000), addr: addr}
	e := newEnv(t, addr, "")
	e.cfg.Channels[0].Send.Notification = new(bool)
	o, _ := New(e.cfg, e.signer)
	e.o = o
	const tickets, perTicket = 8, 4
	want := map[int64][]string{}
	for i := range tickets {
		tk, c := e.newTicket(incoming{from: fmt.Sprintf("c%d@customer.test", i), subject: fmt.Sprint("t", i), msgID: fmt.Sprintf("d%d@customer.test", i), body: "x"})
		e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: c})
		for j := 1; j < perTicket; j++ {
			agent, reply := e.agentReply(tk, "alice@agents.test", fmt.Sprint("reply ", j), nil, time.Time{})
			e.enqueue(Event{Kind: AgentReplied, Ticket: tk, Conversation: reply, Agent: agent})
		}
		for _, r := range e.outbox(store.OutboxFilter{TicketID: tk.ID}) {
			want[tk.ID] = append(want[tk.ID], r.MessageID)
		}
	}
	w := e.fastWorker()
	run(t, w)
	// Wait until every ticket's first mail failed at least twice.
	e.waitState(10*time.Second, func(rows []store.OutboxMail) bool {
		n := 0
		for _, r := range rows {
			if r.Attempts >= 2 && strings.Contains(r.LastError, "refused") {
				n++
			}
		}
		return n >= tickets
	})
	if n := len(s.all()); n != 0 {
		t.Fatalf("received %d while down", n)
	}
	// Some flakiness when it comes back: every 5th DATA gets a 421.
	var data atomic.Int32
	s.setFail(func(stage, _ string, _ []byte) error {
		if stage == "data" {
			if data.Add(1)%5 == 0 {
				return &smtp.SMTPError{Code: 421, Message: "shutting down"}
			}
		}
		return nil
	})
	sinkAt(t, s, addr)
	w.Kick()
	got := s.wait(tickets*perTicket, 20*time.Second)
	e.waitState(10*time.Second, allFinal)
	seen := map[string]int{}
	var order []string
	for _, m := range got {
		seen[m.msgID]++
		order = append(order, m.msgID)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	for tk, ids := range want {
		var got []string
		for _, id := range order {
			if slices.Contains(ids, id) {
				got = append(got, id)
			}
		}
		if !slices.Equal(got, ids) {
			t.Errorf("ticket %d: delivered %v, want %v", tk, got, ids)
		}
	}
	for _, r := range e.outbox(store.OutboxFilter{}) {
		if r.State != store.OutboxSent {
			t.Errorf("row %d: %s (%s)", r.ID, r.State, r.LastError)
		}
	}
}

func TestWorkerStopsWithContext(t *testing.T) {
	e := newEnv(t, "127.0.0.1:9", "")
	w := e.fastWorker()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	w.Kick()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("worker did not stop")
	}
}

func TestBackoff(t *testing.T) {
	e := newEnv(t, "", "")
	w := e.o.Worker(e.st, nil)
	for _, r := range []float64{0, 0.5, 0.9999} {
		w.rand = func() float64 { return r }
		prev := time.Duration(0)
		for n := 1; n <= 200; n++ {
			d := w.backoff(n)
			if d <= 0 || d > w.maxBackoff {
				t.Fatalf("backoff(%d) = %v", n, d)
			}
			if n < 8 && d < prev {
				t.Fatalf("backoff not growing: %d → %v after %v", n, d, prev)
			}
			prev = d
		}
	}
	w.rand = func() float64 { return 0.5 }
	if d := w.backoff(1); d != time.Minute {
		t.Errorf("first backoff %v", d)
	}
	if d := w.backoff(3); d != 4*time.Minute {
		t.Errorf("third backoff %v", d)
	}
	if !isPermanent(fmt.Errorf("x: %w", &smtp.SMTPError{Code: 550})) || isPermanent(&smtp.SMTPError{Code: 451}) || isPermanent(context.DeadlineExceeded) {
		t.Errorf("classification")
	}
}
