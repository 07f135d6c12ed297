package ingest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// cmdEnv is a pipeline with two agents and a custom status, on a real
// SQLite file, for email-command scenarios.
type cmdEnv struct {
	t       *testing.T
	st      *store.Store
	p       *Pipeline
	signer  *threading.Signer
	notices []Notice
	n       int
}

func newCmdEnv(t *testing.T) *cmdEnv {
	t.Helper()
	return newCmdEnvWith(t, "")
}

// newCmdEnvWith is newCmdEnv with more top-level configuration.
func newCmdEnvWith(t *testing.T, extra string) *cmdEnv {
	t.Helper()
	cfg, err := config.Parse("cmd.yaml", []byte(`
statuses:
  - {code: 6, name: "Waiting on engineering", category: pending}
agents:
  - {email: alice@acme.test, name: Alice Martin, role: admin}
  - {email: bob@acme.test, name: Bob Durand}
channels:
  - name: support
    addresses: [support@acme.test]
threading:
  trusted_auth_servers: [mx.acme.test]
custom_fields:
  - {name: order_id, label: Order}
  - {name: plan, type: choice, choices: [Free, Pro, Enterprise]}
  - {name: seats, type: number}
`+extra))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &cmdEnv{t: t, st: st, signer: threading.NewSigner([]byte("k"), 0)}
	e.p, err = NewPipeline(ctx, st, Env{Config: cfg, Signer: e.signer, Notify: func(tx *store.Tx, n Notice) error {
		e.notices = append(e.notices, n)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *cmdEnv) ingest(raw string, env Envelope) Result {
	e.t.Helper()
	e.n++
	res, err := e.p.Ingest(context.Background(), []Raw{{Data: []byte(strings.ReplaceAll(raw, "\n", "\r\n")), Source: SourceSMTP, Name: fmt.Sprint(e.n), Envelope: env}})
	if err != nil {
		e.t.Fatal(err)
	}
	return res[0]
}

func (e *cmdEnv) ticket(id int64) (*store.Ticket, []store.Conversation, []store.History) {
	e.t.Helper()
	var tk *store.Ticket
	var convs []store.Conversation
	var hist []store.History
	err := e.st.Read(context.Background(), func(tx *store.Tx) error {
		var err error
		if tk, err = tx.Ticket(id); err != nil {
			return err
		}
		if convs, err = tx.Conversations(id); err != nil {
			return err
		}
		hist, err = tx.TicketHistory(id)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return tk, convs, hist
}

// newTicket creates ticket 1 from a customer and returns its id.
func (e *cmdEnv) newTicket() int64 {
	res := e.ingest("From: Claire <claire@client.test>\nTo: support@acme.test\nSubject: Facture en double\nMessage-ID: <c1@client.test>\n\nBonjour, j'ai été facturée deux fois.\n", Envelope{})
	if res.Action != ActionCreated {
		e.t.Fatalf("new ticket: %+v", res)
	}
	e.notices = nil
	return *res.TicketID
}

func (e *cmdEnv) agentMail(id int64, from, body string) string {
	token := e.signer.AgentToken(id, from)
	return fmt.Sprintf("From: Agent <%s>\nTo: Support <%s>\nSubject: RE: Facture en double [#%d]\nMessage-ID: <a%d@acme.test>\nIn-Reply-To: <c1@client.test>\n\n%s",
		from, threading.ReplyAddress("support@acme.test", token), id, e.n+100, body)
}

func eventKinds(ns []Notice) []string {
	var out []string
	for _, n := range ns {
		out = append(out, string(n.Event))
	}
	return out
}

func TestCommandLinesApplyAndReply(t *testing.T) {
	e := newCmdEnv(t)
	id := e.newTicket()
	res := e.ingest(e.agentMail(id, "alice@acme.test", "#status résolu\n#priority HIGH\n#assign bob\n#tags +vip -spam\n#cc +compta@client.test\n\nBonjour Claire, c'est corrigé.\n\n-- \nAlice\n"), Envelope{})
	if res.Action != ActionAppended {
		t.Fatalf("action %s", res.Action)
	}
	tk, convs, hist := e.ticket(id)
	if tk.Status != 4 || tk.Priority != 3 || tk.Responder == nil || *tk.Responder != "bob@acme.test" {
		t.Fatalf("ticket after commands: status %d priority %d responder %v", tk.Status, tk.Priority, tk.Responder)
	}
	if strings.Join(tk.Tags, ",") != "vip" || strings.Join(tk.CcEmails, ",") != "compta@client.test" {
		t.Fatalf("tags %v cc %v", tk.Tags, tk.CcEmails)
	}
	last := convs[len(convs)-1]
	if last.Incoming || last.Private || last.AgentID == nil {
		t.Fatalf("agent reply stored as %+v", last)
	}
	if strings.Contains(last.BodyText, "#status") || !strings.Contains(last.BodyText, "c'est corrigé") || strings.Contains(last.BodyText, "Alice\n") {
		t.Fatalf("customer would see %q", last.BodyText)
	}
	if tk.FirstRespondedAt == nil || tk.ResolvedAt == nil {
		t.Fatal("stats timestamps not set")
	}
	got := strings.Join(eventKinds(e.notices), ",")
	if got != "agent_replied,status_changed,status_changed,ticket_resolved" { // open → pending (the reply) → resolved (#status)
		t.Fatalf("events %s", got)
	}
	actions := map[string]bool{}
	for _, h := range hist {
		actions[h.Action] = true
		if h.Action == "status_changed" && h.ActorType != "agent" {
			t.Fatalf("status change attributed to %s", h.ActorType)
		}
	}
	for _, a := range []string{"agent_replied", "status_changed", "priority_changed", "assigned", "tag_added", "cc_added"} {
		if !actions[a] {
			t.Errorf("history lacks %s: %+v", a, hist)
		}
	}
}

func TestSimonsaysBlockAndNote(t *testing.T) {
	e := newCmdEnv(t)
	id := e.newTicket()
	body := "@Simonsays \"status\":\"Waiting on engineering\", \"agent\":\"me\",\n \"action\":\"note\" @Simonsays\nInternal: engineering ticket ENG-42.\n"
	e.ingest(e.agentMail(id, "bob@acme.test", body), Envelope{})
	tk, convs, _ := e.ticket(id)
	if tk.Status != 6 || tk.Responder == nil || *tk.Responder != "bob@acme.test" {
		t.Fatalf("status %d responder %v", tk.Status, tk.Responder)
	}
	last := convs[len(convs)-1]
	if !last.Private || last.Kind != "note" || strings.Contains(last.BodyText, "Simonsays") {
		t.Fatalf("note stored as %+v", last)
	}
	for _, n := range e.notices {
		if n.Event == threading.EventAgentReplied {
			t.Fatal("a note must never be mailed to the customer")
		}
	}
}

func TestBadCommandChangesNothing(t *testing.T) {
	e := newCmdEnv(t)
	id := e.newTicket()
	before, _, _ := e.ticket(id)
	e.ingest(e.agentMail(id, "alice@acme.test", "#status resolved\n#priority whenever\n#frobnicate now\n\nDone!\n"), Envelope{})
	tk, convs, hist := e.ticket(id)
	if tk.Status != before.Status || tk.Priority != before.Priority {
		t.Fatalf("ticket changed despite errors: %d/%d", tk.Status, tk.Priority)
	}
	if len(e.notices) != 1 || e.notices[0].Event != threading.EventCommandError {
		t.Fatalf("notices %v", eventKinds(e.notices))
	}
	msg := e.notices[0].ErrorText
	if !strings.Contains(msg, `"#priority whenever"`) || !strings.Contains(msg, `"#frobnicate now"`) || !strings.Contains(msg, "low, medium, high, urgent") {
		t.Fatalf("error text does not quote the lines and say what is accepted: %s", msg)
	}
	if last := convs[len(convs)-1]; !last.Private {
		t.Fatal("rejected mail must not become a public reply")
	}
	if hist[len(hist)-1].Action != "commands_rejected" {
		t.Fatalf("history: %+v", hist[len(hist)-1])
	}
}

func TestForgedAgentChangesNothing(t *testing.T) {
	e := newCmdEnv(t)
	id := e.newTicket()
	forged := fmt.Sprintf("From: Alice <alice@acme.test>\nTo: support@acme.test\nSubject: Re: Facture en double [#%d]\nMessage-ID: <forged@evil.test>\nIn-Reply-To: <c1@client.test>\n\n#status closed\nrefund granted\n", id)
	e.ingest(forged, Envelope{})
	tk, convs, hist := e.ticket(id)
	if tk.Status != 2 {
		t.Fatalf("forged mail changed status to %d", tk.Status)
	}
	if !convs[len(convs)-1].Private {
		t.Fatal("forged agent mail must not reach the customer")
	}
	if hist[len(hist)-1].Action != "unverified_agent_mail" {
		t.Fatalf("not recorded: %+v", hist[len(hist)-1])
	}
	// A token issued to Bob does not prove Alice.
	bobToken := e.signer.AgentToken(id, "bob@acme.test")
	stolen := strings.Replace(forged, "To: support@acme.test", "To: "+threading.ReplyAddress("support@acme.test", bobToken), 1)
	stolen = strings.Replace(stolen, "forged@evil.test", "forged2@evil.test", 1)
	e.ingest(stolen, Envelope{})
	if tk, _, _ = e.ticket(id); tk.Status != 2 {
		t.Fatal("a token issued to someone else proved the sender")
	}
}

func TestAgentProofBySMTPAuthAndDKIM(t *testing.T) {
	e := newCmdEnv(t)
	id := e.newTicket()
	relay := Envelope{ClientIP: "127.0.0.1"}
	plain := fmt.Sprintf("From: Alice <alice@acme.test>\nTo: support@acme.test\nSubject: Re: Facture en double [#%d]\nMessage-ID: <auth1@acme.test>\nIn-Reply-To: <c1@client.test>\n\n#priority urgent\nOn regarde.\n", id)
	e.ingest(plain, Envelope{AuthUser: "alice@acme.test"})
	if tk, _, _ := e.ticket(id); tk.Priority != 4 {
		t.Fatalf("SMTP AUTH did not prove the agent: priority %d", tk.Priority)
	}
	n := 1
	try := func(auth string, env Envelope, wantProven bool, why string) {
		t.Helper()
		n++
		prio := map[bool]string{true: "low", false: "high"}[n%2 == 0]
		want := map[string]int{"low": 1, "high": 3}[prio]
		msg := strings.Replace(plain, "Message-ID: <auth1@acme.test>", auth+"Message-ID: <auth"+fmt.Sprint(n)+"@acme.test>", 1)
		msg = strings.Replace(msg, "#priority urgent", "#priority "+prio, 1)
		before, _, _ := e.ticket(id)
		e.ingest(msg, env)
		tk, _, _ := e.ticket(id)
		if wantProven && tk.Priority != want {
			t.Errorf("%s: not proven (priority %d, want %d)", why, tk.Priority, want)
		}
		if !wantProven && tk.Priority != before.Priority {
			t.Errorf("%s: proved the agent (priority %d → %d)", why, before.Priority, tk.Priority)
		}
	}
	try("Authentication-Results: mx.evil.test; dkim=pass header.i=alice@acme.test\n", relay, false, "untrusted authserv-id")
	try("Authentication-Results: mx.acme.test; dkim=pass header.i=alice@acme.test\n", relay, true, "trusted dkim=pass for the agent's own address")
	try("Authentication-Results: mx.acme.test; dkim=pass header.d=acme.test header.i=@acme.test\n", relay, false, "domain signature without agent_domain_proof")
	try("Authentication-Results: mx.acme.test; dmarc=pass header.from=acme.test\n", relay, false, "dmarc=pass without agent_domain_proof")
	try("Authentication-Results: mx.acme.test; dkim=pass header.i=alice@acme.test\n", Envelope{ClientIP: "203.0.113.9"}, false, "handed over SMTP by a client that is no trusted relay")
	try("Received: from mail.evil.test (mail.evil.test [203.0.113.9]) by relay.evil.test with ESMTP id 1; Mon, 2 Mar 2026 10:00:00 +0000\n"+
		"Authentication-Results: mx.acme.test; dkim=pass header.i=alice@acme.test\n", relay, false, "forged below a foreign Received")
	try("Authentication-Results: mx.acme.test; dkim=fail header.i=alice@acme.test\n"+
		"Authentication-Results: mx.acme.test; dkim=pass header.i=alice@acme.test\n", relay, false, "a second field of the trusted authserv-id below its real one")
	try("Received: from mx.acme.test (mx.acme.test [127.0.0.1]) by deskmail.acme.test (deskmail) with ESMTP id 2; Mon, 2 Mar 2026 10:00:00 +0000\n"+
		"Received: by 10.0.0.7 with SMTP id q1; Mon, 2 Mar 2026 10:00:00 +0000\n"+
		"Received: from mail.client.test (mail.client.test [198.51.100.4]) by mx.acme.test (Postfix) with ESMTPS id 3; Mon, 2 Mar 2026 10:00:00 +0000\n"+
		"Authentication-Results: mx.acme.test; dkim=pass header.i=alice@acme.test\n"+
		"Received: from laptop (unknown [192.0.2.1]) by mail.client.test with ESMTPSA id 4; Mon, 2 Mar 2026 10:00:00 +0000\n", relay, true,
		"written by the trusted border below its own Received, after an internal hop")
}

// TestAuthResultsFromConfiguredRelays: only the MTAs named in
// smtp.trusted_relays may hand over Authentication-Results; loopback is
// the default, not a rule.
func TestAuthResultsFromConfiguredRelays(t *testing.T) {
	e := newCmdEnvWith(t, "smtp:\n  trusted_relays: [192.0.2.0/24]\n")
	id := e.newTicket()
	for i, tc := range []struct {
		ip     string
		proven bool
	}{{"127.0.0.1", false}, {"192.0.2.25", true}, {"198.51.100.1", false}, {"::ffff:192.0.2.26", true}} {
		prio := []string{"urgent", "medium", "high", "low"}[i] // each one a change
		msg := fmt.Sprintf("Authentication-Results: mx.acme.test; dkim=pass header.i=alice@acme.test\nFrom: Alice <alice@acme.test>\nTo: support@acme.test\nSubject: Re: x [#%d]\nMessage-ID: <relay%d@acme.test>\n\n#priority %s\nOk.\n", id, i, prio)
		before, _, _ := e.ticket(id)
		e.ingest(msg, Envelope{ClientIP: tc.ip})
		tk, _, _ := e.ticket(id)
		if changed := tk.Priority != before.Priority; changed != tc.proven {
			t.Errorf("A-R handed over by %s: proven %v, want %v", tc.ip, changed, tc.proven)
		}
	}
}

func TestAuthProofRules(t *testing.T) {
	for _, tc := range []struct {
		h        string
		domainOK bool
		want     string
	}{
		{"mx.acme.test; dkim=pass header.i=alice@acme.test header.d=acme.test", false, "dkim"},
		{"mx.acme.test; dkim=pass header.i=ALICE@ACME.TEST", false, "dkim"},
		{"mx.acme.test; dkim=pass header.i=bob@acme.test", false, ""},
		{"mx.acme.test; dkim=pass header.d=acme.test header.s=s1", false, ""},
		{"mx.acme.test; dkim=pass header.d=acme.test header.s=s1", true, "dkim-domain"},
		{"mx.acme.test; dkim=pass header.d=mail.acme.test", true, ""},
		{"mx.acme.test; dkim=pass header.d=evil.test", true, ""},
		{"mx.acme.test; dkim=fail header.i=alice@acme.test", true, ""},
		{"mx.acme.test; spf=pass smtp.mailfrom=acme.test; dmarc=pass header.from=acme.test", false, ""},
		{"mx.acme.test; spf=pass smtp.mailfrom=acme.test; dmarc=pass header.from=acme.test", true, "dmarc"},
		{"mx.acme.test; dmarc=pass header.from=evil.test", true, ""},
		{"garbage without structure", true, ""},
	} {
		if got := authProof([]string{tc.h}, "alice@acme.test", tc.domainOK); got != tc.want {
			t.Errorf("%q (domain proof %v): got %q want %q", tc.h, tc.domainOK, got, tc.want)
		}
	}
}

func TestReceivedHosts(t *testing.T) {
	for _, tc := range []struct {
		v    string
		from bool
		by   string
	}{
		{"from a.test (a.test [192.0.2.1]) by MX.Acme.Test. (Postfix) with ESMTP id X; Mon, 2 Mar 2026", true, "mx.acme.test"},
		{"by 10.76.55.35 with SMTP id o3csp106612oap; Fri, 10 Jul 2015", false, "10.76.55.35"},
		{"from x (Authenticated sender: by evil.test) by relay.test with ESMTPSA", true, "relay.test"},
		{"from x ((nested (comment)) by evil.test) by relay.test", true, "relay.test"},
		{"garbage", false, ""},
	} {
		from, by := receivedHosts(tc.v)
		if from != tc.from || by != tc.by {
			t.Errorf("%q: got %v %q, want %v %q", tc.v, from, by, tc.from, tc.by)
		}
	}
}

func TestSendAndResolveAndExpiredToken(t *testing.T) {
	e := newCmdEnv(t)
	id := e.newTicket()
	e.ingest(e.agentMail(id, "alice@acme.test", "#send-and-resolve\nVoilà, remboursé.\n"), Envelope{})
	tk, _, _ := e.ticket(id)
	if tk.Status != 4 {
		t.Fatalf("send-and-resolve left status %d", tk.Status)
	}
	if got := strings.Join(eventKinds(e.notices), ","); got != "agent_replied,status_changed,status_changed,ticket_resolved" {
		t.Fatalf("events %s", got)
	}
	// An agent token issued long ago no longer proves the agent.
	e.notices = nil
	current := e.signer
	e.signer = current.WithClock(func() time.Time { return time.Now().Add(-100 * 24 * time.Hour) })
	e.ingest(e.agentMail(id, "alice@acme.test", "#status open\nreopening\n"), Envelope{})
	e.signer = current
	tk, _, hist := e.ticket(id)
	if tk.Status != 4 {
		t.Fatalf("expired token changed status to %d", tk.Status)
	}
	if last := hist[len(hist)-1]; last.Action != "unverified_agent_mail" || !strings.Contains(last.Note, "expired") {
		t.Fatalf("expired token not recorded: %+v", last)
	}
}

func TestSentFolderMailIsAnAgentReplyNeverMailed(t *testing.T) {
	e := newCmdEnv(t)
	id := e.newTicket()
	sent := fmt.Sprintf("From: Support ACME <support@acme.test>\nTo: Claire <claire@client.test>\nSubject: RE: Facture en double [#%d]\nMessage-ID: <sent1@acme.test>\nIn-Reply-To: <c1@client.test>\n\nBonjour Claire, le remboursement est parti.\n\n> Bonjour, j'ai été facturée deux fois.\n", id)
	res, err := e.p.Ingest(context.Background(), []Raw{{Data: []byte(sent), Source: SourceIMAP, Sent: true, Quiet: true}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Action != ActionAppended || *res[0].TicketID != id {
		t.Fatalf("sent mail: %+v", res[0])
	}
	tk, convs, hist := e.ticket(id)
	last := convs[len(convs)-1]
	if last.Incoming || last.Private || strings.Contains(last.BodyText, "facturée deux fois") {
		t.Fatalf("sent mail stored as %+v", last)
	}
	if tk.Status != 3 || tk.FirstRespondedAt == nil {
		t.Fatalf("agent-reply rule not applied: status %d", tk.Status)
	}
	if hist[len(hist)-1].Action != "sent_from_mailbox" {
		t.Fatalf("history %+v", hist[len(hist)-1])
	}
	for _, n := range e.notices {
		if !n.NoMail && n.Event == threading.EventAgentReplied {
			t.Fatal("a reply found in the Sent folder must never be mailed again")
		}
	}
	// Sent mail among colleagues, about no ticket, is kept raw and
	// ignored (sent mail to a customer opens a ticket: poller's
	// TestSentMailStartsConversation).
	other := "From: support@acme.test\nTo: bob@acme.test\nSubject: Lunch?\nMessage-ID: <sent2@acme.test>\n\nNoon?\n"
	res, _ = e.p.Ingest(context.Background(), []Raw{{Data: []byte(other), Source: SourceIMAP, Sent: true}})
	if res[0].Action != ActionIgnored || res[0].TicketID != nil {
		t.Fatalf("sent mail to a colleague: %+v", res[0])
	}
}

func TestAgentCreatesTicketWithRequester(t *testing.T) {
	e := newCmdEnv(t)
	fwd := "From: Bob <bob@acme.test>\nTo: support@acme.test\nSubject: TR: Commande 1234\nMessage-ID: <fwd1@acme.test>\n\n#requester dupont@client.test\n#priority high\n\nClient au téléphone, voir ci-dessous.\n\n-------- Message transféré --------\nDe : Jean Dupont <jean.dupont@other.test>\nObjet : Commande 1234\n\nMa commande n'est pas arrivée.\n"
	res := e.ingest(fwd, Envelope{AuthUser: "bob@acme.test"})
	if res.Action != ActionCreated {
		t.Fatalf("%+v", res)
	}
	tk, convs, _ := e.ticket(*res.TicketID)
	if tk.Requester.Email != "dupont@client.test" || tk.Priority != 3 || tk.Subject != "Commande 1234" {
		t.Fatalf("ticket %+v", tk)
	}
	if strings.Contains(convs[0].BodyText, "#requester") {
		t.Fatalf("commands left in the body: %q", convs[0].BodyText)
	}
	// The same mail without proof: a ticket from Bob's address, nothing applied.
	unproven := strings.Replace(fwd, "fwd1@", "fwd2@", 1)
	res = e.ingest(unproven, Envelope{})
	tk, _, hist := e.ticket(*res.TicketID)
	if tk.Requester.Email == "dupont@client.test" || tk.Priority != 1 || hist[len(hist)-1].Action != "unverified_agent_mail" {
		t.Fatalf("unproven #requester applied: %+v", tk)
	}
}

// TestHostileReferencesChain: a reply whose References list holds
// 50,000 ids still threads by its root and costs a bounded lookup.
func TestHostileReferencesChain(t *testing.T) {
	e := newCmdEnv(t)
	id := e.newTicket()
	var refs strings.Builder
	refs.WriteString("<c1@client.test>")
	for i := 0; i < 50000; i++ {
		fmt.Fprintf(&refs, " <junk%d@evil.test>", i)
	}
	mail := "From: Claire <claire@client.test>\nTo: support@acme.test\nSubject: encore\nMessage-ID: <long@client.test>\nReferences: " + refs.String() + "\n\nToujours rien.\n"
	res := e.ingest(mail, Envelope{})
	if res.Action != ActionAppended || *res.TicketID != id {
		t.Fatalf("long chain: %+v", res)
	}
}

func TestCustomFieldsByCommand(t *testing.T) {
	e := newCmdEnv(t)
	id := e.newTicket()
	e.ingest(e.agentMail(id, "alice@acme.test", "@Simonsays \"order_id\":\"A-1042\", \"plan\":\"pro\" @Simonsays\n#seats 12\n\nNoted.\n"), Envelope{})
	tk, _, hist := e.ticket(id)
	if tk.CustomFields["order_id"] != "A-1042" || tk.CustomFields["plan"] != "Pro" || tk.CustomFields["seats"] != "12" {
		t.Fatalf("custom fields %v", tk.CustomFields)
	}
	if findAction(hist, "custom_field_changed") < 3 {
		t.Fatalf("history lacks custom field changes")
	}
	// A bad value rejects every command of the mail.
	e.notices = nil
	e.ingest(e.agentMail(id, "alice@acme.test", "#plan gold\n#order_id B-1\n\nx\n"), Envelope{})
	tk, _, _ = e.ticket(id)
	if tk.CustomFields["order_id"] != "A-1042" || len(e.notices) != 1 || !strings.Contains(e.notices[0].ErrorText, "Free, Pro, Enterprise") {
		t.Fatalf("bad choice applied or not reported: %v %v", tk.CustomFields, eventKinds(e.notices))
	}
	// "none" clears a field.
	e.ingest(e.agentMail(id, "alice@acme.test", "#seats none\n\nok\n"), Envelope{})
	if tk, _, _ = e.ticket(id); tk.CustomFields["seats"] != "" {
		t.Fatalf("seats not cleared: %v", tk.CustomFields)
	}
}

func findAction(hist []store.History, action string) int {
	n := 0
	for _, h := range hist {
		if h.Action == action {
			n++
		}
	}
	return n
}
