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

// searchIDs runs a ticket search as who and returns the ids found and
// the total.
func searchIDs(t *testing.T, h *harness, who, query string, page int) ([]int64, int) {
	t.Helper()
	v := url.Values{"query": {`"` + query + `"`}}
	if page > 0 {
		v.Set("page", fmt.Sprint(page))
	}
	r := h.do(who, "GET", "/api/v2/search/tickets?"+v.Encode(), nil)
	if r.code != http.StatusOK {
		t.Fatalf("search %q: %d %s", query, r.code, r.body)
	}
	var body struct {
		Results []struct {
			ID int64 `json:"id"`
		} `json:"results"`
		Total *int `json:"total"`
	}
	r.json(t, &body)
	if body.Results == nil || body.Total == nil {
		t.Fatalf("search %q: body %s", query, r.body)
	}
	var out []int64
	for _, tk := range body.Results {
		out = append(out, tk.ID)
	}
	return out, *body.Total
}

// TestSearchTickets runs Freshdesk's query language over tickets made
// by mail and changed through the API: every field, every operator,
// AND/OR/parentheses, null, custom fields, SQL metacharacters in
// values, the channel scope, and the 30-a-page, 10-page limit.
func TestSearchTickets(t *testing.T) {
	h := newHarness(t, hopts{})
	aliceID := int64(h.do(alice, "GET", "/api/v2/agents/me", nil).obj(t)["id"].(float64))
	vip := h.mail("jane@customers.test", "support@acme.test", "Invoice wrong", "s1@customers.test", "one")
	waiting := h.mail("joe@customers.test", "support@acme.test", "Where is it", "s2@customers.test", "two")
	sales := h.mail("sam@customers.test", "sales@acme.test", "Quote", "s3@customers.test", "three")
	billing := h.mail("bill@customers.test", "billing@acme.test", "Refund", "s4@customers.test", "four")
	gone := h.mail("spam@customers.test", "support@acme.test", "Trash", "s5@customers.test", "five")
	put := func(id int64, body map[string]any) {
		t.Helper()
		want(t, h.do(root, "PUT", fmt.Sprintf("/api/v2/tickets/%d", id), body), http.StatusOK)
	}
	put(vip, map[string]any{"priority": 3, "tags": []string{"VIP", "refund"}, "type": "Question", "group_id": 1,
		"responder_id": aliceID, "custom_fields": map[string]any{"order_id": "A-1'; --", "plan": "Pro"}})
	put(waiting, map[string]any{"priority": 1, "status": 3})
	put(sales, map[string]any{"priority": 4, "tags": []string{"deal"}})
	put(billing, map[string]any{"priority": 2, "custom_fields": map[string]any{"plan": "Free"}})
	put(gone, map[string]any{"priority": 3})
	want(t, h.do(root, "DELETE", fmt.Sprintf("/api/v2/tickets/%d", gone), nil), http.StatusNoContent)

	today := time.Now().UTC().Format(time.DateOnly)
	yesterday := time.Now().UTC().Add(-24 * time.Hour).Format(time.DateOnly)
	tomorrow := time.Now().UTC().Add(24 * time.Hour).Format(time.DateOnly)
	all := []int64{billing, sales, waiting, vip}
	for _, c := range []struct {
		q    string
		want []int64
	}{
		{`priority:3`, []int64{vip}},
		{`priority:>3`, []int64{sales, vip}},
		{`priority:<2`, []int64{billing, waiting}},
		{`priority:>2 AND priority:<3`, []int64{billing, vip}},
		{`status:3`, []int64{waiting}},
		{`status:2 OR status:3`, all},
		{`status:3 OR priority:4 AND tag:'deal'`, []int64{sales, waiting}},
		{`(status:3 OR priority:4) AND tag:'nothing'`, nil},
		{`(priority:3 OR priority:4) AND (tag:'vip' OR tag:'deal')`, []int64{sales, vip}},
		{`tag:'vip'`, []int64{vip}},
		{`tag:'REFUND'`, []int64{vip}},
		{`tag:null`, []int64{billing, waiting}},
		{`type:'question'`, []int64{vip}},
		{`type:null`, []int64{billing, sales, waiting}},
		{fmt.Sprintf(`agent_id:%d`, aliceID), []int64{vip}},
		{`agent_id:null`, []int64{billing, sales, waiting}},
		{`group_id:1`, []int64{vip}},
		{`group_id:>2`, nil},
		{`created_at:'` + today + `'`, all},
		{`created_at:>'` + today + `' AND created_at:<'` + today + `'`, all},
		{`created_at:<'` + yesterday + `'`, nil},
		{`created_at:>'` + tomorrow + `'`, nil},
		{`updated_at:>'` + yesterday + `'`, all},
		{`due_by:null AND fr_due_by:null`, all},
		{`due_by:>'2000-01-01'`, nil},
		{`plan:'pro'`, []int64{vip}},
		{`cf_plan:'Free' OR cf_plan:'Pro'`, []int64{billing, vip}},
		{`plan:null`, []int64{sales, waiting}},
		{`order_id:'A-1\'; --'`, []int64{vip}},
		// SQL metacharacters are values like any other: they find
		// nothing and break nothing.
		{`tag:'x\' OR 1=1 --'`, nil},
		{`type:'); DROP TABLE tickets; --'`, nil},
		{`order_id:'%'`, nil},
		{`tag:'_'`, nil},
	} {
		got, total := searchIDs(t, h, alice, c.q, 0)
		if !slices.Equal(got, c.want) || total != len(c.want) {
			t.Errorf("%s: %v (total %d), want %v", c.q, got, total, c.want)
		}
	}
	if n := len(h.do(alice, "GET", "/api/v2/tickets", nil).list(t)); n != 4 {
		t.Fatalf("tickets after the hostile queries: %d", n)
	}

	// carol sees the sales and support channels, not billing.
	if got, total := searchIDs(t, h, carol, `status:2 OR status:3`, 0); !slices.Equal(got, []int64{sales, waiting, vip}) || total != 3 {
		t.Errorf("carol's scope: %v (%d)", got, total)
	}
	if got, _ := searchIDs(t, h, carol, `plan:'Free'`, 0); len(got) != 0 {
		t.Errorf("carol found a billing ticket: %v", got)
	}

	// 30 a page, 10 pages at most.
	var many []int64
	for i := 0; i < 33; i++ {
		many = append(many, h.mail(fmt.Sprintf("bulk%d@customers.test", i), "support@acme.test", "Bulk", fmt.Sprintf("bulk%d@customers.test", i), "x"))
	}
	slices.Reverse(many)
	p1, total := searchIDs(t, h, alice, `priority:1`, 0)
	p2, _ := searchIDs(t, h, alice, `priority:1`, 2)
	p10, _ := searchIDs(t, h, alice, `priority:1`, 10)
	if total != 34 || !slices.Equal(p1, many[:30]) || !slices.Equal(p2, append(many[30:], waiting)) || len(p10) != 0 {
		t.Errorf("pages: total %d, page 1 %v, page 2 %v, page 10 %v", total, p1, p2, p10)
	}
}

// TestSearchErrors: Freshdesk's 400 bodies, naming the problem.
func TestSearchErrors(t *testing.T) {
	h := newHarness(t, hopts{})
	get := func(raw string) resp {
		return h.do(alice, "GET", "/api/v2/search/tickets?"+raw, nil)
	}
	q := func(query string) string { return url.Values{"query": {query}}.Encode() }
	wantFieldError(t, get(""), "query", "missing_field")
	wantFieldError(t, get(q(`priority:3`)), "query", "invalid_value")
	wantFieldError(t, get(q(`'priority:3'`)), "query", "invalid_value")
	wantFieldError(t, get(q(`"priority:3"`)+"&page=11"), "page", "invalid_value")
	wantFieldError(t, get(q(`"priority:3"`)+"&page=0"), "page", "invalid_value")
	wantFieldError(t, get(q(`"priority:3"`)+"&per_page=5"), "per_page", "invalid_field")
	wantFieldError(t, get(q(`"colour:'red'"`)), "colour", "invalid_field")
	wantFieldError(t, get(q(`"priority:'high'"`)), "priority", "invalid_value")
	wantFieldError(t, get(q(`"created_at:>'2026-13-01'"`)), "created_at", "invalid_value")
	wantFieldError(t, get(q(`"(status:2 OR status:3"`)), "query", "invalid_value")
	wantFieldError(t, get(q(`"status:2 and status:3"`)), "query", "invalid_value")
	wantFieldError(t, get(q(`"`+strings.Repeat("status:2 OR ", 50)+`status:2"`)), "query", "invalid_value")
	r := get(q(`"priority:3 AND tag:vip"`))
	want(t, r, http.StatusBadRequest)
	if got := string(r.body); got != `{"description":"Validation failed","errors":[{"field":"tag","message":"tag takes a string in single quotes, not \"vip\" (at position 20)","code":"invalid_value"}]}`+"\n" {
		t.Errorf("body %s", got)
	}
	wantFieldError(t, h.do(alice, "GET", "/api/v2/search/contacts?"+q(`"status:2"`), nil), "status", "invalid_field")
	want(t, h.do("", "GET", "/api/v2/search/tickets?"+q(`"status:2"`), nil), http.StatusUnauthorized)

	// The npm freshdesk-api client (3.1.0) sends the quotes as they
	// are and the rest through encodeURI.
	h.mail("jane@customers.test", "support@acme.test", "One", "e1@customers.test", "one")
	r = get(`query="priority:1%20OR%20(status:2%20AND%20tag:'vip')"&page=1`)
	want(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"total":1}`) {
		t.Errorf("npm client's form: %s", r.body)
	}
}

// TestSearchContacts: email, name and dates, case-insensitive whole
// values.
func TestSearchContacts(t *testing.T) {
	h := newHarness(t, hopts{})
	h.mail("jane@customers.test", "support@acme.test", "One", "c1@customers.test", "one")
	h.mail("joe@customers.test", "support@acme.test", "Two", "c2@customers.test", "two")
	search := func(query string) (emails []string, total int) {
		t.Helper()
		r := h.do(alice, "GET", "/api/v2/search/contacts?"+url.Values{"query": {`"` + query + `"`}}.Encode(), nil)
		want(t, r, http.StatusOK)
		var body struct {
			Results []struct{ Email string } `json:"results"`
			Total   int                      `json:"total"`
		}
		r.json(t, &body)
		for _, c := range body.Results {
			emails = append(emails, c.Email)
		}
		return emails, body.Total
	}
	today := time.Now().UTC().Format(time.DateOnly)
	for _, c := range []struct {
		q    string
		want []string
	}{
		{`email:'JANE@customers.test'`, []string{"jane@customers.test"}},
		{`email:'jane@customers.test' OR email:'joe@customers.test'`, []string{"jane@customers.test", "joe@customers.test"}},
		{`name:'customer' AND created_at:'` + today + `'`, []string{"jane@customers.test", "joe@customers.test"}},
		{`created_at:<'2000-01-01'`, nil},
		{`email:'%'`, nil},
		{`email:'\' OR \'1\'=\'1'`, nil},
	} {
		got, total := search(c.q)
		if !slices.Equal(got, c.want) || total != len(c.want) {
			t.Errorf("%s: %v (total %d), want %v", c.q, got, total, c.want)
		}
	}
}
