package api_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/internal/testtool"
)

// clientSetup makes three tickets on db; the newest is the one the
// Freshdesk script works on.
func clientSetup(t *testing.T, db string) (*harness, int64) {
	h := newHarness(t, hopts{rateLimit: 200, dbPath: db})
	h.mail("old1@customers.test", "support@acme.test", "Old one", "fc1@customers.test", "old")
	h.mail("old2@customers.test", "support@acme.test", "Old two", "fc2@customers.test", "old")
	id := h.mail("jane@customers.test", "support@acme.test", "Cannot log in", "fc3@customers.test", "Password reset fails.")
	return h, id
}

// checkClientEffects checks what the script's calls did to the ticket.
func checkClientEffects(t *testing.T, h *harness, id int64, summary map[string]any) {
	t.Helper()
	wantSummary := map[string]any{
		"listed": 3.0, "subject": "Cannot log in", "requester_email": "jane@customers.test", "has_stats": true,
		"note_private": true, "status": 4.0, "error_field": "priority", "conversations": 2.0, "rate_limit_total": "200",
		"duplicate_code": "duplicate_value", "duplicate_points_to_contact": true, "contact_phone": "+1 555 0100",
		"contact_found": true, "contact_deleted": true,
	}
	// The search and filter calls (after the ticket was resolved).
	for k, v := range map[string]any{"search_resolved": "[true]", "search_open_total": 2.0, "search_error_field": "page",
		"contact_search_total": 1.0, "new_and_my_open": 2.0} {
		wantSummary[k] = v
	}
	if r, ok := summary["search_resolved"].([]any); ok {
		summary["search_resolved"] = fmt.Sprint(r)
	}
	for k, v := range wantSummary {
		if summary[k] != v {
			t.Errorf("%s = %v, want %v (summary %v)", k, summary[k], v, summary)
		}
	}
	r := h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d?include=stats", id), nil)
	tk := r.obj(t)
	if tk["status"].(float64) != 4 || tk["stats"].(map[string]any)["resolved_at"] == nil || tk["stats"].(map[string]any)["first_responded_at"] == nil {
		t.Fatalf("ticket after the script: %s", r.body)
	}
	var replies int
	for _, m := range h.outbox() {
		if m.Kind == "agent_reply" && m.TicketID != nil && *m.TicketID == id {
			replies++
		}
	}
	if replies != 1 {
		t.Fatalf("agent replies queued: %d", replies)
	}
}

// TestFreshdeskPythonClient runs fixtures/api/freshdesk_client.py, a
// script written against Freshdesk's documented API, against deskmail
// with only the base URL and key changed.
func TestFreshdeskPythonClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		testtool.Missing(t, "python3 not installed (the same calls are checked by TestFreshdeskClientCalls)")
	}
	if out, err := exec.Command(py, "-c", "import requests").CombinedOutput(); err != nil {
		testtool.Missing(t, "python3 module requests missing (apt-get install python3-requests; TestFreshdeskClientCalls checks the same calls): "+string(bytes.TrimSpace(out)))
	}
	forEachStore(t, func(t *testing.T, db string) { pythonClientOn(t, py, db) })
}

func pythonClientOn(t *testing.T, py, db string) {
	h, id := clientSetup(t, db)
	cmd := exec.CommandContext(t.Context(), py, filepath.Join("..", "fixtures", "api", "freshdesk_client.py"))
	cmd.Env = append(os.Environ(), "FRESHDESK_URL="+h.url, "FRESHDESK_KEY="+h.keys[root])
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("freshdesk_client.py: %v\n%s", err, stderr.String())
	}
	var summary map[string]any
	if err := json.Unmarshal(out, &summary); err != nil {
		t.Fatalf("script output %q: %v", out, err)
	}
	checkClientEffects(t, h, id, summary)
}

var nextLink = regexp.MustCompile(`<([^>]+)>;\s*rel="next"`)

// TestFreshdeskClientCalls makes the script's calls in Go, so they are
// checked where Python's requests is missing.
func TestFreshdeskClientCalls(t *testing.T) {
	h, id := clientSetup(t, "")
	call := func(method, url string, body any, wantCode int) (map[string]any, []map[string]any, http.Header) {
		t.Helper()
		var rd *bytes.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		} else {
			rd = bytes.NewReader(nil)
		}
		req, _ := http.NewRequest(method, url, rd)
		req.SetBasicAuth(h.keys[root], "X")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		r := h.send(req)
		want(t, r, wantCode)
		if len(bytes.TrimSpace(r.body)) == 0 {
			return nil, nil, r.hdr
		}
		if strings.HasPrefix(strings.TrimSpace(string(r.body)), "[") {
			return nil, r.list(t), r.hdr
		}
		return r.obj(t), nil, r.hdr
	}
	summary := map[string]any{}
	var tickets []map[string]any
	for url := h.url + "/api/v2/tickets?per_page=2"; url != ""; {
		_, page, hdr := call("GET", url, nil, 200)
		tickets = append(tickets, page...)
		summary["rate_limit_total"] = hdr.Get("X-RateLimit-Total")
		url = ""
		if m := nextLink.FindStringSubmatch(hdr.Get("Link")); m != nil {
			url = m[1]
		}
	}
	summary["listed"] = float64(len(tickets))
	if int64(tickets[0]["id"].(float64)) != id {
		t.Fatalf("newest ticket %v, want %d", tickets[0]["id"], id)
	}
	base := fmt.Sprintf("%s/api/v2/tickets/%d", h.url, id)
	tk, _, _ := call("GET", base+"?include=conversations,requester,stats", nil, 200)
	summary["subject"] = tk["subject"]
	summary["requester_email"] = tk["requester"].(map[string]any)["email"]
	_, summary["has_stats"] = tk["stats"].(map[string]any)["first_responded_at"]
	call("POST", base+"/reply", map[string]any{"body": "<p>We are on it.</p>"}, 201)
	note, _, _ := call("POST", base+"/notes", map[string]any{"body": "Customer called too.", "private": true}, 201)
	summary["note_private"] = note["private"]
	tk, _, _ = call("PUT", base, map[string]any{"status": 4}, 200)
	summary["status"] = tk["status"]
	e, _, _ := call("PUT", base, map[string]any{"priority": 9}, 400)
	summary["error_field"] = e["errors"].([]any)[0].(map[string]any)["field"]
	_, convs, _ := call("GET", base+"/conversations", nil, 200)
	summary["conversations"] = float64(len(convs))
	search := func(path string, v url.Values, code int) map[string]any {
		found, _, _ := call("GET", h.url+path+"?"+v.Encode(), nil, code)
		return found
	}
	found := search("/api/v2/search/tickets", url.Values{"query": {`"status:4 AND priority:1"`}}, 200)
	var resolved []any
	for _, tk := range found["results"].([]any) {
		resolved = append(resolved, int64(tk.(map[string]any)["id"].(float64)) == id)
	}
	summary["search_resolved"] = resolved
	found = search("/api/v2/search/tickets", url.Values{"query": {`"(status:2 OR status:3) AND created_at:>'2000-01-01'"`}, "page": {"1"}}, 200)
	summary["search_open_total"] = found["total"]
	e = search("/api/v2/search/tickets", url.Values{"query": {`"status:2"`}, "page": {"11"}}, 400)
	summary["search_error_field"] = e["errors"].([]any)[0].(map[string]any)["field"]
	found = search("/api/v2/search/contacts", url.Values{"query": {fmt.Sprintf(`"email:'%s'"`, summary["requester_email"])}}, 200)
	summary["contact_search_total"] = found["total"]
	_, mine, _ := call("GET", h.url+"/api/v2/tickets?filter=new_and_my_open", nil, 200)
	summary["new_and_my_open"] = float64(len(mine))

	c, _, _ := call("POST", h.url+"/api/v2/contacts", map[string]any{"name": "Script Contact", "email": "script.contact@customers.test"}, 201)
	dup, _, _ := call("POST", h.url+"/api/v2/contacts", map[string]any{"name": "Again", "email": "script.contact@customers.test"}, 409)
	dupErr := dup["errors"].([]any)[0].(map[string]any)
	summary["duplicate_code"] = dupErr["code"]
	summary["duplicate_points_to_contact"] = dupErr["additional_info"].(map[string]any)["user_id"] == c["id"]
	cpath := fmt.Sprintf("%s/api/v2/contacts/%d", h.url, int64(c["id"].(float64)))
	c, _, _ = call("PUT", cpath, map[string]any{"phone": "+1 555 0100", "time_zone": "America/New_York", "tags": []string{"script"}}, 200)
	summary["contact_phone"] = c["phone"]
	_, foundContacts, _ := call("GET", h.url+"/api/v2/contacts?email=script.contact%40customers.test", nil, 200)
	summary["contact_found"] = len(foundContacts) == 1 && foundContacts[0]["id"] == c["id"] && fmt.Sprint(foundContacts[0]["tags"]) == "[script]"
	call("DELETE", cpath, nil, 204)
	deleted, _, _ := call("GET", cpath, nil, 200)
	summary["contact_deleted"] = deleted["deleted"]
	call("PUT", cpath+"/restore", nil, 204)
	checkClientEffects(t, h, id, summary)
}

// TestFreshdeskNodeClient runs fixtures/api/node/freshdesk_client.js,
// which drives the npm client freshdesk-api 3.1.0 (the version in
// package-lock.json, installed by npm ci into a cache directory keyed
// by the lock file), against deskmail with only the base URL and key
// changed.
func TestFreshdeskNodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed (Debian: apt-get install nodejs npm): the npm Freshdesk client cannot run")
	}
	modules := nodeModules(t)
	forEachStore(t, func(t *testing.T, db string) { nodeClientOn(t, node, modules, db) })
}

func nodeClientOn(t *testing.T, node, modules, db string) {
	h, id := clientSetup(t, db)
	cmd := exec.CommandContext(t.Context(), node, filepath.Join("..", "fixtures", "api", "node", "freshdesk_client.js"))
	cmd.Env = append(os.Environ(), "FRESHDESK_URL="+h.url, "FRESHDESK_KEY="+h.keys[root], "NOTIFY_AGENT="+carol, "NODE_PATH="+modules)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("freshdesk_client.js: %v\n%s", err, stderr.String())
	}
	var summary map[string]any
	if err := json.Unmarshal(out, &summary); err != nil {
		t.Fatalf("script output %q: %v", out, err)
	}
	wantSummary := map[string]any{
		"listed": 3.0, "subject": "Cannot log in", "note_notified_to": []any{carol}, "conversations": 1.0,
		"duplicate_status": 409.0, "duplicate_code": "duplicate_value", "duplicate_user_id_matches": true,
		"contact_time_zone": "Europe/London", "contact_found": true, "contact_deleted": true, "listed_after_delete": 0.0,
	}
	for k, v := range wantSummary {
		if fmt.Sprint(summary[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v (summary %v)", k, summary[k], v, summary)
		}
	}
	if n := h.do(alice, "GET", fmt.Sprintf("/api/v2/tickets/%d/conversations", id), nil).list(t); len(n) != 1 {
		t.Fatalf("conversations after the script: %v", n)
	}
}

// nodeModules installs fixtures/api/node's locked dependencies once
// per lock file (npm ci, in the user's cache directory) and returns the
// node_modules directory.
func nodeModules(t *testing.T) string {
	t.Helper()
	src := filepath.Join("..", "fixtures", "api", "node")
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sum := sha256.Sum256(lock)
	dir := filepath.Join(cache, "deskmail-test", "node-"+hex.EncodeToString(sum[:8]))
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "freshdesk-api", "package.json")); err == nil {
		return modules
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatal("npm is not installed (Debian: apt-get install npm): the npm Freshdesk client cannot be installed")
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
	if err != nil {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if tmp, err = os.MkdirTemp(filepath.Dir(dir), "install-"); err != nil {
			t.Fatal(err)
		}
	}
	defer os.RemoveAll(tmp)
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", tmp, err, out)
	}
	// Another test process may have finished first: either copy is good.
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(modules, "freshdesk-api", "package.json")); serr != nil {
			t.Fatalf("install the npm client: %v", err)
		}
	}
	return modules
}
