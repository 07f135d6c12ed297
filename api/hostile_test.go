package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestHostileInput sends malformed and oversized bodies to every write
// endpoint: each gets a 4xx JSON error, never a 500 or a panic.
func TestHostileInput(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.mail("jane@customers.test", "support@acme.test", "Q", "hi1@customers.test", "?")
	var noteID int64
	{
		r := h.do(alice, "POST", fmt.Sprintf("/api/v2/tickets/%d/notes", id), map[string]any{"body": "n"})
		noteID = int64(r.obj(t)["id"].(float64))
	}
	targets := [][2]string{
		{"POST", "/api/v2/tickets"},
		{"PUT", fmt.Sprintf("/api/v2/tickets/%d", id)},
		{"POST", fmt.Sprintf("/api/v2/tickets/%d/reply", id)},
		{"POST", fmt.Sprintf("/api/v2/tickets/%d/notes", id)},
		{"PUT", fmt.Sprintf("/api/v2/conversations/%d", noteID)},
	}
	bodies := []string{
		``, `null`, `"str"`, `{}`, `{"a":`, strings.Repeat("[", 100000), `{"status": 1e400}`, `{"status": -1}`,
		`{"status": 9223372036854775808}`, `{"body": "\u0000"}`, `{"tags": [1,2]}`, `{"tags": "x"}`, `{"cc_emails": {"a":1}}`,
		`{"body": {"x": 1}}`, `{"private": null, "body": "x", "notify_emails": [null]}`, `{"responder_id": 1.5}`,
		`{"email": "a@b.test", "description": "` + strings.Repeat("<div>", 50000) + `"}`,
	}
	for _, tg := range targets {
		for _, b := range bodies {
			r := h.do(alice, tg[0], tg[1], b)
			if r.code >= 500 || (r.code >= 300 && !bytes.HasPrefix(bytes.TrimSpace(r.body), []byte("{"))) {
				t.Errorf("%s %s %.40q: %d %s", tg[0], tg[1], b, r.code, r.body)
			}
		}
		// multipart without a boundary, and a truncated one
		for _, ct := range []string{"multipart/form-data", "multipart/form-data; boundary=xyz"} {
			req, _ := http.NewRequest(tg[0], h.url+tg[1], strings.NewReader("--xyz\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nhi"))
			req.Header.Set("Content-Type", ct)
			req.SetBasicAuth(h.keys[alice], "X")
			if r := h.send(req); r.code >= 500 || r.code < 400 {
				t.Errorf("%s %s multipart %q: %d %s", tg[0], tg[1], ct, r.code, r.body)
			}
		}
	}
	// Over the multipart cap: 413.
	body, ct := multipartBody(t, [][2]string{{"body", "big"}}, map[string][]byte{"big.bin": bytes.Repeat([]byte("x"), 31<<20)})
	req, _ := http.NewRequest("POST", h.url+fmt.Sprintf("/api/v2/tickets/%d/reply", id), body)
	req.Header.Set("Content-Type", ct)
	req.SetBasicAuth(h.keys[alice], "X")
	r := h.send(req)
	want(t, r, http.StatusRequestEntityTooLarge)
}

// TestHostHeaderNotReflectedByDefault: without Options.BaseURL the
// absolute URLs (Link, attachment_url, Location) name the address the
// request arrived on, never a hostile Host header.
func TestHostHeaderNotReflectedByDefault(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.mail("jane@customers.test", "support@acme.test", "Q1", "host1@customers.test", "?")
	h.mail("jane@customers.test", "support@acme.test", "Q2", "host2@customers.test", "?")
	body, ct := multipartBody(t, [][2]string{{"body", "see attached"}}, map[string][]byte{"a.txt": []byte("data")})
	req, _ := http.NewRequest("POST", h.url+fmt.Sprintf("/api/v2/tickets/%d/notes", id), body)
	req.Header.Set("Content-Type", ct)
	req.SetBasicAuth(h.keys[alice], "X")
	want(t, h.send(req), http.StatusCreated)
	get := func(method, path, body string) resp {
		req, _ := http.NewRequest(method, h.url+path, strings.NewReader(body))
		req.Host = "evil.test"
		req.SetBasicAuth(h.keys[alice], "X")
		req.Header.Set("Content-Type", "application/json")
		r := h.send(req)
		for k, vs := range r.hdr {
			if strings.Contains(strings.Join(vs, " "), "evil.test") {
				t.Errorf("%s %s: header %s: %v", method, path, k, vs)
			}
		}
		if bytes.Contains(r.body, []byte("evil.test")) {
			t.Errorf("%s %s: body %s", method, path, r.body)
		}
		return r
	}
	if r := get("GET", "/api/v2/tickets?per_page=1", ""); !strings.HasPrefix(r.hdr.Get("Link"), "<"+h.url+"/api/v2/tickets?") {
		t.Errorf("Link %q, want it on %s", r.hdr.Get("Link"), h.url)
	}
	r := get("GET", fmt.Sprintf("/api/v2/tickets/%d?include=conversations", id), "")
	if !bytes.Contains(r.body, []byte(`"attachment_url":"`+h.url+`/api/v2/attachments/`)) {
		t.Errorf("attachment_url not on %s: %s", h.url, r.body)
	}
	get("GET", fmt.Sprintf("/api/v2/tickets/%d/conversations", id), "")
	r = get("POST", "/api/v2/tickets", `{"email":"x@y.test","subject":"s","description":"d"}`)
	if !strings.HasPrefix(r.hdr.Get("Location"), h.url+"/api/v2/tickets/") {
		t.Errorf("Location %q", r.hdr.Get("Location"))
	}
}
