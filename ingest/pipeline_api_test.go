package ingest_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// apiHarness is a pipeline on a fresh database whose notices are
// recorded instead of mailed.
type apiHarness struct {
	t       *testing.T
	ctx     context.Context
	st      *store.Store
	p       *ingest.Pipeline
	mu      sync.Mutex
	notices []ingest.Notice
	alice   *store.Agent
	bob     *store.Agent
}

func newAPIHarness(t *testing.T) *apiHarness {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(strings.Replace(testConfig, "agents:\n", "agents:\n  - {email: bob@acme.example, name: Bob}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	h := &apiHarness{t: t, ctx: context.Background()}
	h.st, err = store.Open(h.ctx, filepath.Join(t.TempDir(), "deskmail.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.st.Close() })
	env := ingest.Env{Config: cfg, Signer: threading.NewSigner([]byte("x"), 0), Notify: func(tx *store.Tx, n ingest.Notice) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if n.Event != threading.EventStatusChanged { // mail-causing notices only
			h.notices = append(h.notices, n)
		}
		return nil
	}}
	if h.p, err = ingest.NewPipeline(h.ctx, h.st, env); err != nil {
		t.Fatal(err)
	}
	h.st.Read(h.ctx, func(tx *store.Tx) error {
		h.alice, err = tx.AgentByEmail("alice@acme.example")
		if err != nil {
			return err
		}
		h.bob, err = tx.AgentByEmail("bob@acme.example")
		return err
	})
	if h.alice == nil || h.bob == nil {
		t.Fatalf("agents: %v", err)
	}
	return h
}

func (h *apiHarness) take() []ingest.Notice {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.notices
	h.notices = nil
	return n
}

func (h *apiHarness) read(fn func(tx *store.Tx) error) {
	h.t.Helper()
	if err := h.st.Read(h.ctx, fn); err != nil {
		h.t.Fatal(err)
	}
}

func TestAPICreateTicket(t *testing.T) {
	h := newAPIHarness(t)
	tk, err := h.p.CreateTicket(h.ctx, ingest.NewTicket{RequesterEmail: "New@Customer.example", RequesterName: "New", Subject: "Phone call",
		Description: ingest.APIMessage{HTML: "<p>Called <script>alert(1)</script>about billing</p>"}, Status: 6, Priority: 3,
		Tags: []string{"phone"}, CcEmails: []string{"boss@customer.example"}, ResponderID: h.bob.ID}, h.alice)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Status != 6 || tk.Priority != 3 || tk.Source != 2 || tk.Requester.Email != "new@customer.example" || tk.Channel == nil || *tk.Channel != "support" ||
		tk.Responder == nil || *tk.Responder != "bob@acme.example" || len(tk.Tags) != 1 || len(tk.CcEmails) != 1 {
		t.Fatalf("ticket: %+v", tk)
	}
	var convs []store.Conversation
	var hist []store.History
	h.read(func(tx *store.Tx) error {
		convs, _ = tx.Conversations(tk.ID)
		hist, _ = tx.TicketHistory(tk.ID)
		return nil
	})
	if len(convs) != 1 || !convs[0].Incoming || strings.Contains(convs[0].BodyHTML, "script") || convs[0].BodyText != "Called about billing" {
		t.Fatalf("description: %+v", convs)
	}
	actions := map[string]bool{}
	for _, x := range hist {
		if x.ActorType != "api" || x.Actor != "alice@acme.example" {
			t.Errorf("history actor %+v", x)
		}
		actions[x.Action] = true
	}
	for _, a := range []string{"created", "status_changed", "priority_changed", "assigned", "tag_added", "cc_added"} {
		if !actions[a] {
			t.Errorf("history lacks %s: %+v", a, hist)
		}
	}
	ns := h.take()
	if len(ns) != 1 || ns[0].Event != threading.EventTicketCreated || ns[0].Conversation == nil || ns[0].Channel != "support" {
		t.Fatalf("notices: %+v", ns)
	}

	// Outbound: the agent's message, mailed as an agent reply.
	tk, err = h.p.CreateTicket(h.ctx, ingest.NewTicket{RequesterEmail: "out@customer.example", Subject: "Your order",
		Description: ingest.APIMessage{Text: "It shipped."}, Source: 10, Outbound: true}, h.alice)
	if err != nil {
		t.Fatal(err)
	}
	if tk.FirstRespondedAt == nil || tk.Status != 3 || tk.Source != 10 {
		t.Fatalf("outbound ticket: %+v", tk)
	}
	ns = h.take()
	if len(ns) != 1 || ns[0].Event != threading.EventAgentReplied || ns[0].Agent.Email != "alice@acme.example" || ns[0].Conversation.Incoming {
		t.Fatalf("outbound notices: %+v", ns)
	}

	// A bad status rolls everything back.
	before := 0
	h.read(func(tx *store.Tx) error { l, _ := tx.ListTickets(store.TicketFilter{}); before = len(l); return nil })
	if _, err := h.p.CreateTicket(h.ctx, ingest.NewTicket{RequesterEmail: "x@customer.example", Status: 42}, h.alice); err == nil {
		t.Fatal("status 42 accepted")
	}
	h.read(func(tx *store.Tx) error {
		l, _ := tx.ListTickets(store.TicketFilter{})
		if len(l) != before {
			t.Errorf("failed create left a ticket")
		}
		if _, err := tx.ContactByEmail("x@customer.example"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("failed create left a contact: %v", err)
		}
		return nil
	})
	if _, err := h.p.CreateTicket(h.ctx, ingest.NewTicket{RequesterEmail: "x@customer.example", Channel: "nope"}, h.alice); err == nil {
		t.Fatal("unknown channel accepted")
	}
}

func TestAPIReplyThreadsToCustomerMail(t *testing.T) {
	h := newAPIHarness(t)
	raw := "From: Jane <jane@customer.example>\r\nTo: support@acme.example\r\nSubject: Help\r\nMessage-ID: <jane-1@customer.example>\r\n" +
		"Date: Mon, 2 Mar 2026 09:00:00 +0000\r\n\r\nPlease help.\r\n"
	res, err := h.p.Ingest(h.ctx, []ingest.Raw{{Data: []byte(raw), Source: ingest.SourcePipe}})
	if err != nil || res[0].TicketID == nil {
		t.Fatalf("ingest: %v %+v", err, res)
	}
	id := *res[0].TicketID
	h.take()
	tk, conv, err := h.p.Reply(h.ctx, id, ingest.APIMessage{HTML: "<p>Try <b>this</b>.</p>", Cc: []string{"Boss@Customer.example"},
		Files: []store.Attachment{{Filename: "../x.txt", ContentType: "text/plain", Content: []byte("hi")}}}, h.alice)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Status != 3 || tk.FirstRespondedAt == nil || tk.AgentRespondedAt == nil {
		t.Fatalf("ticket after reply: %+v", tk)
	}
	if conv.Incoming || conv.Private || conv.AgentID == nil || *conv.AgentID != h.alice.ID || conv.BodyText != "Try this." ||
		len(conv.Files) != 1 || conv.Files[0].Filename != "_x.txt" || conv.CcEmails[0] != "boss@customer.example" {
		t.Fatalf("reply: %+v", conv)
	}
	ns := h.take()
	if len(ns) != 1 || ns[0].Event != threading.EventAgentReplied || ns[0].InReplyTo != "jane-1@customer.example" || ns[0].Conversation.ID != conv.ID {
		t.Fatalf("notices: %+v", ns)
	}
	if _, _, err := h.p.Reply(h.ctx, 9999, ingest.APIMessage{Text: "x"}, h.alice); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("reply to a missing ticket: %v", err)
	}
}

func TestAPINotesEditDelete(t *testing.T) {
	h := newAPIHarness(t)
	tk, err := h.p.CreateTicket(h.ctx, ingest.NewTicket{RequesterEmail: "jane@customer.example", Subject: "Q", Description: ingest.APIMessage{Text: "q"}}, h.alice)
	if err != nil {
		t.Fatal(err)
	}
	h.take()
	note, err := h.p.AddNote(h.ctx, tk.ID, ingest.APIMessage{Text: "between us"}, true, false, []string{"BOB@acme.example"}, h.alice)
	if err != nil {
		t.Fatal(err)
	}
	if !note.Private || note.Kind != "note" {
		t.Fatalf("note %+v", note)
	}
	ns := h.take()
	// One notice for the ticket as it is (its responder is told by the
	// outbox), naming bob besides.
	if len(ns) != 1 || ns[0].Event != threading.EventNoteAdded || ns[0].Ticket.Responder != nil ||
		!slices.Equal(ns[0].NotifyAlso, []string{"bob@acme.example"}) || !slices.Equal(note.ToEmails, []string{"bob@acme.example"}) {
		t.Fatalf("notify notices: %+v", ns)
	}
	if _, err := h.p.AddNote(h.ctx, tk.ID, ingest.APIMessage{Text: "x"}, true, false, []string{"stranger@x.example"}, h.alice); !errors.Is(err, ingest.ErrNotAgent) {
		t.Fatalf("unknown notify address: %v", err)
	}
	edited, err := h.p.EditNote(h.ctx, note.ID, ingest.APIMessage{HTML: "<i>revised</i>"}, h.bob)
	if err != nil || edited.BodyText != "revised" {
		t.Fatalf("edit: %v %+v", err, edited)
	}
	var convs []store.Conversation
	h.read(func(tx *store.Tx) error { convs, _ = tx.Conversations(tk.ID); return nil })
	if _, err := h.p.EditNote(h.ctx, convs[0].ID, ingest.APIMessage{Text: "x"}, h.alice); !errors.Is(err, ingest.ErrNotNote) {
		t.Fatalf("edit of the customer's message: %v", err)
	}
	if err := h.p.DeleteConversation(h.ctx, note.ID, h.alice); err != nil {
		t.Fatal(err)
	}
	if err := h.p.DeleteConversation(h.ctx, note.ID, h.alice); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := h.p.SetDeleted(h.ctx, tk.ID, true, h.alice); err != nil {
		t.Fatal(err)
	}
	var hist []store.History
	h.read(func(tx *store.Tx) error {
		l, _ := tx.ListTickets(store.TicketFilter{})
		if len(l) != 0 {
			t.Errorf("trashed ticket listed")
		}
		hist, _ = tx.TicketHistory(tk.ID)
		return nil
	})
	actions := map[string]bool{}
	for _, x := range hist {
		actions[x.Action] = true
	}
	for _, a := range []string{"note_added", "note_edited", "conversation_deleted", "deleted"} {
		if !actions[a] {
			t.Errorf("history lacks %s", a)
		}
	}
	// Subject and status through UpdateFromAPI, with the closing event.
	s := "New subject"
	closed := 5
	tk2, err := h.p.UpdateFromAPI(h.ctx, tk.ID, threading.Changes{Status: &closed}, &s, h.alice)
	if err != nil || tk2.Subject != s || tk2.Status != 5 || tk2.ClosedAt == nil {
		t.Fatalf("update: %v %+v", err, tk2)
	}
	if ns := h.take(); len(ns) != 1 || ns[0].Event != threading.EventTicketClosed {
		t.Fatalf("update notices: %+v", ns)
	}
}
