package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestContactCreateUpdate: POST /api/v2/contacts with Freshdesk's
// required fields and its 409 duplicate body; PUT sets phone, IANA time
// zone and tags; GET and GET ?email= show the same contact.
func TestContactCreateUpdate(t *testing.T) {
	h := newHarness(t, hopts{})
	r := h.do(alice, "POST", "/api/v2/contacts", map[string]any{"name": "Ana Lima", "email": "Ana@Customers.test",
		"phone": "+33 1 23 45 67 89", "time_zone": "Europe/Paris", "tags": []string{"vip", "beta", "vip"}, "language": "pt-BR"})
	want(t, r, http.StatusCreated)
	c := r.obj(t)
	id := int64(c["id"].(float64))
	if c["email"] != "ana@customers.test" || c["name"] != "Ana Lima" || c["phone"] != "+33 1 23 45 67 89" || c["time_zone"] != "Europe/Paris" ||
		c["language"] != "pt-br" || fmt.Sprint(c["tags"]) != "[vip beta]" || c["deleted"] != false || c["mobile"] != nil {
		t.Fatalf("created contact: %s", r.body)
	}
	if loc := r.hdr.Get("Location"); !strings.HasSuffix(loc, fmt.Sprintf("/api/v2/contacts/%d", id)) {
		t.Fatalf("Location %q", loc)
	}

	// Freshdesk's duplicate: 409, duplicate_value, the existing id.
	r = h.do(alice, "POST", "/api/v2/contacts", map[string]any{"name": "Other", "email": "ANA@customers.test"})
	want(t, r, http.StatusConflict)
	var dup struct {
		Description string `json:"description"`
		Errors      []struct {
			Field, Message, Code string
			AdditionalInfo       map[string]any `json:"additional_info"`
		}
	}
	r.json(t, &dup)
	if dup.Description != "Validation failed" || len(dup.Errors) != 1 || dup.Errors[0].Field != "email" || dup.Errors[0].Code != "duplicate_value" ||
		dup.Errors[0].AdditionalInfo["user_id"] != float64(id) {
		t.Fatalf("duplicate: %s", r.body)
	}
	want(t, h.do(alice, "POST", "/api/v2/contacts", map[string]any{"name": "Me", "email": carol}), http.StatusConflict)
	// Required fields and bad values.
	wantFieldError(t, h.do(alice, "POST", "/api/v2/contacts", map[string]any{"email": "x@customers.test"}), "name", "missing_field")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/contacts", map[string]any{"name": "X"}), "email", "missing_field")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/contacts", map[string]any{"name": "X", "email": "not an address"}), "email", "invalid_value")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/contacts", map[string]any{"name": "X", "email": "x@customers.test", "mobile": "1"}), "mobile", "invalid_field")

	path := fmt.Sprintf("/api/v2/contacts/%d", id)
	for _, tz := range []string{"Mars/Olympus", "Eastern Time (US & Canada)", "../../etc/passwd", "Local", "/usr/share/zoneinfo/UTC"} {
		wantFieldError(t, h.do(root, "PUT", path, map[string]any{"time_zone": tz}), "time_zone", "invalid_value")
	}
	wantFieldError(t, h.do(root, "PUT", path, map[string]any{"tags": "vip"}), "tags", "datatype_mismatch")
	wantFieldError(t, h.do(root, "PUT", path, map[string]any{"tags": []string{"a,b"}}), "tags", "invalid_value")
	want(t, h.do(alice, "PUT", path, map[string]any{"phone": "1"}), http.StatusForbidden)
	r = h.do(root, "PUT", path, map[string]any{"phone": "+1 555 0100", "time_zone": "America/New_York", "tags": []string{"churn-risk"}})
	want(t, r, http.StatusOK)
	if c := r.obj(t); c["phone"] != "+1 555 0100" || c["time_zone"] != "America/New_York" || fmt.Sprint(c["tags"]) != "[churn-risk]" || c["name"] != "Ana Lima" {
		t.Fatalf("updated: %s", r.body)
	}
	r = h.do(root, "PUT", path, `{"phone": null, "time_zone": "", "tags": []}`)
	want(t, r, http.StatusOK)
	if c := r.obj(t); c["phone"] != nil || c["time_zone"] != nil || len(c["tags"].([]any)) != 0 {
		t.Fatalf("cleared: %s", r.body)
	}
	want(t, h.do(root, "PUT", path, map[string]any{"time_zone": "UTC"}), http.StatusOK)

	// GET and the email filter show the same contact.
	one := h.do(alice, "GET", path, nil)
	want(t, one, http.StatusOK)
	list := h.do(alice, "GET", "/api/v2/contacts?email=ana%40customers.test", nil).list(t)
	if len(list) != 1 || list[0]["time_zone"] != "UTC" || list[0]["id"] != one.obj(t)["id"] {
		t.Fatalf("email filter: %v, view %s", list, one.body)
	}
	if l := h.do(alice, "GET", "/api/v2/contacts?email=nobody%40customers.test", nil).list(t); len(l) != 0 {
		t.Fatalf("unknown email: %v", l)
	}
	wantFieldError(t, h.do(alice, "GET", "/api/v2/contacts?state=gone", nil), "state", "invalid_value")
}

// TestContactSoftDelete: DELETE hides a contact from lists (state=deleted
// lists it), GET shows deleted: true, PUT is refused until restored; a
// new mail from the deleted contact is stored as a ticket in the trash
// and mails nobody; after PUT …/restore the contact is back and its mail
// opens tickets as usual.
func TestContactSoftDelete(t *testing.T) {
	h := newHarness(t, hopts{relay: true})
	first := h.mail("mallory@customers.test", "support@acme.test", "Hello", "sd1@customers.test", "first")
	h.mail("other@customers.test", "support@acme.test", "Hi", "sd2@customers.test", "other")
	c := h.do(alice, "GET", "/api/v2/contacts?email=mallory@customers.test", nil).list(t)[0]
	path := fmt.Sprintf("/api/v2/contacts/%d", int64(c["id"].(float64)))

	want(t, h.do(alice, "DELETE", path, nil), http.StatusForbidden)
	want(t, h.do(root, "DELETE", path, nil), http.StatusNoContent)
	want(t, h.do(root, "DELETE", path, nil), http.StatusNotFound)
	want(t, h.do(root, "DELETE", "/api/v2/contacts/9999", nil), http.StatusNotFound)
	r := h.do(alice, "GET", path, nil)
	want(t, r, http.StatusOK)
	if r.obj(t)["deleted"] != true {
		t.Fatalf("view of a deleted contact: %s", r.body)
	}
	emails := func(q string) []string {
		var out []string
		for _, c := range h.do(alice, "GET", "/api/v2/contacts"+q, nil).list(t) {
			out = append(out, c["email"].(string))
		}
		return out
	}
	if got := emails(""); slices.Contains(got, "mallory@customers.test") || !slices.Contains(got, "other@customers.test") {
		t.Fatalf("list after delete: %v", got)
	}
	if got := emails("?email=mallory@customers.test"); len(got) != 0 {
		t.Fatalf("email filter finds a deleted contact: %v", got)
	}
	if got := emails("?state=deleted"); !slices.Equal(got, []string{"mallory@customers.test"}) {
		t.Fatalf("state=deleted: %v", got)
	}
	search := "/api/v2/search/contacts?query=" + url.QueryEscape(`"email:'mallory@customers.test'"`)
	if r := h.do(alice, "GET", search, nil).obj(t); r["total"] != 0.0 {
		t.Fatalf("search finds a deleted contact: %v", r)
	}
	want(t, h.do(root, "PUT", path, map[string]any{"name": "M"}), http.StatusConflict)
	// Creating the address again is a duplicate of the deleted contact.
	want(t, h.do(alice, "POST", "/api/v2/contacts", map[string]any{"name": "M", "email": "mallory@customers.test"}), http.StatusConflict)
	// The old ticket stays where it was.
	want(t, h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d", first), nil), http.StatusOK)

	// New mail from the deleted contact: kept, in the trash, nobody mailed.
	before := len(h.outbox())
	trashed := h.mail("mallory@customers.test", "support@acme.test", "Buy now", "sd3@customers.test", "spam?")
	tk := h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d", trashed), nil).obj(t)
	if tk["deleted"] != true {
		t.Fatalf("ticket from a deleted contact: %v", tk)
	}
	if n := len(h.outbox()); n != before {
		t.Fatalf("mail from a deleted contact queued %d mails", n-before)
	}
	for _, l := range h.do(alice, "GET", "/api/v2/tickets", nil).list(t) {
		if int64(l["id"].(float64)) == trashed {
			t.Fatal("the trashed ticket is listed")
		}
	}
	var said bool
	for _, e := range h.history(trashed) {
		said = said || strings.Contains(e.Note, "deleted contact")
	}
	if !said {
		t.Fatalf("history does not say why: %+v", h.history(trashed))
	}

	// A reply to a ticket it already has threads as usual.
	if got := h.mail("mallory@customers.test", "support@acme.test", "Re: Hello", "sd5@customers.test", "still there?", "sd1@customers.test"); got != first {
		t.Fatalf("reply of a deleted contact went to ticket %d, want %d", got, first)
	}
	if h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d", first), nil).obj(t)["deleted"] != false {
		t.Fatal("a reply of a deleted contact trashed its ticket")
	}

	// Restore: listed again, and its next mail is a normal ticket with
	// a confirmation.
	want(t, h.do(alice, "PUT", path+"/restore", nil), http.StatusForbidden)
	want(t, h.do(root, "PUT", path+"/restore", nil), http.StatusNoContent)
	want(t, h.do(root, "PUT", path+"/restore", nil), http.StatusNotFound)
	if got := emails("?email=mallory@customers.test"); len(got) != 1 {
		t.Fatalf("restored contact not listed: %v", got)
	}
	if r := h.do(alice, "GET", search, nil).obj(t); r["total"] != 1.0 {
		t.Fatalf("search does not find the restored contact: %v", r)
	}
	back := h.mail("mallory@customers.test", "support@acme.test", "Real question", "sd4@customers.test", "sorry")
	if h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d", back), nil).obj(t)["deleted"] != false {
		t.Fatal("ticket after restore is trashed")
	}
	h.sink.waitFor(t, 10*time.Second, func(m sunk) bool {
		return m.sentTo("mallory@customers.test") && strings.Contains(string(m.data), "Real question")
	})
}
