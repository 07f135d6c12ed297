package api_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// ids returns the ticket ids of a list response, in order.
func ids(t *testing.T, r resp) []int64 {
	t.Helper()
	want(t, r, http.StatusOK)
	var out []int64
	for _, tk := range r.list(t) {
		out = append(out, int64(tk["id"].(float64)))
	}
	return out
}

func sameIDs(t *testing.T, what string, got []int64, want ...int64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("%s: %v, want %v", what, got, want)
	}
}

// TestListPredefinedFilters: filter=new_and_my_open is the caller's
// open tickets and the unassigned open ones; deleted is the trash;
// watching and spam are empty (deskmail has no watchers and marks no
// spam), as is company_id (no companies); bad values get Freshdesk's
// 400 body.
func TestListPredefinedFilters(t *testing.T) {
	h := newHarness(t, hopts{})
	mine := h.mail("a@customers.test", "support@acme.test", "Mine", "f1@customers.test", "one")
	roots := h.mail("b@customers.test", "support@acme.test", "Root's", "f2@customers.test", "two")
	pending := h.mail("c@customers.test", "support@acme.test", "Pending", "f3@customers.test", "three")
	free := h.mail("d@customers.test", "support@acme.test", "Unassigned", "f4@customers.test", "four")
	gone := h.mail("e@customers.test", "support@acme.test", "Trash", "f5@customers.test", "five")
	agentID := func(who string) int64 {
		return int64(h.do(who, "GET", "/api/v2/agents/me", nil).obj(t)["id"].(float64))
	}
	put := func(id int64, body map[string]any) {
		t.Helper()
		want(t, h.do(alice, "PUT", fmt.Sprintf("/api/v2/tickets/%d", id), body), http.StatusOK)
	}
	put(mine, map[string]any{"responder_id": agentID(alice)})
	put(roots, map[string]any{"responder_id": agentID(root)})
	put(pending, map[string]any{"status": 3})
	want(t, h.do(root, "DELETE", fmt.Sprintf("/api/v2/tickets/%d", gone), nil), http.StatusNoContent)

	sameIDs(t, "alice new_and_my_open", ids(t, h.do(alice, "GET", "/api/v2/tickets?filter=new_and_my_open", nil)), free, mine)
	sameIDs(t, "root new_and_my_open", ids(t, h.do(root, "GET", "/api/v2/tickets?filter=new_and_my_open", nil)), free, roots)
	sameIDs(t, "new_and_my_open asc", ids(t, h.do(alice, "GET", "/api/v2/tickets?filter=new_and_my_open&order_type=asc", nil)), mine, free)
	sameIDs(t, "deleted", ids(t, h.do(alice, "GET", "/api/v2/tickets?filter=deleted", nil)), gone)
	sameIDs(t, "default", ids(t, h.do(alice, "GET", "/api/v2/tickets", nil)), free, pending, roots, mine)
	for _, q := range []string{"filter=watching", "filter=spam", "company_id=7", "filter=new_and_my_open&company_id=1"} {
		sameIDs(t, q, ids(t, h.do(alice, "GET", "/api/v2/tickets?"+q, nil)))
	}
	sameIDs(t, "order_by=status asc", ids(t, h.do(alice, "GET", "/api/v2/tickets?order_by=status&order_type=asc", nil)), mine, roots, free, pending)
	sameIDs(t, "order_by=due_by (none set: by id)", ids(t, h.do(alice, "GET", "/api/v2/tickets?order_by=due_by", nil)), free, pending, roots, mine)
	sameIDs(t, "order_by=updated_at", ids(t, h.do(alice, "GET", "/api/v2/tickets?order_by=updated_at&per_page=1", nil)), pending)

	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?filter=mine", nil), "filter", "invalid_value")
	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?company_id=acme", nil), "company_id", "datatype_mismatch")
	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?requester_id=-1", nil), "requester_id", "datatype_mismatch")
	r := h.do(alice, "GET", "/api/v2/tickets?order_type=sideways", nil)
	want(t, r, http.StatusBadRequest)
	if got := string(r.body); got != `{"description":"Validation failed","errors":[{"field":"order_type","message":"It should be one of these values: 'asc,desc'","code":"invalid_value"}]}`+"\n" {
		t.Errorf("body %s", got)
	}
}

// TestListDefaultWindow: like Freshdesk, the list shows only tickets
// created in the past 30 days unless updated_since is given.
func TestListDefaultWindow(t *testing.T) {
	later := func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }
	h := newHarness(t, hopts{now: later})
	id := h.mail("a@customers.test", "support@acme.test", "Old", "w1@customers.test", "old")
	sameIDs(t, "31 days later", ids(t, h.do(alice, "GET", "/api/v2/tickets", nil)))
	sameIDs(t, "with updated_since", ids(t, h.do(alice, "GET", "/api/v2/tickets?updated_since=2000-01-01T00:00:00Z", nil)), id)
}
