package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

const searchE2EConfig = `database: deskmail.db
agents:
  - {email: alice@acme.test, name: Alice Agent, role: admin}
  - {email: sam@acme.test, name: Sam Sales, group: sales}
custom_fields:
  - {name: plan, type: choice, choices: [Free, Pro]}
channels:
  - name: support
    addresses: [support@acme.test]
  - name: billing
    addresses: [billing@acme.test]
    group: billing
  - name: sales
    addresses: [sales@acme.test]
    group: sales
sla:
  policies:
    - {name: billing, channels: [billing], first_response: 4h, resolution: 72h}
`

// TestSearchAndFiltersEndToEnd: the built binary serves; tickets come
// by SMTP; list filters and searches go over HTTP with the keys of an
// admin and of an agent limited to the sales group (who sees the sales
// and support channels, not billing).
func TestSearchAndFiltersEndToEnd(t *testing.T) {
	forEachDatabase(t, searchAndFiltersOn)
}

func searchAndFiltersOn(t *testing.T, db string) {
	bin, dir := buildBinary(t), t.TempDir()
	cfg := writeConfigOn(t, dir, db, searchE2EConfig)
	_, smtpAddr, httpAddr := startServe(t, bin, dir, "--config", cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	aliceKey := strings.TrimSpace(deskmailCmd(t, bin, dir, "agents", "key", "alice@acme.test", "--config", cfg))
	samKey := strings.TrimSpace(deskmailCmd(t, bin, dir, "agents", "key", "sam@acme.test", "--config", cfg))
	for i, m := range []struct{ from, to, subject string }{
		{"jane@customer.test", "support@acme.test", "Cannot log in"},
		{"bill@customer.test", "billing@acme.test", "Invoice twice"},
		{"sue@customer.test", "sales@acme.test", "A quote"},
	} {
		msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <search-%d@customer.test>\r\nDate: %s\r\n\r\nHello.\r\n",
			m.from, m.to, m.subject, i, time.Now().Format(time.RFC1123Z))
		if err := smtpSend(smtpAddr, m.from, m.to, msg); err != nil {
			t.Fatal(err)
		}
	}
	call := func(key, method, path string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = strings.NewReader(string(b))
		}
		req, _ := http.NewRequest(method, "http://"+httpAddr+path, rd)
		req.SetBasicAuth(key, "X")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	type ticket struct {
		ID      int64   `json:"id"`
		Subject string  `json:"subject"`
		DueBy   *string `json:"due_by"`
	}
	subjects := func(tks []ticket) []string {
		out := []string{}
		for _, tk := range tks {
			out = append(out, tk.Subject)
		}
		return out
	}
	list := func(key, query string) []string {
		t.Helper()
		code, b := call(key, "GET", "/api/v2/tickets?"+query, nil)
		var tks []ticket
		if code != 200 || json.Unmarshal(b, &tks) != nil {
			t.Fatalf("list %s: %d %s", query, code, b)
		}
		return subjects(tks)
	}
	find := func(key, query string) ([]string, int) {
		t.Helper()
		code, b := call(key, "GET", "/api/v2/search/tickets?"+url.Values{"query": {`"` + query + `"`}}.Encode(), nil)
		var res struct {
			Results []ticket `json:"results"`
			Total   int      `json:"total"`
		}
		if code != 200 || json.Unmarshal(b, &res) != nil {
			t.Fatalf("search %s: %d %s", query, code, b)
		}
		return subjects(res.Results), res.Total
	}
	check := func(what string, got []string, want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	today := time.Now().UTC().Format(time.DateOnly)

	check("list", list(aliceKey, ""), "A quote", "Invoice twice", "Cannot log in")
	check("due_by asc", list(aliceKey, "order_by=due_by&order_type=asc"), "Invoice twice", "Cannot log in", "A quote")
	check("sam's list", list(samKey, ""), "A quote", "Cannot log in")
	got, _ := find(aliceKey, `due_by:>'`+today+`' AND fr_due_by:>'`+today+`'`)
	check("due_by search", got, "Invoice twice")
	got, _ = find(aliceKey, `due_by:null`)
	check("due_by:null", got, "A quote", "Cannot log in")
	got, total := find(samKey, `status:2 OR status:3`)
	check("sam's search", got, "A quote", "Cannot log in")
	if total != 2 {
		t.Errorf("sam's total %d", total)
	}

	// Changes through the API are found at once.
	code, b := call(samKey, "GET", "/api/v2/agents/me", nil)
	var sam struct{ ID int64 }
	if code != 200 || json.Unmarshal(b, &sam) != nil {
		t.Fatalf("me: %d %s", code, b)
	}
	ids := map[string]int64{}
	code, b = call(aliceKey, "GET", "/api/v2/tickets", nil)
	var all []ticket
	json.Unmarshal(b, &all)
	for _, tk := range all {
		ids[tk.Subject] = tk.ID
	}
	if code, b := call(aliceKey, "PUT", fmt.Sprintf("/api/v2/tickets/%d", ids["Invoice twice"]), map[string]any{
		"tags": []string{"vip"}, "custom_fields": map[string]any{"plan": "Pro"}, "priority": 3}); code != 200 {
		t.Fatalf("update: %d %s", code, b)
	}
	if code, b := call(aliceKey, "PUT", fmt.Sprintf("/api/v2/tickets/%d", ids["Cannot log in"]), map[string]any{"responder_id": sam.ID}); code != 200 {
		t.Fatalf("assign: %d %s", code, b)
	}
	got, _ = find(aliceKey, `tag:'VIP' AND cf_plan:'pro' AND priority:>3`)
	check("tag and custom field", got, "Invoice twice")
	got, _ = find(aliceKey, fmt.Sprintf(`agent_id:%d`, sam.ID))
	check("agent_id", got, "Cannot log in")
	got, _ = find(samKey, `tag:'vip'`)
	check("sam cannot find billing", got)
	got, _ = find(aliceKey, `tag:'x\' OR 1=1 --'`)
	check("SQL in a value", got)
	check("alice new_and_my_open", list(aliceKey, "filter=new_and_my_open"), "A quote", "Invoice twice")
	check("sam new_and_my_open", list(samKey, "filter=new_and_my_open"), "A quote", "Cannot log in")

	if code, b := call(aliceKey, "GET", "/api/v2/search/tickets?query=%22status:2%22&page=11", nil); code != 400 || !strings.Contains(string(b), `"field":"page"`) {
		t.Errorf("page 11: %d %s", code, b)
	}
	code, b = call(aliceKey, "GET", "/api/v2/search/contacts?"+url.Values{"query": {`"email:'JANE@customer.test'"`}}.Encode(), nil)
	if code != 200 || !strings.Contains(string(b), `"email":"jane@customer.test"`) || !strings.Contains(string(b), `"total":1`) {
		t.Errorf("contact search: %d %s", code, b)
	}
}
