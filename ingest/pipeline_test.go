package ingest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// The scenario tests feed the mails of fixtures/threading/<scenario>/
// through a real Pipeline into a real SQLite file and check what
// happened to tickets, participants, conversations and history.

const testConfig = `
threading:
  secret: "scenario-test-secret"
  noreply_senders: ["noreply@forms.acme.example", "*@notifications.example"]
statuses:
  - {code: 6, name: Waiting on engineering, category: pending}
  - {code: 7, name: Archived, category: closed}
  - {code: 8, name: In progress, category: open}
pipelines:
  - name: default
agents:
  - {email: alice@acme.example, name: Alice Agent}
channels:
  - name: support
    addresses: [support@acme.example, help@acme.example]
  - name: sales
    addresses: [sales@acme.example]
`

var start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

type harness struct {
	t      testing.TB
	ctx    context.Context
	st     *store.Store
	p      *ingest.Pipeline
	signer *threading.Signer
	now    time.Time
}

// newHarness opens a fresh database and a pipeline on testConfig;
// adjust, when set, edits the configuration first.
func newHarness(t testing.TB, adjust func(*config.Config)) *harness {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if adjust != nil {
		adjust(cfg)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "deskmail.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, ctx: ctx, st: st, now: start, signer: threading.NewSigner([]byte("scenario-test-secret"), 0)}
	h.p, err = ingest.NewPipeline(ctx, st, ingest.Env{Config: cfg, Signer: h.signer, Now: func() time.Time { return h.now }})
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	return h
}

var (
	ticketTokenRE = regexp.MustCompile(`\{\{TICKET_TOKEN (\d+)\}\}`)
	bounceTokenRE = regexp.MustCompile(`\{\{BOUNCE_TOKEN (\d+)\}\}`)
	outboxIDRE    = regexp.MustCompile(`\{\{OUTBOX_MESSAGE_ID (\d+)\}\}`)
	agentTokenRE  = regexp.MustCompile(`\{\{AGENT_TOKEN (\d+) (\S+)\}\}`)
)

// mail reads fixtures/threading/<scenario>/<name>.eml and fills in the
// reply-address token placeholders with the pipeline's signer.
func (h *harness) mail(scenario, name string) []byte {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "fixtures", "threading", scenario, name+".eml"))
	if err != nil {
		h.t.Fatal(err)
	}
	b = ticketTokenRE.ReplaceAllFunc(b, func(m []byte) []byte {
		id, _ := strconv.ParseInt(string(ticketTokenRE.FindSubmatch(m)[1]), 10, 64)
		return []byte(h.signer.TicketToken(id))
	})
	b = bounceTokenRE.ReplaceAllFunc(b, func(m []byte) []byte {
		id, _ := strconv.ParseInt(string(bounceTokenRE.FindSubmatch(m)[1]), 10, 64)
		return []byte(h.signer.BounceToken(id))
	})
	b = outboxIDRE.ReplaceAllFunc(b, func(m []byte) []byte {
		id, _ := strconv.ParseInt(string(outboxIDRE.FindSubmatch(m)[1]), 10, 64)
		var om *store.OutboxMail
		h.read(func(tx *store.Tx) (err error) { om, err = tx.OutboxMailByID(id); return err })
		return []byte(om.MessageID)
	})
	b = agentTokenRE.ReplaceAllFunc(b, func(m []byte) []byte {
		sm := agentTokenRE.FindSubmatch(m)
		id, _ := strconv.ParseInt(string(sm[1]), 10, 64)
		return []byte(h.signer.AgentToken(id, string(sm[2])))
	})
	return b
}

func (h *harness) raw(scenario, name string) ingest.Raw {
	return ingest.Raw{Data: h.mail(scenario, name), Source: ingest.SourcePipe, Name: name,
		Envelope: ingest.Envelope{ReceivedAt: h.now}}
}

// ingest commits the named mails of a scenario as one batch.
func (h *harness) ingest(scenario string, names ...string) []ingest.Result {
	h.t.Helper()
	raws := make([]ingest.Raw, len(names))
	for i, n := range names {
		raws[i] = h.raw(scenario, n)
	}
	return h.ingestRaw(raws...)
}

func (h *harness) ingestRaw(raws ...ingest.Raw) []ingest.Result {
	h.t.Helper()
	res, err := h.p.Ingest(h.ctx, raws)
	if err != nil {
		h.t.Fatalf("ingest: %v", err)
	}
	if len(res) != len(raws) {
		h.t.Fatalf("ingest: %d results for %d messages", len(res), len(raws))
	}
	for _, r := range res {
		if r.Err != nil {
			h.t.Fatalf("ingest %s: %v", r.Name, r.Err)
		}
	}
	return res
}

// one ingests one mail and checks its action and ticket (0: none).
func (h *harness) one(scenario, name string, action ingest.Action, ticket int64) ingest.Result {
	h.t.Helper()
	r := h.ingest(scenario, name)[0]
	checkResult(h.t, r, action, ticket)
	return r
}

func checkResult(t testing.TB, r ingest.Result, action ingest.Action, ticket int64) {
	t.Helper()
	got := int64(0)
	if r.TicketID != nil {
		got = *r.TicketID
	}
	if r.Action != action || got != ticket {
		t.Fatalf("%s: action %q ticket %d, want %q ticket %d", r.Name, r.Action, got, action, ticket)
	}
}

func (h *harness) read(fn func(tx *store.Tx) error) {
	h.t.Helper()
	if err := h.st.Read(h.ctx, fn); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) ticket(id int64) *store.Ticket {
	h.t.Helper()
	var tk *store.Ticket
	h.read(func(tx *store.Tx) (err error) { tk, err = tx.Ticket(id); return err })
	return tk
}

func (h *harness) conversations(id int64) []store.Conversation {
	h.t.Helper()
	var cs []store.Conversation
	h.read(func(tx *store.Tx) (err error) { cs, err = tx.Conversations(id); return err })
	return cs
}

func (h *harness) history(id int64) []store.History {
	h.t.Helper()
	var hs []store.History
	h.read(func(tx *store.Tx) (err error) { hs, err = tx.TicketHistory(id); return err })
	return hs
}

func (h *harness) ticketCount() int {
	h.t.Helper()
	var list []store.Ticket
	h.read(func(tx *store.Tx) (err error) { list, err = tx.ListTickets(store.TicketFilter{}); return err })
	return len(list)
}

func (h *harness) contacts() []string {
	h.t.Helper()
	var cs []store.Contact
	h.read(func(tx *store.Tx) (err error) { cs, err = tx.Contacts(0, 1000); return err })
	var out []string
	for _, c := range cs {
		out = append(out, c.Email)
	}
	return out
}

func (h *harness) rawCount(state string) int {
	h.t.Helper()
	var n int
	h.read(func(tx *store.Tx) (err error) { n, err = tx.CountRaw(state); return err })
	return n
}

// setStatus changes a ticket's status as an admin would.
func (h *harness) setStatus(id int64, code int) {
	h.t.Helper()
	if _, err := h.p.Update(h.ctx, id, threading.Changes{Status: &code}, threading.Actor{Type: "admin", Name: "test"}); err != nil {
		h.t.Fatalf("set status %d on ticket %d: %v", code, id, err)
	}
}

// addOutbound records one of our outbound Message-IDs on a ticket, as
// the outbox does when it queues a mail.
func (h *harness) addOutbound(messageID string, ticket int64) {
	h.t.Helper()
	err := h.st.Write(h.ctx, func(tx *store.Tx) error {
		return tx.AddMessageID(store.MessageRef{MessageID: messageID, Direction: "out", TicketID: &ticket})
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// addOutbox writes a sent outbox mail of a ticket to rcpt and returns
// its id.
func (h *harness) addOutbox(messageID string, ticket int64, rcpt ...string) int64 {
	h.t.Helper()
	m := &store.OutboxMail{TicketID: &ticket, Kind: "agent_reply", MailFrom: "support@acme.example", RcptTo: rcpt,
		MessageID: messageID, Raw: []byte("Subject: x\r\n\r\nx\r\n"), State: store.OutboxSent}
	if err := h.st.Write(h.ctx, func(tx *store.Tx) error { return tx.EnqueueOutbox(m) }); err != nil {
		h.t.Fatal(err)
	}
	return m.ID
}

// findHistory returns the entries with this action.
func findHistory(hs []store.History, action string) []store.History {
	var out []store.History
	for _, e := range hs {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

func equalStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if got == nil {
		got = []string{}
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func TestNewMailCreatesTicket(t *testing.T) {
	h := newHarness(t, nil)
	r := h.one("basic", "01-outlook-new", ingest.ActionCreated, 1)
	if r.Status == nil || *r.Status != 2 || r.ParentTicketID != nil || r.ConversationID == nil {
		t.Fatalf("result %+v: want status 2, a conversation, no parent", r)
	}
	if r.MessageID != "DB9PR07MB8712A1F0C1D5E3B0A4C2D6E1B7A90@DB9PR07MB8712.eurprd07.prod.outlook.com" {
		t.Errorf("message id %q", r.MessageID)
	}
	tk := h.ticket(1)
	if tk.Subject != "Invoice 2026-0113 charged twice" || tk.Status != 2 || tk.StatusName != "Open" || tk.Priority != 1 || tk.Source != 1 {
		t.Errorf("ticket %+v", tk)
	}
	if tk.Requester.Email != "jane.doe@customer.example" || tk.Requester.Name != "Jane Doe" {
		t.Errorf("requester %+v, want jane.doe@customer.example (lower-cased)", tk.Requester)
	}
	equalStrings(t, "cc_emails", tk.CcEmails, []string{"bob.martin@customer.example"})
	if tk.Channel == nil || *tk.Channel != "support" {
		t.Errorf("channel %v, want support", tk.Channel)
	}
	if tk.RequesterRespondedAt == nil || !tk.CreatedAt.Equal(start) {
		t.Errorf("created %v requester responded %v, want both at arrival %v", tk.CreatedAt, tk.RequesterRespondedAt, start)
	}
	cs := h.conversations(1)
	if len(cs) != 1 || !cs[0].Incoming || cs[0].Private || cs[0].Kind != "reply" || cs[0].MessageID != r.MessageID ||
		!strings.Contains(cs[0].BodyText, "charged twice") || cs[0].FromEmail != "jane.doe@customer.example" {
		t.Fatalf("conversations %+v", cs)
	}
	created := findHistory(h.history(1), "created")
	if len(created) != 1 || created[0].ActorType != "mail" || created[0].Actor != "jane.doe@customer.example" ||
		created[0].ConversationID == nil || *created[0].ConversationID != cs[0].ID {
		t.Errorf("history %+v: want one 'created' entry caused by the mail", created)
	}
	// The cc is a contact too: everyone on a ticket is, from first sight.
	equalStrings(t, "contacts", h.contacts(), []string{"jane.doe@customer.example", "bob.martin@customer.example"})
}

// TestCustomerReplies threads replies by each rule: headers, reply
// token, subject token with rewritten (Apple) or stripped (Outlook)
// References, French and German prefixes, a cc'd colleague, and an
// authenticated agent's reply.
func TestCustomerReplies(t *testing.T) {
	h := newHarness(t, nil)
	h.one("basic", "01-outlook-new", ingest.ActionCreated, 1)
	for _, c := range []struct{ name, rule string }{
		{"02-outlook-reply-headers", "In-Reply-To/References"}, // In-Reply-To
		{"03-gmail-reply-token", "reply-address token"},        // support+t1.xxx@, unrelated subject, no headers
		{"04-apple-rewritten-refs", "subject token"},           // References rewritten, [#1] in subject
		{"05-outlook-stripped-fr", "subject token"},            // no References at all, "RE : TR : Réf :"
		{"06-thunderbird-de-subject", "subject token"},         // cc'd colleague, "AW: WG: AW:" and "[# 1]"
	} {
		h.now = h.now.Add(time.Hour)
		r := h.one("basic", c.name, ingest.ActionAppended, 1)
		if *r.Status != 2 {
			t.Errorf("%s: status %d, want 2", c.name, *r.Status)
		}
		hs := findHistory(h.history(1), "customer_replied")
		last := hs[len(hs)-1]
		if last.ConversationID == nil || *last.ConversationID != *r.ConversationID || !strings.HasSuffix(last.Note, "matched by "+c.rule) {
			t.Errorf("%s: history %+v, want a customer_replied entry saying it matched by %s", c.name, last, c.rule)
		}
	}
	if n := h.ticketCount(); n != 1 {
		t.Fatalf("%d tickets, want 1", n)
	}
	tk := h.ticket(1)
	if tk.Requester.Email != "jane.doe@customer.example" {
		t.Errorf("requester changed to %s", tk.Requester.Email)
	}
	equalStrings(t, "cc_emails", tk.CcEmails, []string{"bob.martin@customer.example"})
	if len(findHistory(h.history(1), "cc_added")) != 0 {
		t.Errorf("a known participant was added as cc again")
	}
	if tk.FirstRespondedAt != nil {
		t.Errorf("first_responded_at set before any agent reply")
	}

	// Alice answers from her mail client through her agent token.
	h.now = h.now.Add(time.Hour)
	r := h.one("basic", "07-agent-reply-token", ingest.ActionAppended, 1)
	if *r.Status != 3 {
		t.Errorf("agent reply: status %d, want 3 (pending)", *r.Status)
	}
	tk = h.ticket(1)
	if tk.FirstRespondedAt == nil || !tk.FirstRespondedAt.Equal(h.now) || tk.AgentRespondedAt == nil {
		t.Errorf("agent reply timestamps: first %v agent %v", tk.FirstRespondedAt, tk.AgentRespondedAt)
	}
	cs := h.conversations(1)
	if len(cs) != 7 {
		t.Fatalf("%d conversations, want 7", len(cs))
	}
	last := cs[6]
	if last.Incoming || last.AgentID == nil || last.ContactID != nil || last.Kind != "reply" {
		t.Errorf("agent conversation %+v: want outgoing reply by the agent", last)
	}
	st := findHistory(h.history(1), "status_changed")
	if len(st) != 1 || st[0].ActorType != "agent" || st[0].Actor != "alice@acme.example" || *st[0].OldValue != "2" || *st[0].NewValue != "3" {
		t.Errorf("status history %+v", st)
	}
	equalStrings(t, "contacts", h.contacts(), []string{"jane.doe@customer.example", "bob.martin@customer.example"})
}

func TestStrangerCannotUseGuessedToken(t *testing.T) {
	h := newHarness(t, nil)
	h.one("stranger", "01-new", ingest.ActionCreated, 1)
	h.one("stranger", "02-guessed-token", ingest.ActionCreated, 2)
	h.one("stranger", "03-forged-references", ingest.ActionCreated, 3)

	tk := h.ticket(1)
	equalStrings(t, "ticket 1 cc_emails", tk.CcEmails, nil)
	if len(h.conversations(1)) != 1 {
		t.Errorf("the guessed ticket got the stranger's mail")
	}
	if hs := h.history(1); len(hs) != 1 || hs[0].Action != "created" {
		t.Errorf("ticket 1 history %+v, want only its creation", hs)
	}
	for _, id := range []int64{2, 3} {
		tk := h.ticket(id)
		if tk.Requester.Email != "mallory@attacker.example" || tk.ParentID != nil {
			t.Errorf("ticket %d: requester %s parent %v", id, tk.Requester.Email, tk.ParentID)
		}
	}
	if s := h.ticket(2).Subject; strings.Contains(s, "#1") {
		t.Errorf("new ticket subject %q still carries the other ticket's token", s)
	}
}

// TestReplyStatusRules checks what a customer reply does to a ticket in
// each status category, under each closed-reply policy.
func TestReplyStatusRules(t *testing.T) {
	week := 7 * 24 * time.Hour
	cases := []struct {
		name     string
		policy   string
		within   time.Duration
		status   int
		wait     time.Duration // from setting the status to the reply
		reply    string
		action   ingest.Action
		ticket   int64
		wantStat int
	}{
		{"open", "new_ticket", 0, 2, time.Hour, "02-reply-headers", ingest.ActionAppended, 1, 2},
		{"pending", "new_ticket", 0, 3, time.Hour, "02-reply-headers", ingest.ActionReopened, 1, 2},
		{"custom pending category", "new_ticket", 0, 6, time.Hour, "02-reply-headers", ingest.ActionReopened, 1, 2},
		{"custom open category", "new_ticket", 0, 8, time.Hour, "02-reply-headers", ingest.ActionAppended, 1, 2},
		{"resolved", "new_ticket", 0, 4, time.Hour, "02-reply-headers", ingest.ActionReopened, 1, 2},
		{"resolved by subject", "new_ticket", 0, 4, time.Hour, "03-reply-subject", ingest.ActionReopened, 1, 2},
		{"closed new_ticket", "new_ticket", 0, 5, time.Hour, "02-reply-headers", ingest.ActionFollowupCreated, 2, 2},
		{"closed new_ticket by subject", "new_ticket", 0, 5, time.Hour, "03-reply-subject", ingest.ActionFollowupCreated, 2, 2},
		{"custom closed category", "new_ticket", 0, 7, time.Hour, "02-reply-headers", ingest.ActionFollowupCreated, 2, 2},
		{"closed reopen", "reopen", 0, 5, 300 * 24 * time.Hour, "02-reply-headers", ingest.ActionReopened, 1, 2},
		{"closed reopen_within inside", "reopen_within", week, 5, 6 * 24 * time.Hour, "02-reply-headers", ingest.ActionReopened, 1, 2},
		{"closed reopen_within outside", "reopen_within", week, 5, 8 * 24 * time.Hour, "02-reply-headers", ingest.ActionFollowupCreated, 2, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, func(cfg *config.Config) {
				cfg.Pipelines[0].ClosedReply = c.policy
				cfg.Pipelines[0].ReopenWithin.Duration = c.within
			})
			h.one("lifecycle", "01-new", ingest.ActionCreated, 1)
			h.now = h.now.Add(time.Hour)
			if c.status != 2 {
				h.setStatus(1, c.status)
			}
			statusAt := h.now
			h.now = h.now.Add(c.wait)
			r := h.one("lifecycle", c.reply, c.action, c.ticket)
			if *r.Status != c.wantStat {
				t.Errorf("status %d, want %d", *r.Status, c.wantStat)
			}
			old := h.ticket(1)
			switch c.action {
			case ingest.ActionFollowupCreated:
				if r.ParentTicketID == nil || *r.ParentTicketID != 1 {
					t.Fatalf("parent_ticket_id %v, want 1", r.ParentTicketID)
				}
				if old.Status != c.status || len(h.conversations(1)) != 1 {
					t.Errorf("closed ticket touched: status %d, %d conversations", old.Status, len(h.conversations(1)))
				}
				nt := h.ticket(2)
				if nt.ParentID == nil || *nt.ParentID != 1 || nt.Requester.Email != "pierre.martin@client.fr" || nt.Subject != "Export CSV vide" {
					t.Errorf("follow-up %+v", nt)
				}
				if len(findHistory(h.history(1), "followup_created")) != 1 {
					t.Errorf("closed ticket's history does not mention the follow-up")
				}
				if hs := findHistory(h.history(2), "created"); len(hs) != 1 || !strings.Contains(hs[0].Note, "#1") {
					t.Errorf("follow-up history %+v", hs)
				}
			default:
				if r.ParentTicketID != nil || h.ticketCount() != 1 {
					t.Errorf("unexpected follow-up")
				}
				if old.Status != c.wantStat || len(h.conversations(1)) != 2 {
					t.Errorf("ticket status %d with %d conversations", old.Status, len(h.conversations(1)))
				}
				if c.status != c.wantStat {
					st := findHistory(h.history(1), "status_changed")
					last := st[len(st)-1]
					if last.ActorType != "mail" || last.Actor != "pierre.martin@client.fr" || *last.OldValue != strconv.Itoa(c.status) ||
						*last.NewValue != "2" || last.ConversationID == nil {
						t.Errorf("status history %+v: want the customer's mail as the cause", last)
					}
					if old.StatusUpdatedAt == nil || !old.StatusUpdatedAt.Equal(h.now) {
						t.Errorf("status_updated_at %v, want %v", old.StatusUpdatedAt, h.now)
					}
				}
				if c.action == ingest.ActionReopened && len(findHistory(h.history(1), "reopened")) != 1 {
					t.Errorf("no 'reopened' history entry")
				}
				if c.status == 5 && (old.ClosedAt == nil || !old.ClosedAt.Equal(statusAt)) {
					t.Errorf("closed_at %v, want %v", old.ClosedAt, statusAt)
				}
			}
		})
	}
}

func TestAgentReplyUnchangedPipeline(t *testing.T) {
	h := newHarness(t, func(cfg *config.Config) { cfg.Pipelines[0].AgentReplyStatus = "unchanged" })
	h.one("basic", "01-outlook-new", ingest.ActionCreated, 1)
	r := h.one("basic", "07-agent-reply-token", ingest.ActionAppended, 1)
	if *r.Status != 2 || len(findHistory(h.history(1), "status_changed")) != 0 {
		t.Errorf("status %d: agent reply changed the status under 'unchanged'", *r.Status)
	}
	if len(findHistory(h.history(1), "agent_replied")) != 1 {
		t.Errorf("no agent_replied history")
	}
}

func TestDuplicates(t *testing.T) {
	h := newHarness(t, nil)
	res := h.ingest("duplicates", "01-gmail-new", "01-gmail-new", "02-no-message-id", "02-no-message-id")
	checkResult(t, res[0], ingest.ActionCreated, 1)
	checkResult(t, res[1], ingest.ActionDuplicate, 1)
	checkResult(t, res[2], ingest.ActionCreated, 2)
	checkResult(t, res[3], ingest.ActionDuplicate, 2)
	if !strings.HasSuffix(res[2].MessageID, "@deskmail.invalid") || res[2].MessageID != res[3].MessageID {
		t.Errorf("no Message-ID: generated %q and %q, want the same content-derived id", res[2].MessageID, res[3].MessageID)
	}
	// An IMAP re-poll after a crash, an SMTP retry: a later batch.
	h.now = h.now.Add(time.Hour)
	res = h.ingest("duplicates", "02-no-message-id", "01-gmail-new")
	checkResult(t, res[0], ingest.ActionDuplicate, 2)
	checkResult(t, res[1], ingest.ActionDuplicate, 1)
	if n := h.ticketCount(); n != 2 {
		t.Errorf("%d tickets, want 2", n)
	}
	for _, id := range []int64{1, 2} {
		if n := len(h.conversations(id)); n != 1 {
			t.Errorf("ticket %d has %d conversations, want 1", id, n)
		}
	}
	if n, d := h.rawCount(""), h.rawCount("duplicate"); n != 6 || d != 4 {
		t.Errorf("raw messages: %d kept, %d marked duplicate; want 6 and 4", n, d)
	}
}

func TestSameMailToTwoSupportAddresses(t *testing.T) {
	h := newHarness(t, nil)
	// The copy delivered to support@ and the copy delivered to sales@.
	first := h.raw("two-addresses", "01-to-support-and-sales")
	first.Envelope.RcptTo = []string{"support@acme.example"}
	second := h.raw("two-addresses", "01-to-support-and-sales")
	second.Channel, second.Envelope.RcptTo = "sales", []string{"sales@acme.example"}
	res := h.ingestRaw(first)
	checkResult(t, res[0], ingest.ActionCreated, 1)
	h.now = h.now.Add(time.Second)
	res = h.ingestRaw(second)
	checkResult(t, res[0], ingest.ActionDuplicate, 1)
	tk := h.ticket(1)
	equalStrings(t, "cc_emails", tk.CcEmails, []string{"ken@bigcorp.example"})
	if tk.Channel == nil || *tk.Channel != "support" {
		t.Errorf("channel %v", tk.Channel)
	}

	// Cc'ing an alias of the same channel (in upper case).
	h.one("two-addresses", "02-cc-alias", ingest.ActionCreated, 2)
	equalStrings(t, "cc_emails of ticket 2", h.ticket(2).CcEmails, nil)
	if n := h.ticketCount(); n != 2 {
		t.Errorf("%d tickets, want 2", n)
	}
}

// A colleague who answers a ticket's thread is no participant: knowing
// a Message-ID proves nothing. By default the reply opens a new ticket
// (both histories note the relation); with thread_same_domain the
// requester's company domain threads, but joins no cc list either.
func TestColleagueReplySameDomainRule(t *testing.T) {
	for _, optIn := range []bool{false, true} {
		t.Run(fmt.Sprintf("thread_same_domain=%v", optIn), func(t *testing.T) {
			h := newHarness(t, func(cfg *config.Config) { cfg.Channels[0].ThreadSameDomain = optIn })
			// One batch: each message sees the ones before it.
			res := h.ingest("newcomer", "01-new", "02-colleague-reply", "03-requester-uppercase")
			checkResult(t, res[0], ingest.ActionCreated, 1)
			if optIn {
				checkResult(t, res[1], ingest.ActionAppended, 1)
			} else {
				checkResult(t, res[1], ingest.ActionCreated, 2)
				if got := h.ticket(2).Requester.Email; got != "carol.diaz@customer.example" {
					t.Errorf("new ticket's requester %s", got)
				}
				if len(findHistory(h.history(1), "possibly_related")) != 1 || len(findHistory(h.history(2), "possibly_related")) != 1 {
					t.Errorf("relation not noted: %+v / %+v", h.history(1), h.history(2))
				}
			}
			checkResult(t, res[2], ingest.ActionAppended, 1)
			tk := h.ticket(1)
			if tk.Requester.Email != "jane.doe@customer.example" {
				t.Errorf("requester %s", tk.Requester.Email)
			}
			equalStrings(t, "cc_emails", tk.CcEmails, nil)
			if cc := findHistory(h.history(1), "cc_added"); len(cc) != 0 {
				t.Errorf("someone joined as cc by writing in: %+v", cc)
			}
			// Contacts are matched case-insensitively: JANE.DOE@CUSTOMER.EXAMPLE
			// is Jane, not a new contact.
			equalStrings(t, "contacts", h.contacts(), []string{"jane.doe@customer.example", "carol.diaz@customer.example"})
			cs := h.conversations(1)
			if last := cs[len(cs)-1]; last.ContactID == nil || *last.ContactID != tk.RequesterID {
				t.Errorf("upper-case reply attributed to contact %v, want the requester %d", last.ContactID, tk.RequesterID)
			}
		})
	}
}

func TestWebFormReplyToIsRequester(t *testing.T) {
	h := newHarness(t, nil)
	h.one("webform", "01-form", ingest.ActionCreated, 1)
	tk := h.ticket(1)
	if tk.Requester.Email != "helene.roux@exemple.fr" || tk.Requester.Name != "Hélène Roux" {
		t.Errorf("requester %+v, want the Reply-To", tk.Requester)
	}
	equalStrings(t, "cc_emails", tk.CcEmails, nil)
	h.one("webform", "02-helene-reply", ingest.ActionAppended, 1)
	equalStrings(t, "contacts", h.contacts(), []string{"helene.roux@exemple.fr"})
}

// Without configured no-reply senders, the usual no-reply addresses
// still hand the requester role to the Reply-To.
func TestBuiltinNoReplySenders(t *testing.T) {
	h := newHarness(t, func(cfg *config.Config) { cfg.Threading.NoReplySenders = nil })
	h.one("webform", "03-shop-no-reply", ingest.ActionCreated, 1)
	tk := h.ticket(1)
	if tk.Requester.Email != "ravi.patel@example.net" || tk.Requester.Name != "Ravi Patel" {
		t.Errorf("requester %+v, want the Reply-To", tk.Requester)
	}
	equalStrings(t, "cc_emails", tk.CcEmails, nil)
	// noreply@forms.acme.example matches the built-in noreply@*.
	h.one("webform", "01-form", ingest.ActionCreated, 2)
	if r := h.ticket(2).Requester.Email; r != "helene.roux@exemple.fr" {
		t.Errorf("requester %s, want the Reply-To", r)
	}
}

func TestAgentForwardCreatesTicketForCustomer(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		file, requester, name, subject string
	}{
		{"01-gmail-fwd-by-agent", "klaus.mueller@kunde.de", "Klaus Müller", "Lieferung beschädigt"},
		{"02-outlook-wg-by-agent", "petra.schmidt@firma.de", "Petra Schmidt", "Rechnung fehlt"},
		{"03-french-tr-by-agent", "luc.bernard@societe.fr", "Luc Bernard", "Contrat de maintenance"},
	}
	for i, c := range cases {
		id := int64(i + 1)
		// Proven: the agent submitted it over SMTP AUTH.
		raw := h.raw("forward", c.file)
		raw.Envelope.AuthUser = "alice@acme.example"
		checkResult(t, h.ingestRaw(raw)[0], ingest.ActionCreated, id)
		tk := h.ticket(id)
		if tk.Requester.Email != c.requester || tk.Requester.Name != c.name || tk.Subject != c.subject {
			t.Errorf("%s: requester %+v subject %q, want %s <%s> %q", c.file, tk.Requester, tk.Subject, c.name, c.requester, c.subject)
		}
		equalStrings(t, c.file+" cc_emails", tk.CcEmails, nil)
		cs := h.conversations(id)
		if len(cs) != 1 || cs[0].Kind != "forward" || cs[0].FromEmail != "alice@acme.example" {
			t.Errorf("%s: conversation %+v", c.file, cs)
		}
		if hs := findHistory(h.history(id), "created"); len(hs) != 1 || !strings.Contains(hs[0].Note, "forwarded by agent alice@acme.example") {
			t.Errorf("%s: history %+v", c.file, hs)
		}
	}
	// A customer forwarding a mail is the requester of their own ticket.
	h.one("forward", "04-customer-fwd", ingest.ActionCreated, 4)
	if r := h.ticket(4).Requester.Email; r != "sam.lee@gmail.com" {
		t.Errorf("customer forward: requester %s", r)
	}
}

// An agent address that proves nothing opens no ticket for the person
// it forwards: the mail is kept on a ticket of the agent address, the
// history says why, and nobody but the agent address hears of it.
func TestUnprovenAgentForwardChangesNothing(t *testing.T) {
	h := newHarness(t, nil)
	h.one("forward", "01-gmail-fwd-by-agent", ingest.ActionCreated, 1)
	tk := h.ticket(1)
	if tk.Requester.Email != "alice@acme.example" {
		t.Errorf("unproven forward opened a ticket for %s", tk.Requester.Email)
	}
	equalStrings(t, "cc_emails", tk.CcEmails, nil)
	if hs := findHistory(h.history(1), "unverified_agent_mail"); len(hs) != 1 || !strings.Contains(hs[0].Note, "klaus.mueller@kunde.de") {
		t.Errorf("history %+v", h.history(1))
	}
	for _, c := range h.contacts() {
		if c == "klaus.mueller@kunde.de" {
			t.Errorf("the forwarded sender became a contact")
		}
	}
}

func TestAutoReplies(t *testing.T) {
	h := newHarness(t, nil)
	h.one("noise", "01-new", ingest.ActionCreated, 1)
	h.setStatus(1, 3)
	h.addOutbound("out-1.t1@deskmail.local", 1)
	h.now = h.now.Add(time.Minute)
	r := h.one("noise", "02-ooo-on-ticket", ingest.ActionAppended, 1)
	if *r.Status != 3 {
		t.Errorf("auto-reply changed the status to %d", *r.Status)
	}
	cs := h.conversations(1)
	if len(cs) != 2 || cs[1].Kind != "auto_reply" || !cs[1].Private {
		t.Errorf("conversations %+v", cs)
	}
	if len(findHistory(h.history(1), "auto_reply_received")) != 1 || len(findHistory(h.history(1), "reopened")) != 0 {
		t.Errorf("history %+v", h.history(1))
	}
	if tk := h.ticket(1); !tk.RequesterRespondedAt.Equal(start) {
		t.Errorf("an auto-reply counted as the requester responding: %v", tk.RequesterRespondedAt)
	}

	r = h.one("noise", "03-ooo-no-ticket", ingest.ActionIgnored, 0)
	if r.RawID == 0 || h.rawCount("ignored") != 1 || h.ticketCount() != 1 {
		t.Errorf("auto-reply without ticket: raw %d, %d ignored, %d tickets", r.RawID, h.rawCount("ignored"), h.ticketCount())
	}
	var data []byte
	h.read(func(tx *store.Tx) (err error) { data, err = tx.RawData(r.RawID); return err })
	if string(data) != string(h.mail("noise", "03-ooo-no-ticket")) {
		t.Errorf("raw bytes of the ignored auto-reply were not kept")
	}
}

// TestBounceByMessageIDWithoutVERP: with outbound.verp off, a report
// naming our outbox mail's Message-ID and a recipient it was sent to is
// the proof; with VERP on (the default) the same report proves nothing
// (it did not come back to the mail's signed envelope sender) and is
// only noted on the ticket.
func TestBounceByMessageIDWithoutVERP(t *testing.T) {
	for _, verp := range []bool{false, true} {
		t.Run(fmt.Sprintf("verp=%v", verp), func(t *testing.T) {
			h := newHarness(t, func(c *config.Config) { c.Outbound.VERP = &verp })
			h.one("noise", "01-new", ingest.ActionCreated, 1)
			h.addOutbox("out-1.t1@deskmail.local", 1, "jane.doe@customer.example")
			h.now = h.now.Add(10 * time.Minute)
			r := h.one("noise", "04-dsn", ingest.ActionBounce, 1)
			if *r.Status != 2 {
				t.Errorf("bounce changed the status to %d", *r.Status)
			}
			b := findHistory(h.history(1), "bounce")
			if len(b) != 1 || !strings.Contains(b[0].Note, "jane.doe@customer.example") && !verp || !strings.Contains(b[0].Note, "out-1.t1@deskmail.local") {
				t.Errorf("bounce history %+v", b)
			}
			var c *store.Contact
			h.read(func(tx *store.Tx) (err error) { c, err = tx.ContactByEmail("jane.doe@customer.example"); return err })
			if c.Bouncing == verp || (!verp && (c.BouncedAt == nil || c.BounceStatus != "5.1.1" || c.BounceID == nil)) {
				t.Errorf("verp=%v: contact %+v", verp, c)
			}
			if cs := h.conversations(1); verp != (len(cs) == 1) {
				t.Errorf("verp=%v: %d conversations (a proven report is one, an unproven one is not)", verp, len(cs))
			}
			if h.ticketCount() != 1 {
				t.Errorf("a bounce created a ticket")
			}
		})
	}
}

// TestBounceScenario drives fixtures/threading/bounces: a real bounce
// to the signed envelope sender of our mail flags the customer, their
// next mail clears it, a transient failure and a forged report flag
// nobody, and a report for someone the mail was not sent to neither.
func TestBounceScenario(t *testing.T) {
	h := newHarness(t, nil)
	h.one("bounces", "01-new", ingest.ActionCreated, 1)
	if id := h.addOutbox("deskmail.t1.reply1@deskmail.local", 1, "jane.doe@customer.example"); id != 1 {
		t.Fatalf("outbox id %d", id)
	}
	jane := func() *store.Contact {
		var c *store.Contact
		h.read(func(tx *store.Tx) (err error) { c, err = tx.ContactByEmail("jane.doe@customer.example"); return err })
		return c
	}
	bounces := func(outcome string) []store.Bounce {
		var bs []store.Bounce
		h.read(func(tx *store.Tx) (err error) { bs, err = tx.Bounces(outcome, 10); return err })
		return bs
	}
	lastNote := func(action string) string {
		hs := findHistory(h.history(1), action)
		if len(hs) == 0 {
			t.Fatalf("no %s history on ticket 1", action)
		}
		return hs[len(hs)-1].Note
	}

	h.now = h.now.Add(10 * time.Minute)
	h.one("bounces", "02-dsn-real", ingest.ActionBounce, 1)
	c := jane()
	if !c.Bouncing || c.BounceStatus != "5.1.1" || c.BounceID == nil || !strings.Contains(c.BounceReason, "deskmail.t1.reply1@deskmail.local") {
		t.Fatalf("a real bounce did not flag jane: %+v", c)
	}
	if n := lastNote("bounce"); !strings.Contains(n, "flagged") {
		t.Errorf("history %q", n)
	}
	if bs := bounces(store.BounceFlagged); len(bs) != 1 || bs[0].OutboxID == nil || *bs[0].OutboxID != 1 {
		t.Errorf("flagged bounces %+v", bs)
	}

	h.now = h.now.Add(time.Hour)
	h.one("bounces", "03-customer-writes-again", ingest.ActionAppended, 1)
	if c := jane(); c.Bouncing || c.BounceReason != "" || c.BounceID != nil {
		t.Errorf("jane's own mail did not clear the flag: %+v", c)
	}
	if n := lastNote("bounce_cleared"); !strings.Contains(n, "jane.doe@customer.example") {
		t.Errorf("bounce_cleared note %q", n)
	}

	h.now = h.now.Add(time.Hour)
	h.one("bounces", "04-dsn-delayed", ingest.ActionBounce, 1)
	if c := jane(); c.Bouncing {
		t.Errorf("a 4.x.x report flagged jane: %+v", c)
	}
	if n := lastNote("bounce"); !strings.Contains(n, "4.2.2") || !strings.Contains(n, "transient") {
		t.Errorf("transient history %q", n)
	}

	h.now = h.now.Add(time.Hour)
	convs := len(h.conversations(1))
	h.one("bounces", "05-forged-dsn", ingest.ActionBounce, 1)
	if c := jane(); c.Bouncing {
		t.Errorf("a forged report flagged jane: %+v", c)
	}
	if n := lastNote("bounce"); !strings.Contains(n, "flags nobody") {
		t.Errorf("forged report history %q", n)
	}
	if n := len(h.conversations(1)); n != convs {
		t.Errorf("a forged report became a conversation")
	}

	h.one("bounces", "06-dsn-other-recipient", ingest.ActionBounce, 1)
	var flagged []store.Contact
	h.read(func(tx *store.Tx) (err error) { flagged, err = tx.BouncingContacts(); return err })
	if len(flagged) != 0 {
		t.Errorf("flagged %+v", flagged)
	}
	if bs := bounces(store.BounceUncorrelated); len(bs) != 2 || !strings.Contains(bs[0].Note, "boss@customer.example") {
		t.Errorf("uncorrelated bounces %+v", bs)
	}
	if h.ticketCount() != 1 {
		t.Errorf("%d tickets", h.ticketCount())
	}
}

func TestLoopsAreIgnored(t *testing.T) {
	h := newHarness(t, nil)
	h.one("noise", "01-new", ingest.ActionCreated, 1)
	h.addOutbound("out-2.t1@deskmail.local", 1)
	h.one("noise", "05-loop-from-support", ingest.ActionIgnored, 0)
	h.one("noise", "06-own-message-id", ingest.ActionIgnored, 1)
	if n := len(h.conversations(1)); n != 1 || h.ticketCount() != 1 {
		t.Errorf("loops changed tickets: %d conversations, %d tickets", n, h.ticketCount())
	}
	if n := h.rawCount("ignored"); n != 2 {
		t.Errorf("%d raw messages marked ignored, want 2", n)
	}
}

func TestUnparseableKeptRaw(t *testing.T) {
	h := newHarness(t, nil)
	res, err := h.p.Ingest(h.ctx, []ingest.Raw{h.raw("noise", "07-garbage"), h.raw("noise", "01-new")})
	if err != nil {
		t.Fatalf("ingest returned %v for an unparseable message", err)
	}
	if res[0].Err != nil || res[0].Action != ingest.ActionIgnored || res[0].TicketID != nil || res[0].RawID == 0 {
		t.Fatalf("garbage: %+v", res[0])
	}
	checkResult(t, res[1], ingest.ActionCreated, 1)
	if n := h.rawCount("failed"); n != 1 {
		t.Errorf("%d raw messages failed, want 1", n)
	}
	var data []byte
	h.read(func(tx *store.Tx) (err error) { data, err = tx.RawData(res[0].RawID); return err })
	if string(data) != string(h.mail("noise", "07-garbage")) {
		t.Errorf("raw bytes not kept")
	}
}

// TestSubmitConcurrentDuplicates sends the same mail from many
// goroutines through the group committer: one ticket, one conversation.
func TestSubmitConcurrentDuplicates(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- h.p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var wg sync.WaitGroup
	results := make([]ingest.Result, 16)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.raw("duplicates", "01-gmail-new")
			r.Name = fmt.Sprint(i)
			res, err := h.p.Submit(ctx, r)
			if err != nil {
				t.Errorf("submit %d: %v", i, err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	created := 0
	for _, r := range results {
		switch r.Action {
		case ingest.ActionCreated:
			created++
		case ingest.ActionDuplicate:
		default:
			t.Errorf("%s: action %q", r.Name, r.Action)
		}
		if r.TicketID == nil || *r.TicketID != 1 {
			t.Errorf("%s: ticket %v", r.Name, r.TicketID)
		}
	}
	if created != 1 || h.ticketCount() != 1 || len(h.conversations(1)) != 1 {
		t.Errorf("%d created, %d tickets, want exactly one", created, h.ticketCount())
	}
}

// The attack mails of fixtures/threading/attacks, each with the outcome
// its text states.
func TestAttackFixtures(t *testing.T) {
	h := newHarness(t, func(cfg *config.Config) { cfg.Threading.TrustedAuthServers = []string{"mx.acme.example"} })
	h.one("attacks", "01-new", ingest.ActionCreated, 1)

	h.one("attacks", "02-stranger-quotes-id", ingest.ActionCreated, 2)
	one := h.ticket(1)
	equalStrings(t, "ticket 1 cc_emails", one.CcEmails, nil)
	if len(h.conversations(1)) != 1 || len(findHistory(h.history(1), "possibly_related")) != 1 || len(findHistory(h.history(2), "possibly_related")) != 1 {
		t.Errorf("stranger: ticket 1 has %d conversations; histories %+v / %+v", len(h.conversations(1)), h.history(1), h.history(2))
	}
	if r := h.ticket(2).Requester.Email; r != "mallory@evil.example" {
		t.Errorf("stranger's ticket requester %s", r)
	}

	// Relayed to deskmail by the loopback MTA: the forged header is
	// still below a foreign Received.
	raw := h.raw("attacks", "03-forged-ar-agent")
	raw.Source, raw.Envelope.ClientIP = ingest.SourceSMTP, "127.0.0.1"
	checkResult(t, h.ingestRaw(raw)[0], ingest.ActionAppended, 1)
	if st := h.ticket(1).Status; st != 2 {
		t.Errorf("forged Authentication-Results changed the status to %d", st)
	}
	if cs := h.conversations(1); !cs[len(cs)-1].Private || len(findHistory(h.history(1), "unverified_agent_mail")) != 1 {
		t.Errorf("forged agent mail not kept as a private note: %+v", h.history(1))
	}

	h.one("attacks", "04-unproven-agent-fwd", ingest.ActionCreated, 3)
	if r := h.ticket(3).Requester.Email; r != "alice@acme.example" {
		t.Errorf("unproven forward opened a ticket for %s", r)
	}
	for _, c := range h.contacts() {
		if c == "victim@customer.example" {
			t.Errorf("the forwarded sender became a contact")
		}
	}
}

// TestOutlookThreadIndex: an Outlook reply without In-Reply-To or
// References threads by its Thread-Index conversation, for
// participants only (fixtures/threading/outlook).
func TestOutlookThreadIndex(t *testing.T) {
	h := newHarness(t, nil)
	h.one("outlook", "01-new", ingest.ActionCreated, 1)
	h.one("outlook", "02-reply-without-references", ingest.ActionAppended, 1)
	if cs := h.conversations(1); len(cs) != 2 {
		t.Fatalf("ticket 1 has %d conversations, want 2", len(cs))
	}
	h.one("outlook", "03-stranger-copies-thread-index", ingest.ActionCreated, 2)
	if len(h.conversations(1)) != 2 || len(findHistory(h.history(1), "possibly_related")) != 1 || len(findHistory(h.history(2), "possibly_related")) != 1 {
		t.Errorf("stranger with a copied Thread-Index: ticket 1 %d conversations; histories %+v / %+v", len(h.conversations(1)), h.history(1), h.history(2))
	}
	if cc := h.ticket(1).CcEmails; len(cc) != 0 {
		t.Errorf("the stranger became a CC: %v", cc)
	}
}
