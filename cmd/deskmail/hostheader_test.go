package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// hostileHost is the Host header an attacker sends, hoping to see it
// in links a victim follows.
const hostileHost = "evil.test"

// attachmentMail is a customer mail with one attachment.
func attachmentMail(id int) string {
	return fmt.Sprintf("From: Carl Customer <carl@customer.test>\r\nTo: support@acme.test\r\nSubject: Invoice %d\r\n"+
		"Message-ID: <inv-%d@customer.test>\r\nDate: Mon, 02 Mar 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee the invoice.\r\n"+
		"--b\r\nContent-Type: application/pdf; name=inv.pdf\r\nContent-Disposition: attachment; filename=inv.pdf\r\n"+
		"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJSBpbnZvaWNlCg==\r\n--b--\r\n", id, id)
}

// TestHostHeaderNeverReflected: with Host: evil.test on every request,
// no response of the list, show, conversations, contacts, attachment
// and create endpoints (nor an error) carries the name, in a header or
// the body; absolute URLs start with http.public_url.
func TestHostHeaderNeverReflected(t *testing.T) {
	const public = "https://help.acme.test/desk"
	d := startAPIDaemon(t, "http:\n  public_url: "+public+"/\n")
	for i := 1; i <= 2; i++ {
		if err := smtpSend(d.smtp, "carl@customer.test", "support@acme.test", attachmentMail(i)); err != nil {
			t.Fatal(err)
		}
	}
	call := func(method, path, body string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+d.http+path, strings.NewReader(body))
		req.Host = hostileHost
		req.Header.Set("X-Forwarded-Host", hostileHost)
		req.SetBasicAuth(d.key, "X")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for k, vs := range resp.Header {
			for _, v := range vs {
				if strings.Contains(strings.ToLower(v), hostileHost) {
					t.Errorf("%s %s: header %s: %s", method, path, k, v)
				}
			}
		}
		if strings.Contains(strings.ToLower(string(b)), hostileHost) {
			t.Errorf("%s %s: body reflects the Host header: %s", method, path, b)
		}
		return resp.StatusCode, resp.Header, string(b)
	}

	code, hdr, _ := call("GET", "/api/v2/tickets?per_page=1", "")
	if code != 200 || !strings.HasPrefix(hdr.Get("Link"), "<"+public+"/api/v2/tickets?") {
		t.Errorf("list: %d, Link %q", code, hdr.Get("Link"))
	}
	var tickets []struct{ ID int64 }
	_, _, body := call("GET", "/api/v2/tickets", "")
	if err := json.Unmarshal([]byte(body), &tickets); err != nil || len(tickets) != 2 {
		t.Fatalf("tickets %v: %s", err, body)
	}
	id := tickets[0].ID
	_, _, body = call("GET", fmt.Sprintf("/api/v2/tickets/%d?include=conversations,requester,stats", id), "")
	var shown struct {
		Attachments []struct {
			ID            int64  `json:"id"`
			AttachmentURL string `json:"attachment_url"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal([]byte(body), &shown); err != nil || len(shown.Attachments) != 1 {
		t.Fatalf("show: %v: %s", err, body)
	}
	att := shown.Attachments[0]
	if want := fmt.Sprintf("%s/api/v2/attachments/%d", public, att.ID); att.AttachmentURL != want {
		t.Errorf("attachment_url %q, want %q", att.AttachmentURL, want)
	}
	for _, p := range []string{
		fmt.Sprintf("/api/v2/tickets/%d/conversations?per_page=1", id),
		fmt.Sprintf("/api/v2/attachments/%d", att.ID),
		"/api/v2/contacts",
		"/api/v2/contacts?per_page=1",
		"/api/v2/agents/me",
		"/api/v2/ticket_fields",
		"/api/v2/tickets/999999",
		"/api/v2/nowhere",
		"/api",
	} {
		if code, _, _ := call("GET", p, ""); code >= 500 {
			t.Errorf("GET %s: %d", p, code)
		}
	}
	code, hdr, _ = call("POST", "/api/v2/tickets", `{"email":"dora@customer.test","subject":"By API","description":"Hello","status":2,"priority":1}`)
	if code != 201 || !strings.HasPrefix(hdr.Get("Location"), public+"/api/v2/tickets/") {
		t.Errorf("create: %d, Location %q", code, hdr.Get("Location"))
	}
	call("PATCH", "/api/v2/tickets", "")
}
