package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNoteNotifiesAssignedAndNamed: a note's notify_emails tells the
// named agents in addition to the assigned agent (Freshdesk), the
// answer lists them as notified_to, and the notices reach the relay.
// Naming a customer is Freshdesk's 400 and stores nothing.
func TestNoteNotifiesAssignedAndNamed(t *testing.T) {
	h := newHarness(t, hopts{relay: true})
	id := h.mail("jane@customers.test", "support@acme.test", "Invoice wrong", "nn1@customers.test", "please fix")
	base := fmt.Sprintf("/api/v2/tickets/%d", id)
	aliceID := h.do(alice, "GET", "/api/v2/agents/me", nil).obj(t)["id"]
	want(t, h.do(root, "PUT", base, map[string]any{"responder_id": aliceID}), http.StatusOK)

	// root writes, names carol (another group's agent) and himself.
	r := h.do(root, "POST", base+"/notes", map[string]any{"body": "Carol, can you check the plan?",
		"notify_emails": []string{"Carol@Agents.test", root, carol}})
	want(t, r, http.StatusCreated)
	var note struct {
		ID         int64    `json:"id"`
		Private    bool     `json:"private"`
		NotifiedTo []string `json:"notified_to"`
	}
	r.json(t, &note)
	if !note.Private || !slices.Equal(note.NotifiedTo, []string{carol, root}) {
		t.Fatalf("note answer: %s", r.body)
	}
	isNotice := func(to string) func(sunk) bool {
		return func(m sunk) bool {
			return m.sentTo(to) && strings.Contains(string(m.data), "Carol, can you check the plan?")
		}
	}
	// The assigned agent is told as usual, the named agent besides.
	h.sink.waitFor(t, 10*time.Second, isNotice(alice))
	h.sink.waitFor(t, 10*time.Second, isNotice(carol))
	var notices []string
	for _, m := range h.outbox() {
		if m.Kind == "notification" && m.TicketID != nil && *m.TicketID == id && m.ConversationID != nil && *m.ConversationID == note.ID {
			notices = append(notices, strings.Join(m.RcptTo, ","))
		}
	}
	slices.Sort(notices)
	if !slices.Equal(notices, []string{alice, carol}) {
		t.Fatalf("notices to %v, want alice and carol once each (never the author)", notices)
	}

	// Without notify_emails the answer still carries notified_to: [].
	r = h.do(root, "POST", base+"/notes", map[string]any{"body": "plain note"})
	want(t, r, http.StatusCreated)
	if got := r.obj(t)["notified_to"]; got == nil || len(got.([]any)) != 0 {
		t.Fatalf("notified_to without notify_emails: %s", r.body)
	}
	h.sink.waitFor(t, 10*time.Second, func(m sunk) bool {
		return m.sentTo(alice) && strings.Contains(string(m.data), "plain note")
	})

	// A customer (or a stranger) is not an agent: 400, nothing stored.
	before := len(h.do(alice, "GET", base+"/conversations", nil).list(t))
	r = h.do(root, "POST", base+"/notes", map[string]any{"body": "x", "notify_emails": []string{carol, "jane@customers.test"}})
	wantFieldError(t, r, "notify_emails", "invalid_value")
	if !strings.Contains(string(r.body), "jane@customers.test") {
		t.Fatalf("the error does not name the address: %s", r.body)
	}
	wantFieldError(t, h.do(root, "POST", base+"/notes", map[string]any{"body": "x", "notify_emails": "carol@agents.test"}), "notify_emails", "datatype_mismatch")
	if after := len(h.do(alice, "GET", base+"/conversations", nil).list(t)); after != before {
		t.Fatalf("a refused note was stored: %d conversations, were %d", after, before)
	}
}
