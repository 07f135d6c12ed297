package api_test

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deskmail/deskmail/store"
)

const (
	alice = "alice@agents.test"
	root  = "root@agents.test"
	carol = "carol@agents.test"
)

func TestAuthFailuresAndSchemes(t *testing.T) {
	h := newHarness(t, hopts{})
	const body401 = `{"code":"invalid_credentials","message":"You have to be logged in to perform this action."}`
	for name, auth := range map[string]string{
		"none":          "",
		"wrong basic":   basic("not-a-key"),
		"wrong bearer":  "Bearer not-a-key",
		"broken basic":  "Basic !!!",
		"empty bearer":  "Bearer ",
		"other scheme":  "Digest abc",
		"password only": "Basic " + "Olg=", // ":X"
	} {
		req, _ := http.NewRequest("GET", h.url+"/api/v2/tickets", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		r := h.send(req)
		if r.code != http.StatusUnauthorized || strings.TrimSpace(string(r.body)) != body401 {
			t.Errorf("%s: %d %s", name, r.code, r.body)
		}
		if ct := r.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: content type %q", name, ct)
		}
	}
	for name, auth := range map[string]string{
		"basic":  basic(h.keys[alice]),
		"bearer": "Bearer " + h.keys[alice],
	} {
		req, _ := http.NewRequest("GET", h.url+"/api/v2/agents/me", nil)
		req.Header.Set("Authorization", auth)
		r := h.send(req)
		want(t, r, http.StatusOK)
		if got := r.obj(t)["contact"].(map[string]any)["email"]; got != alice {
			t.Errorf("%s: me = %v", name, got)
		}
	}
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, hopts{rateLimit: 3})
	for i := 0; i < 3; i++ {
		r := h.do(alice, "GET", "/api/v2/tickets", nil)
		want(t, r, http.StatusOK)
		if r.hdr.Get("X-RateLimit-Total") != "3" || r.hdr.Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) ||
			r.hdr.Get("X-RateLimit-Used-CurrentRequest") != "1" {
			t.Fatalf("request %d headers: %v", i, r.hdr)
		}
	}
	r := h.do(alice, "GET", "/api/v2/tickets", nil)
	want(t, r, http.StatusTooManyRequests)
	if n, err := strconv.Atoi(r.hdr.Get("Retry-After")); err != nil || n < 1 || n > 60 {
		t.Fatalf("Retry-After %q", r.hdr.Get("Retry-After"))
	}
	if r.hdr.Get("X-RateLimit-Remaining") != "0" || r.obj(t)["code"] != "rate_limit_exceeded" {
		t.Fatalf("429: %v %s", r.hdr, r.body)
	}
	// Another key has its own budget.
	want(t, h.do(root, "GET", "/api/v2/tickets", nil), http.StatusOK)
}

func TestRoutingErrors(t *testing.T) {
	h := newHarness(t, hopts{})
	r := h.do(alice, "PATCH", "/api/v2/tickets", "{}")
	want(t, r, http.StatusMethodNotAllowed)
	if r.hdr.Get("Allow") != "GET, POST" || r.obj(t)["code"] != "method_not_allowed" {
		t.Fatalf("405: %v %s", r.hdr, r.body)
	}
	r = h.do(alice, "GET", "/api/v2/nothing", nil)
	want(t, r, http.StatusNotFound)
	if r.obj(t)["code"] != "not_found" {
		t.Fatalf("404 body %s", r.body)
	}
	want(t, h.do(alice, "GET", "/api/v2/tickets/abc", nil), http.StatusNotFound)
	want(t, h.do(alice, "GET", "/api/v2/tickets/999", nil), http.StatusNotFound)
	want(t, h.do(alice, "GET", "/api/v2/contacts/999", nil), http.StatusNotFound)
	want(t, h.do(alice, "GET", "/api/v2/attachments/999", nil), http.StatusNotFound)
}

func TestListPaginationAndFilters(t *testing.T) {
	h := newHarness(t, hopts{})
	var ids []int64
	for i := 0; i < 5; i++ {
		ids = append(ids, h.mail(fmt.Sprintf("c%d@customers.test", i%2), "support@acme.test", fmt.Sprintf("Problem %d", i), fmt.Sprintf("m%d@customers.test", i), "help"))
	}
	sales := h.mail("c9@customers.test", "sales@acme.test", "Quote", "sales1@customers.test", "a quote please")

	r := h.do(alice, "GET", "/api/v2/tickets?per_page=2", nil)
	want(t, r, http.StatusOK)
	got := r.list(t)
	if len(got) != 2 || int64(got[0]["id"].(float64)) != sales {
		t.Fatalf("page 1 (newest first): %s", r.body)
	}
	link := r.hdr.Get("Link")
	if !strings.Contains(link, "page=2") || !strings.Contains(link, "per_page=2") || !strings.HasSuffix(link, `>; rel="next"`) || !strings.HasPrefix(link, "<"+h.url+"/api/v2/tickets?") {
		t.Fatalf("Link %q", link)
	}
	for _, k := range []string{"description", "stats", "requester"} {
		if _, ok := got[0][k]; ok {
			t.Errorf("list has %s without include", k)
		}
	}
	r = h.do(alice, "GET", "/api/v2/tickets?per_page=2&page=3", nil)
	if n := len(r.list(t)); n != 2 || r.hdr.Get("Link") != "" {
		t.Fatalf("last page: %d tickets, Link %q", n, r.hdr.Get("Link"))
	}
	r = h.do(alice, "GET", "/api/v2/tickets?per_page=100&page=2", nil)
	if n := len(r.list(t)); n != 0 {
		t.Fatalf("past the end: %d", n)
	}

	// Filters.
	count := func(q string) int {
		t.Helper()
		r := h.do(alice, "GET", "/api/v2/tickets?"+q, nil)
		want(t, r, http.StatusOK)
		return len(r.list(t))
	}
	if n := count("email=c1@customers.test"); n != 2 {
		t.Errorf("email filter: %d", n)
	}
	if n := count("channel=sales"); n != 1 {
		t.Errorf("channel filter: %d", n)
	}
	want(t, h.do(alice, "PUT", fmt.Sprintf("/api/v2/tickets/%d", ids[0]), map[string]any{"status": 4, "priority": 3}), http.StatusOK)
	if n := count("status=4"); n != 1 {
		t.Errorf("status filter: %d", n)
	}
	if n := count("status=2,4"); n != 6 {
		t.Errorf("status list filter: %d", n)
	}
	if n := count("priority=3"); n != 1 {
		t.Errorf("priority filter: %d", n)
	}
	if n := count("updated_since=2999-01-01T00:00:00Z"); n != 0 {
		t.Errorf("updated_since future: %d", n)
	}
	if n := count("updated_since=2000-01-01"); n != 6 {
		t.Errorf("updated_since past: %d", n)
	}
	r = h.do(alice, "GET", "/api/v2/tickets?order_by=created_at&order_type=asc&include=stats,requester,description", nil)
	got = r.list(t)
	if int64(got[0]["id"].(float64)) != ids[0] || got[0]["stats"] == nil || got[0]["requester"] == nil || got[0]["description_text"] != "help" {
		t.Fatalf("asc with includes: %s", r.body)
	}
	var contactID float64
	contactID = got[1]["requester_id"].(float64)
	if n := count(fmt.Sprintf("requester_id=%d", int64(contactID))); n != 2 {
		t.Errorf("requester_id filter: %d", n)
	}

	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?per_page=101", nil), "per_page", "invalid_value")
	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?page=0", nil), "page", "invalid_value")
	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?order_by=subject", nil), "order_by", "invalid_value")
	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?order_type=up", nil), "order_type", "invalid_value")
	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?status=42", nil), "status", "invalid_value")
	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?updated_since=yesterday", nil), "updated_since", "invalid_value")
	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?colour=red", nil), "colour", "invalid_field")
	wantFieldError(t, h.do(alice, "GET", "/api/v2/tickets?include=company", nil), "include", "invalid_value")
}

func TestViewWithIncludes(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.mail("jane@customers.test", "support@acme.test", "Printer on fire", "p1@customers.test", "It burns.")
	want(t, h.do(alice, "POST", fmt.Sprintf("/api/v2/tickets/%d/reply", id), map[string]any{"body": "<p>Use water.</p>"}), http.StatusCreated)

	r := h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d", id), nil)
	want(t, r, http.StatusOK)
	tk := r.obj(t)
	for _, k := range []string{"due_by", "fr_due_by", "group_id", "responder_id", "type", "company_id", "email_config_id"} {
		if _, ok := tk[k]; !ok {
			t.Errorf("missing key %s", k)
		}
	}
	if tk["subject"] != "Printer on fire" || tk["description_text"] != "It burns." || tk["status"].(float64) != 3 || tk["source"].(float64) != 1 {
		t.Fatalf("view: %s", r.body)
	}
	if tk["cc_emails"] == nil || tk["tags"] == nil || tk["is_escalated"] != false {
		t.Fatalf("lists must be [] and flags false: %s", r.body)
	}
	if _, ok := tk["conversations"]; ok {
		t.Fatal("conversations without include")
	}

	r = h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d?include=conversations,requester,stats", id), nil)
	want(t, r, http.StatusOK)
	tk = r.obj(t)
	convs := tk["conversations"].([]any)
	if len(convs) != 1 || convs[0].(map[string]any)["body_text"] != "Use water." || convs[0].(map[string]any)["incoming"] != false {
		t.Fatalf("conversations: %v", convs)
	}
	req := tk["requester"].(map[string]any)
	if req["email"] != "jane@customers.test" {
		t.Fatalf("requester %v", req)
	}
	stats := tk["stats"].(map[string]any)
	for _, k := range []string{"first_responded_at", "agent_responded_at", "requester_responded_at", "status_updated_at", "resolved_at", "closed_at", "pending_since"} {
		if _, ok := stats[k]; !ok {
			t.Errorf("stats lacks %s", k)
		}
	}
	if stats["first_responded_at"] == nil || stats["agent_responded_at"] == nil || stats["resolved_at"] != nil || stats["pending_since"] == nil {
		t.Fatalf("stats: %v", stats)
	}
	if _, err := time.Parse(time.RFC3339, stats["first_responded_at"].(string)); err != nil {
		t.Fatal(err)
	}
	wantFieldError(t, h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d?include=everything", id), nil), "include", "invalid_value")
}

func TestCreateTicket(t *testing.T) {
	h := newHarness(t, hopts{})
	r := h.do(alice, "POST", "/api/v2/tickets", map[string]any{
		"email": "new@customers.test", "name": "New Customer", "subject": "Phone call", "description": "<p>Called about <b>billing</b></p>",
		"status": 2, "priority": 2, "tags": []string{"phone", "vip"}, "cc_emails": []string{"boss@customers.test"},
		"type": "Question", "group_id": 1, "custom_fields": map[string]any{},
	})
	want(t, r, http.StatusCreated)
	tk := r.obj(t)
	id := int64(tk["id"].(float64))
	if r.hdr.Get("Location") != fmt.Sprintf("%s/api/v2/tickets/%d", h.url, id) {
		t.Fatalf("Location %q", r.hdr.Get("Location"))
	}
	if tk["source"].(float64) != 2 || tk["priority"].(float64) != 2 || tk["type"] != "Question" || tk["group_name"] != "billing" ||
		tk["description_text"] != "Called about billing" || len(tk["tags"].([]any)) != 2 || len(tk["cc_emails"].([]any)) != 1 {
		t.Fatalf("created: %s", r.body)
	}
	var created bool
	for _, hi := range h.history(id) {
		if hi.Action == "created" && hi.ActorType == "api" && hi.Actor == alice {
			created = true
		}
	}
	if !created {
		t.Fatalf("history: %+v", h.history(id))
	}
	kinds := map[string]int{}
	for _, m := range h.outbox() {
		kinds[m.Kind]++
	}
	if kinds["confirmation"] != 1 {
		t.Fatalf("outbox: %v", kinds)
	}

	// Source 10: the description is the agent's mail to the customer.
	r = h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "out@customers.test", "subject": "Your order", "description": "It shipped.", "source": 10})
	want(t, r, http.StatusCreated)
	oid := int64(r.obj(t)["id"].(float64))
	var found bool
	for _, m := range h.outbox() {
		if m.TicketID != nil && *m.TicketID == oid && m.Kind == "agent_reply" && m.RcptTo[0] == "out@customers.test" {
			found = true
		}
	}
	if !found {
		t.Fatalf("outbound ticket not mailed: %+v", h.outbox())
	}

	// Multipart with an attachment.
	body, ct := multipartBody(t, [][2]string{{"email", "mp@customers.test"}, {"subject", "Scan"}, {"description", "see file"}, {"status", "2"}, {"tags[]", "scan"}},
		map[string][]byte{"scan.pdf": []byte("%PDF-1.4 fake")})
	req, _ := http.NewRequest("POST", h.url+"/api/v2/tickets", body)
	req.Header.Set("Content-Type", ct)
	req.SetBasicAuth(h.keys[alice], "X")
	r = h.send(req)
	want(t, r, http.StatusCreated)
	atts := r.obj(t)["attachments"].([]any)
	if len(atts) != 1 || atts[0].(map[string]any)["name"] != "scan.pdf" {
		t.Fatalf("attachments: %s", r.body)
	}

	// Errors.
	wantFieldError(t, h.do(alice, "POST", "/api/v2/tickets", map[string]any{"subject": "x"}), "requester_id", "missing_field")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "a@b.test", "status": 9}), "status", "invalid_value")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "a@b.test", "channel": "sales", "status": 6}), "status", "invalid_value")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "a@b.test", "priority": 5}), "priority", "invalid_value")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "a@b.test", "priority": "high"}), "priority", "datatype_mismatch")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "not an address"}), "email", "invalid_value")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "a@b.test", "color": "red"}), "color", "invalid_field")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "a@b.test", "responder_id": 999}), "responder_id", "invalid_value")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "a@b.test", "source": 10}), "description", "missing_field")
	wantFieldError(t, h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "a@b.test", "custom_fields": map[string]any{"x": 1}}), "custom_fields", "invalid_value")
	r = h.do(alice, "POST", "/api/v2/tickets", `{"email": "a@b.test",`)
	want(t, r, http.StatusBadRequest)
	if r.obj(t)["code"] != "invalid_json" {
		t.Fatalf("bad json: %s", r.body)
	}
	want(t, h.do(alice, "POST", "/api/v2/tickets", `[1,2]`), http.StatusBadRequest)
	req, _ = http.NewRequest("POST", h.url+"/api/v2/tickets", strings.NewReader("email=a@b.test"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(h.keys[alice], "X")
	r = h.send(req)
	want(t, r, http.StatusUnsupportedMediaType)
	if r.obj(t)["code"] != "invalid_content_type" {
		t.Fatalf("415: %s", r.body)
	}
	huge := `{"email":"a@b.test","description":"` + strings.Repeat("x", 6<<20) + `"}`
	want(t, h.do(alice, "POST", "/api/v2/tickets", huge), http.StatusRequestEntityTooLarge)
}

func TestUpdateTicketLifecycle(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.mail("jane@customers.test", "support@acme.test", "Broken", "u1@customers.test", "broken")
	path := fmt.Sprintf("/api/v2/tickets/%d", id)
	r := h.do(alice, "PUT", path, map[string]any{"status": 4, "priority": 4, "tags": []string{"a", "b"}, "type": "Incident", "responder_id": 1})
	want(t, r, http.StatusOK)
	tk := r.obj(t)
	if tk["status"].(float64) != 4 || tk["status_category"] != "resolved" || tk["priority"].(float64) != 4 || tk["responder_id"].(float64) != 1 {
		t.Fatalf("update: %s", r.body)
	}
	r = h.do(alice, "GET", path+"?include=stats", nil)
	if r.obj(t)["stats"].(map[string]any)["resolved_at"] == nil {
		t.Fatalf("resolved_at: %s", r.body)
	}
	// Tags replace the list.
	r = h.do(alice, "PUT", path, map[string]any{"tags": []string{"b", "c"}, "status": 6})
	want(t, r, http.StatusOK)
	tk = r.obj(t)
	if fmt.Sprint(tk["tags"]) != "[b c]" || tk["status"].(float64) != 6 || tk["status_name"] != "Waiting on engineering" {
		t.Fatalf("tags/custom status: %s", r.body)
	}
	var statusChanges, tagRemoved int
	for _, hi := range h.history(id) {
		if hi.Action == "status_changed" && hi.ActorType == "api" {
			statusChanges++
		}
		if hi.Action == "tag_removed" {
			tagRemoved++
		}
	}
	if statusChanges != 2 || tagRemoved != 1 {
		t.Fatalf("history: %+v", h.history(id))
	}
	// Null clears.
	r = h.do(alice, "PUT", path, `{"type": null, "responder_id": null}`)
	want(t, r, http.StatusOK)
	if tk = r.obj(t); tk["type"] != nil || tk["responder_id"] != nil {
		t.Fatalf("clear: %s", r.body)
	}
	wantFieldError(t, h.do(alice, "PUT", path, map[string]any{"status": 1}), "status", "invalid_value")
	wantFieldError(t, h.do(alice, "PUT", path, map[string]any{"status": "4"}), "status", "datatype_mismatch")
	wantFieldError(t, h.do(alice, "PUT", path, map[string]any{"description": "x"}), "description", "invalid_field")
	wantFieldError(t, h.do(alice, "PUT", path, map[string]any{"group_id": 99}), "group_id", "invalid_value")
	want(t, h.do(alice, "PUT", "/api/v2/tickets/9999", map[string]any{"status": 4}), http.StatusNotFound)
}

func TestDeleteRolesAndRestore(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.mail("jane@customers.test", "support@acme.test", "Spam?", "d1@customers.test", "buy now")
	path := fmt.Sprintf("/api/v2/tickets/%d", id)
	r := h.do(alice, "DELETE", path, nil)
	want(t, r, http.StatusForbidden)
	if strings.TrimSpace(string(r.body)) != `{"code":"access_denied","message":"You are not authorized to perform this action."}` {
		t.Fatalf("403 body %s", r.body)
	}
	want(t, h.do(root, "DELETE", path, nil), http.StatusNoContent)
	if n := len(h.do(alice, "GET", "/api/v2/tickets", nil).list(t)); n != 0 {
		t.Fatalf("deleted ticket listed")
	}
	if h.do(alice, "GET", path, nil).obj(t)["deleted"] != true {
		t.Fatal("view of a deleted ticket")
	}
	want(t, h.do(alice, "POST", path+"/reply", map[string]any{"body": "hi"}), http.StatusConflict)
	want(t, h.do(alice, "PUT", path+"/restore", nil), http.StatusForbidden)
	want(t, h.do(root, "PUT", path+"/restore", nil), http.StatusNoContent)
	if n := len(h.do(alice, "GET", "/api/v2/tickets", nil).list(t)); n != 1 {
		t.Fatalf("restored ticket not listed")
	}
	want(t, h.do(root, "DELETE", "/api/v2/tickets/9999", nil), http.StatusNotFound)
}

func TestNotesAndConversations(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.mail("jane@customers.test", "support@acme.test", "Question", "n1@customers.test", "how?")
	base := fmt.Sprintf("/api/v2/tickets/%d", id)
	r := h.do(alice, "POST", base+"/notes", map[string]any{"body": "<p>internal <script>x</script>thought</p>"})
	want(t, r, http.StatusCreated)
	note := r.obj(t)
	if note["private"] != true || note["source"].(float64) != 2 || strings.Contains(note["body"].(string), "script") || note["body_text"] != "internal thought" {
		t.Fatalf("note: %s", r.body)
	}
	noteID := int64(note["id"].(float64))
	r = h.do(alice, "POST", base+"/notes", map[string]any{"body": "public", "private": false, "notify_emails": []string{root}})
	want(t, r, http.StatusCreated)
	var notified bool
	for _, m := range h.outbox() {
		if m.Kind == "notification" && len(m.RcptTo) == 1 && m.RcptTo[0] == root {
			notified = true
		}
	}
	if !notified {
		t.Fatalf("notify_emails: %+v", h.outbox())
	}
	wantFieldError(t, h.do(alice, "POST", base+"/notes", map[string]any{"body": "x", "notify_emails": []string{"stranger@x.test"}}), "notify_emails", "invalid_value")
	wantFieldError(t, h.do(alice, "POST", base+"/notes", map[string]any{"private": true}), "body", "missing_field")
	wantFieldError(t, h.do(alice, "POST", base+"/notes", map[string]any{"body": "x", "private": "yes"}), "private", "datatype_mismatch")

	r = h.do(alice, "GET", base+"/conversations", nil)
	want(t, r, http.StatusOK)
	convs := r.list(t)
	if len(convs) != 2 || convs[0]["private"] != true || convs[1]["private"] != false {
		t.Fatalf("conversations: %s", r.body)
	}
	r = h.do(alice, "GET", base+"/conversations?per_page=1", nil)
	if len(r.list(t)) != 1 || !strings.Contains(r.hdr.Get("Link"), "page=2") {
		t.Fatalf("conversation paging: %v %s", r.hdr, r.body)
	}

	// Edit the note; a customer's mail cannot be edited.
	r = h.do(alice, "PUT", fmt.Sprintf("/api/v2/conversations/%d", noteID), map[string]any{"body": "revised"})
	want(t, r, http.StatusOK)
	if c := r.obj(t); c["body_text"] != "revised" {
		t.Fatalf("edit: %s", r.body)
	}
	var convs2 []store.Conversation
	h.st.Read(h.ctx, func(tx *store.Tx) error {
		var err error
		convs2, err = tx.Conversations(id)
		return err
	})
	mailID := convs2[0].ID
	r = h.do(alice, "PUT", fmt.Sprintf("/api/v2/conversations/%d", mailID), map[string]any{"body": "rewritten"})
	want(t, r, http.StatusConflict)
	if r.obj(t)["code"] != "inconsistent_state" {
		t.Fatalf("409: %s", r.body)
	}
	wantFieldError(t, h.do(alice, "PUT", fmt.Sprintf("/api/v2/conversations/%d", noteID), map[string]any{}), "body", "missing_field")
	want(t, h.do(alice, "PUT", "/api/v2/conversations/99999", map[string]any{"body": "x"}), http.StatusNotFound)

	// Deleting needs an admin.
	want(t, h.do(alice, "DELETE", fmt.Sprintf("/api/v2/conversations/%d", noteID), nil), http.StatusForbidden)
	want(t, h.do(root, "DELETE", fmt.Sprintf("/api/v2/conversations/%d", noteID), nil), http.StatusNoContent)
	want(t, h.do(root, "DELETE", fmt.Sprintf("/api/v2/conversations/%d", noteID), nil), http.StatusNotFound)
	if n := len(h.do(alice, "GET", base+"/conversations", nil).list(t)); n != 1 {
		t.Fatalf("after delete: %d conversations", n)
	}
}

func TestChannelScopes(t *testing.T) {
	h := newHarness(t, hopts{})
	sup := h.mail("a@customers.test", "support@acme.test", "Support", "s1@customers.test", "x")
	bill := h.mail("b@customers.test", "billing@acme.test", "Invoice", "b1@customers.test", "x")
	sale := h.mail("c@customers.test", "sales@acme.test", "Quote", "q1@customers.test", "x")
	want(t, h.do(carol, "GET", fmt.Sprintf("/api/v2/tickets/%d", sup), nil), http.StatusOK)
	want(t, h.do(carol, "GET", fmt.Sprintf("/api/v2/tickets/%d", sale), nil), http.StatusOK)
	want(t, h.do(carol, "GET", fmt.Sprintf("/api/v2/tickets/%d", bill), nil), http.StatusForbidden)
	want(t, h.do(carol, "PUT", fmt.Sprintf("/api/v2/tickets/%d", bill), map[string]any{"status": 4}), http.StatusForbidden)
	want(t, h.do(carol, "POST", fmt.Sprintf("/api/v2/tickets/%d/reply", bill), map[string]any{"body": "x"}), http.StatusForbidden)
	want(t, h.do(carol, "GET", fmt.Sprintf("/api/v2/tickets/%d/activities", bill), nil), http.StatusForbidden)
	want(t, h.do(carol, "GET", fmt.Sprintf("/api/v2/tickets/%d/activities", sale), nil), http.StatusOK)
	want(t, h.do(carol, "GET", "/api/v2/tickets?channel=billing", nil), http.StatusForbidden)
	r := h.do(carol, "GET", "/api/v2/tickets?per_page=1", nil)
	if l := r.list(t); len(l) != 1 || int64(l[0]["id"].(float64)) != sale || r.hdr.Get("Link") == "" {
		t.Fatalf("scoped page 1: %s", r.body)
	}
	r = h.do(carol, "GET", "/api/v2/tickets?per_page=1&page=2", nil)
	if l := r.list(t); len(l) != 1 || int64(l[0]["id"].(float64)) != sup || r.hdr.Get("Link") != "" {
		t.Fatalf("scoped page 2: %s", r.body)
	}
	if n := len(h.do(alice, "GET", "/api/v2/tickets", nil).list(t)); n != 3 {
		t.Fatalf("unscoped agent sees %d", n)
	}
	want(t, h.do(carol, "POST", "/api/v2/tickets", map[string]any{"email": "x@y.test", "channel": "billing"}), http.StatusForbidden)
}

func TestContactsFieldsAndAttachments(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.mail("jane@customers.test", "support@acme.test", "Hello", "h1@customers.test", "hi")
	h.mail("joe@customers.test", "support@acme.test", "Hello", "h2@customers.test", "hi")
	r := h.do(alice, "GET", "/api/v2/contacts?per_page=1", nil)
	want(t, r, http.StatusOK)
	cs := r.list(t)
	if len(cs) != 1 || cs[0]["email"] != "jane@customers.test" || r.hdr.Get("Link") == "" || cs[0]["phone"] != nil {
		t.Fatalf("contacts: %v %s", r.hdr, r.body)
	}
	cid := int64(cs[0]["id"].(float64))
	r = h.do(alice, "GET", fmt.Sprintf("/api/v2/contacts/%d", cid), nil)
	want(t, r, http.StatusOK)
	if r.obj(t)["email"] != "jane@customers.test" {
		t.Fatal(string(r.body))
	}
	if l := h.do(alice, "GET", "/api/v2/contacts?email=JOE@customers.test", nil).list(t); len(l) != 1 || l[0]["email"] != "joe@customers.test" {
		t.Fatalf("contact by email: %v", l)
	}

	r = h.do(alice, "GET", "/api/v2/ticket_fields", nil)
	want(t, r, http.StatusOK)
	var status map[string]any
	for _, f := range r.list(t) {
		if f["name"] == "status" {
			status = f
		}
	}
	choices := status["choices"].(map[string]any)
	if choices["6"] == nil || len(status["statuses"].([]any)) != 6 || len(status["pipelines"].([]any)) != 2 {
		t.Fatalf("status field: %v", status)
	}
	found := false
	for _, s := range status["statuses"].([]any) {
		m := s.(map[string]any)
		if m["code"].(float64) == 6 && m["category"] == "pending" {
			found = true
		}
	}
	if !found {
		t.Fatalf("custom status category: %v", status["statuses"])
	}

	body, ct := multipartBody(t, [][2]string{{"body", "see attached"}}, map[string][]byte{"../../etc/pass\u202ewd.txt": []byte("secret data")})
	req, _ := http.NewRequest("POST", h.url+fmt.Sprintf("/api/v2/tickets/%d/notes", id), body)
	req.Header.Set("Content-Type", ct)
	req.SetBasicAuth(h.keys[alice], "X")
	r = h.send(req)
	want(t, r, http.StatusCreated)
	att := r.obj(t)["attachments"].([]any)[0].(map[string]any)
	url := att["attachment_url"].(string)
	if !strings.HasPrefix(url, h.url+"/api/v2/attachments/") {
		t.Fatalf("attachment_url %q", url)
	}
	req, _ = http.NewRequest("GET", url, nil)
	req.SetBasicAuth(h.keys[alice], "X")
	r = h.send(req)
	want(t, r, http.StatusOK)
	if string(r.body) != "secret data" || r.hdr.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("download: %v %q", r.hdr, r.body)
	}
	disp, params, err := mime.ParseMediaType(r.hdr.Get("Content-Disposition"))
	if err != nil || disp != "attachment" || strings.ContainsAny(params["filename"], "/\\\u202e") {
		t.Fatalf("Content-Disposition %q", r.hdr.Get("Content-Disposition"))
	}
	if !strings.HasPrefix(r.hdr.Get("Content-Type"), "application/octet-stream") {
		t.Fatalf("Content-Type %q", r.hdr.Get("Content-Type"))
	}
}

// TestReplyReachesSMTPSink sends a multipart reply with an attachment
// through the API and checks what the relay receives: to the customer,
// In-Reply-To their mail, References naming it, the file attached.
func TestReplyReachesSMTPSink(t *testing.T) {
	h := newHarness(t, hopts{relay: true})
	id := h.mail("jane@customers.test", "support@acme.test", "Invoice missing", "cust-1@customers.test", "Where is my invoice?")
	h.sink.waitFor(t, 20*time.Second, func(m sunk) bool { return m.sentTo("jane@customers.test") }) // the confirmation
	body, ct := multipartBody(t, [][2]string{{"body", "<p>Here it is.</p>"}, {"cc_emails[]", "accounting@customers.test"}},
		map[string][]byte{"invoice.pdf": []byte("%PDF-1.4 invoice")})
	req, _ := http.NewRequest("POST", h.url+fmt.Sprintf("/api/v2/tickets/%d/reply", id), body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+h.keys[alice])
	r := h.send(req)
	want(t, r, http.StatusCreated)
	c := r.obj(t)
	if c["incoming"] != false || c["private"] != false || len(c["attachments"].([]any)) != 1 {
		t.Fatalf("reply: %s", r.body)
	}
	got := h.sink.waitFor(t, 20*time.Second, func(m sunk) bool {
		return m.sentTo("jane@customers.test") && bytes.Contains(m.data, []byte("invoice.pdf"))
	})
	m, err := mail.ReadMessage(bytes.NewReader(got.data))
	if err != nil {
		t.Fatal(err)
	}
	if irt := m.Header.Get("In-Reply-To"); irt != "<cust-1@customers.test>" {
		t.Fatalf("In-Reply-To %q", irt)
	}
	if refs := m.Header.Get("References"); !strings.Contains(refs, "<cust-1@customers.test>") {
		t.Fatalf("References %q", refs)
	}
	if !strings.Contains(m.Header.Get("Subject"), fmt.Sprintf("[#%d]", id)) {
		t.Fatalf("Subject %q", m.Header.Get("Subject"))
	}
	rcpt := strings.Join(got.to, ",")
	if !strings.Contains(rcpt, "jane@customers.test") || !strings.Contains(rcpt, "accounting@customers.test") {
		t.Fatalf("recipients %v", got.to)
	}
	if !bytes.Contains(got.data, []byte("invoice.pdf")) || m.Header.Get("Auto-Submitted") != "" {
		t.Fatalf("mail: %s", got.data)
	}
	// The ticket moved to Pending (the pipeline's agent-reply status).
	if st := h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d", id), nil).obj(t)["status"].(float64); st != 3 {
		t.Fatalf("status after reply %v", st)
	}
	// The customer's answer to our mail threads back onto the ticket.
	var ourID string
	for _, o := range h.outbox() {
		if o.Kind == "agent_reply" {
			ourID = o.MessageID
		}
	}
	if again := h.mail("jane@customers.test", "support@acme.test", "Re: Invoice missing", "cust-2@customers.test", "Thanks", "cust-1@customers.test", ourID); again != id {
		t.Fatalf("reply threaded to %d, want %d", again, id)
	}
}

func TestReplyValidation(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.mail("jane@customers.test", "support@acme.test", "Q", "rv1@customers.test", "?")
	p := fmt.Sprintf("/api/v2/tickets/%d/reply", id)
	wantFieldError(t, h.do(alice, "POST", p, map[string]any{}), "body", "missing_field")
	wantFieldError(t, h.do(alice, "POST", p, map[string]any{"body": 5}), "body", "datatype_mismatch")
	wantFieldError(t, h.do(alice, "POST", p, map[string]any{"body": "x", "bcc_emails": []string{"a@b.test"}}), "bcc_emails", "invalid_value")
	wantFieldError(t, h.do(alice, "POST", p, map[string]any{"body": "x", "cc_emails": []string{"nope"}}), "cc_emails", "invalid_value")
	want(t, h.do(alice, "POST", p, map[string]any{"body": "x", "user_id": 2}), http.StatusForbidden)
	r := h.do(root, "POST", p, map[string]any{"body": "on behalf", "user_id": 1, "bcc_emails": []string{}})
	want(t, r, http.StatusCreated)
	if r.obj(t)["user_id"].(float64) != 1 {
		t.Fatalf("user_id: %s", r.body)
	}
	want(t, h.do(alice, "POST", "/api/v2/tickets/9999/reply", map[string]any{"body": "x"}), http.StatusNotFound)
}

func TestCustomFields(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.mail("jane@customers.test", "support@acme.test", "Broken", "cf1@customers.test", "broken")
	r := h.do(alice, "PUT", fmt.Sprintf("/api/v2/tickets/%d", id), map[string]any{"custom_fields": map[string]any{"order_id": "A-77", "plan": "pro"}})
	want(t, r, http.StatusOK)
	cf, _ := r.obj(t)["custom_fields"].(map[string]any)
	if cf["order_id"] != "A-77" || cf["plan"] != "Pro" {
		t.Fatalf("custom_fields after PUT: %v", cf)
	}
	wantFieldError(t, h.do(alice, "PUT", fmt.Sprintf("/api/v2/tickets/%d", id), map[string]any{"custom_fields": map[string]any{"plan": "gold"}}), "ticket", "invalid_value")
	r = h.do(alice, "PUT", fmt.Sprintf("/api/v2/tickets/%d", id), map[string]any{"custom_fields": map[string]any{"order_id": nil}})
	want(t, r, http.StatusOK)
	if cf, _ := r.obj(t)["custom_fields"].(map[string]any); len(cf) != 1 {
		t.Fatalf("order_id not cleared: %v", cf)
	}
	r = h.do(alice, "POST", "/api/v2/tickets", map[string]any{"email": "c@d.test", "subject": "s", "description": "d", "custom_fields": map[string]any{"order_id": "B-1"}})
	want(t, r, http.StatusCreated)
	if cf, _ := r.obj(t)["custom_fields"].(map[string]any); cf["order_id"] != "B-1" {
		t.Fatalf("custom_fields after POST: %v", cf)
	}
}

// TestFailedLoginsLimitedPerAddress: after 30 wrong keys in a minute
// an address gets 429, even with a right key, until the window ends.
func TestFailedLoginsLimitedPerAddress(t *testing.T) {
	h := newHarness(t, hopts{})
	n := 0
	wrong := func() resp {
		n++
		req, _ := http.NewRequest("GET", h.url+"/api/v2/tickets", nil)
		req.SetBasicAuth(fmt.Sprintf("%03d-wrong-key", n), "X") // a new prefix each time
		return h.send(req)
	}
	for i := 0; i < 30; i++ {
		want(t, wrong(), http.StatusUnauthorized)
	}
	r := wrong()
	want(t, r, http.StatusTooManyRequests)
	if r.hdr.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	want(t, h.do(alice, "GET", "/api/v2/tickets", nil), http.StatusTooManyRequests)
}
