package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/store"
)

// TestTicketActivities: a ticket's history comes through the API,
// oldest first, paginated, for agents who may see the ticket.
func TestTicketActivities(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.mail("jane@customers.test", "support@acme.test", "Printer on fire", "act1@customers.test", "It burns.")
	want(t, h.do(alice, "POST", fmt.Sprintf("/api/v2/tickets/%d/reply", id), map[string]any{"body": "<p>Use water.</p>"}), http.StatusCreated)
	want(t, h.do(alice, "PUT", fmt.Sprintf("/api/v2/tickets/%d", id), map[string]any{"status": 4}), http.StatusOK)

	r := h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d/activities", id), nil)
	want(t, r, http.StatusOK)
	list := r.list(t)
	if len(list) < 3 || list[0]["action"] != "created" {
		t.Fatalf("activities: %s", r.body)
	}
	var sawResolve bool
	for _, a := range list {
		for _, k := range []string{"id", "ticket_id", "created_at", "actor_type", "actor", "conversation_id", "action", "field", "old_value", "new_value", "note"} {
			if _, ok := a[k]; !ok {
				t.Errorf("activity without %s: %v", k, a)
			}
		}
		if a["field"] == "status" && a["new_value"] == "4" {
			sawResolve = true
		}
	}
	if !sawResolve {
		t.Errorf("no status change to 4 in %s", r.body)
	}
	r = h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d/activities?per_page=1&page=2", id), nil)
	want(t, r, http.StatusOK)
	if got := r.list(t); len(got) != 1 || got[0]["id"] != list[1]["id"] || !strings.Contains(r.hdr.Get("Link"), "page=3") {
		t.Errorf("page 2 of 1: %s (Link %q)", r.body, r.hdr.Get("Link"))
	}
	want(t, h.do(alice, "GET", "/api/v2/tickets/999999/activities", nil), http.StatusNotFound)
	want(t, h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d/activities?page=x", id), nil), http.StatusBadRequest)
}

// TestContactLanguageByAPI: an admin sets a contact's language with PUT
// /api/v2/contacts/{id}; the next confirmation to that contact is
// written in it. A value that is no language tag is a 400.
func TestContactLanguageByAPI(t *testing.T) {
	h := newHarness(t, hopts{})
	h.mail("jane@customers.test", "support@acme.test", "First", "lang1@customers.test", "Hello.")
	r := h.do(alice, "GET", "/api/v2/contacts?email=jane@customers.test", nil)
	want(t, r, http.StatusOK)
	id := int64(r.list(t)[0]["id"].(float64))
	wantFieldError(t, h.do(root, "PUT", fmt.Sprintf("/api/v2/contacts/%d", id), map[string]any{"language": "../de"}), "language", "invalid_value")
	r = h.do(root, "PUT", fmt.Sprintf("/api/v2/contacts/%d", id), map[string]any{"language": "DE"})
	want(t, r, http.StatusOK)
	if r.obj(t)["language"] != "de" {
		t.Fatalf("contact after PUT: %s", r.body)
	}
	h.mail("jane@customers.test", "support@acme.test", "Second", "lang2@customers.test", "Hello again.")
	var rows []store.OutboxMail
	if err := h.st.Read(h.ctx, func(tx *store.Tx) error {
		var err error
		rows, err = tx.ListOutbox(store.OutboxFilter{WithRaw: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var last string
	for _, m := range rows {
		if m.Kind == "confirmation" {
			last = string(m.Raw)
		}
	}
	if !strings.Contains(last, "Content-Language: de") {
		t.Errorf("confirmation after the contact's language became de:\n%.600s", last)
	}
}
