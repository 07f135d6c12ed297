package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/store"
)

func ticketPath(id int64) string { return "/tickets/" + strconv.FormatInt(id, 10) }

// TestChannelScoping: carol (group sales) sees the tickets of sales
// and of channels without a group, never billing's: not in the queue,
// 403 on the page, its attachment, a reply, a note, an update and the
// billing filter — the API's rule (api.Scopes). Admins see all.
func TestChannelScoping(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	sales := h.mail("buyer@example.com", "sales@acme.test", "Quote for 40 seats", "")
	support := h.mail("user@example.com", "support@acme.test", "Printer broken", "")
	billing := h.mail("payer@example.com", "billing@acme.test", "Invoice wrong",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n"+
			"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n\r\n%PDF-1.4 secret\r\n--b--\r\n")
	var attID int64
	for _, c := range h.conversations(billing) {
		for _, f := range c.Files {
			attID = f.ID
		}
	}
	if attID == 0 {
		t.Fatal("no attachment stored")
	}
	carol := h.browser()
	carol.mustSignIn("carol@agents.test")
	q := carol.get("/tickets")
	if !strings.Contains(q.body, "Quote for 40 seats") || !strings.Contains(q.body, "Printer broken") || strings.Contains(q.body, "Invoice wrong") {
		t.Fatalf("carol's queue:\n%s", q.body)
	}
	if strings.Contains(q.body, `value="billing"`) {
		t.Error("billing offered as a filter")
	}
	tok := csrf(t, q.body)
	for what, r := range map[string]response{
		"page":       carol.get(ticketPath(billing)),
		"attachment": carol.get("/attachments/" + strconv.FormatInt(attID, 10)),
		"filter":     carol.get("/tickets?channel=billing"),
		"reply":      carol.post(ticketPath(billing)+"/reply", url.Values{"csrf": {tok}, "body": {"hello"}}),
		"note":       carol.post(ticketPath(billing)+"/note", url.Values{"csrf": {tok}, "body": {"hello"}}),
		"update":     carol.post(ticketPath(billing)+"/update", url.Values{"csrf": {tok}, "status": {"5"}}),
	} {
		if r.code != http.StatusForbidden || strings.Contains(r.body, "secret") {
			t.Errorf("%s of a billing ticket: %d", what, r.code)
		}
	}
	if n := len(h.conversations(billing)); n != 1 {
		t.Errorf("billing ticket changed: %d conversations", n)
	}
	for _, id := range []int64{sales, support} {
		if r := carol.get(ticketPath(id)); r.code != 200 {
			t.Errorf("ticket %d: %d", id, r.code)
		}
	}
	root := h.browser()
	root.mustSignIn("root@agents.test")
	if r := root.get(ticketPath(billing)); r.code != 200 {
		t.Fatalf("admin: %d", r.code)
	}
	att := root.get("/attachments/" + strconv.FormatInt(attID, 10))
	if att.code != 200 || !strings.HasPrefix(att.hdr.Get("Content-Disposition"), "attachment") || att.hdr.Get("X-Content-Type-Options") != "nosniff" ||
		att.hdr.Get("Content-Type") != "application/octet-stream" || !strings.Contains(att.body, "%PDF") {
		t.Fatalf("attachment download: %d %v", att.code, att.hdr)
	}
}

// TestReplyNoteUpdate: a reply is queued in the outbox threaded to the
// customer's mail (In-Reply-To and References name it) and applies the
// agent-reply rule (Pending); a note is private; status, priority and
// assignee go through the lifecycle with history; an invalid status is
// refused.
func TestReplyNoteUpdate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	id := h.mail("customer@example.com", "support@acme.test", "Printer broken", "")
	custID := h.conversations(id)[0].MessageID
	b := h.browser()
	b.mustSignIn("alice@agents.test")
	page := b.get(ticketPath(id))
	if page.code != 200 || !strings.Contains(page.body, "Hello, it is broken.") {
		t.Fatalf("ticket page: %d\n%s", page.code, page.body)
	}
	tok := csrf(t, page.body)
	r := b.post(ticketPath(id)+"/reply", url.Values{"csrf": {tok}, "body": {"Please restart it.\nThen tell us."}})
	if r.code != http.StatusSeeOther || r.hdr.Get("Location") != ticketPath(id)+"?done=reply.sent" {
		t.Fatalf("reply: %d %s %s", r.code, r.hdr.Get("Location"), r.body)
	}
	var mails []store.OutboxMail
	var tk *store.Ticket
	err := h.st.Read(h.ctx, func(tx *store.Tx) error {
		var err error
		if mails, err = tx.ListOutbox(store.OutboxFilter{TicketID: id, Kind: "agent_reply", WithRaw: true}); err != nil {
			return err
		}
		tk, err = tx.Ticket(id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(mails) != 1 {
		t.Fatalf("agent replies queued: %d", len(mails))
	}
	raw := string(mails[0].Raw)
	if !strings.Contains(raw, "In-Reply-To: <"+custID+">") || !regexp.MustCompile(`References:[^\n]*<`+regexp.QuoteMeta(custID)+`>`).MatchString(raw) ||
		!strings.Contains(raw, "Please restart it.") || mails[0].RcptTo[0] != "customer@example.com" {
		t.Fatalf("queued reply:\n%s", raw)
	}
	if tk.Status != 3 {
		t.Errorf("status after the agent's reply: %d", tk.Status)
	}
	if r := b.post(ticketPath(id)+"/note", url.Values{"csrf": {tok}, "body": {"Spooler was stuck."}}); r.code != http.StatusSeeOther {
		t.Fatalf("note: %d", r.code)
	}
	convs := h.conversations(id)
	if n := convs[len(convs)-1]; n.Kind != "note" || !n.Private {
		t.Fatalf("note stored as %+v", n)
	}
	if p := b.get(ticketPath(id)); !strings.Contains(p.body, "Spooler was stuck.") || !strings.Contains(p.body, "badge private") {
		t.Error("note not shown as private")
	}
	var aliceID int64
	h.st.Read(h.ctx, func(tx *store.Tx) error {
		a, err := tx.AgentByEmail("alice@agents.test")
		aliceID = a.ID
		return err
	})
	r = b.post(ticketPath(id)+"/update", url.Values{"csrf": {tok}, "status": {"4"}, "priority": {"3"}, "responder": {strconv.FormatInt(aliceID, 10)}})
	if r.code != http.StatusSeeOther {
		t.Fatalf("update: %d %s", r.code, r.body)
	}
	var hist []store.History
	h.st.Read(h.ctx, func(tx *store.Tx) error {
		var err error
		if tk, err = tx.Ticket(id); err != nil {
			return err
		}
		hist, err = tx.TicketHistory(id)
		return err
	})
	if tk.Status != 4 || tk.Priority != 3 || tk.ResponderID == nil || *tk.ResponderID != aliceID || tk.ResolvedAt == nil {
		t.Fatalf("after update: %+v", tk)
	}
	fields := map[string]bool{}
	for _, e := range hist {
		if e.Field != "" {
			fields[e.Field] = true
			// Each change is the agent's own (not an API key's).
			if e.ActorType != "agent" || e.Actor == "" {
				t.Errorf("history of %s by %s %q, want the agent", e.Field, e.ActorType, e.Actor)
			}
		}
	}
	if !fields["status"] || !fields["priority"] || !fields["responder"] {
		t.Errorf("history fields %v", fields)
	}
	noted := false
	for _, e := range hist {
		noted = noted || (e.Action == "note_added" && e.ActorType == "agent" && strings.Contains(e.Note, "through the console"))
	}
	if !noted {
		t.Errorf("no note_added through the console in %+v", hist)
	}
	if r := b.post(ticketPath(id)+"/update", url.Values{"csrf": {tok}, "status": {"99"}}); r.code != http.StatusBadRequest {
		t.Errorf("status 99: %d", r.code)
	}
	if r := b.post(ticketPath(id)+"/reply", url.Values{"csrf": {tok}, "body": {"  "}}); r.code != http.StatusBadRequest {
		t.Errorf("empty reply: %d", r.code)
	}
}

// TestQueueFilters: status, channel, assignee, priority and search
// (subject, requester) filter the queue; pages hold 25 tickets.
func TestQueueFilters(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	for i := 0; i < 27; i++ {
		h.mail(fmt.Sprintf("bulk%d@example.com", i), "support@acme.test", fmt.Sprintf("Bulk question %d", i), "")
	}
	special := h.mail("Zoé.Martin@example.org", "billing@acme.test", "Refund for order 4711", "")
	b := h.browser()
	b.mustSignIn("root@agents.test")
	count := func(path string) int {
		t.Helper()
		r := b.get(path)
		if r.code != 200 {
			t.Fatalf("%s: %d", path, r.code)
		}
		return strings.Count(r.body, `<tr class="cat-`)
	}
	if n := count("/tickets"); n != 25 {
		t.Errorf("first page: %d", n)
	}
	p1 := b.get("/tickets")
	if !strings.Contains(p1.body, `rel="next" href="/tickets?page=2"`) {
		t.Fatalf("no next link:\n%s", p1.body)
	}
	if n := count("/tickets?page=2"); n != 3 {
		t.Errorf("second page: %d", n)
	}
	if n := count("/tickets?channel=billing"); n != 1 {
		t.Errorf("billing: %d", n)
	}
	if n := count("/tickets?q=order+4711"); n != 1 {
		t.Errorf("subject search: %d", n)
	}
	if n := count("/tickets?q=martin%40example"); n != 1 {
		t.Errorf("requester search: %d", n)
	}
	if n := count("/tickets?q=100%25"); n != 0 {
		t.Errorf("wildcard search: %d", n)
	}
	tok := csrf(t, p1.body)
	b.post(ticketPath(special)+"/update", url.Values{"csrf": {tok}, "priority": {"4"}, "status": {"3"}})
	if n := count("/tickets?priority=4"); n != 1 {
		t.Errorf("urgent: %d", n)
	}
	if n := count("/tickets?status=3"); n != 1 {
		t.Errorf("pending: %d", n)
	}
	if n := count("/tickets?assignee=none&channel=support&status=2"); n != 25 {
		t.Errorf("unassigned open support: %d", n)
	}
	if n := count("/tickets?assignee=me"); n != 0 {
		t.Errorf("mine: %d", n)
	}
	if n := count("/tickets?sla=breached"); n != 0 {
		t.Errorf("SLA missed: %d", n)
	}
	if r := b.get("/tickets?status=abc"); r.code != http.StatusBadRequest {
		t.Errorf("bad status: %d", r.code)
	}
}

// TestHostileMailRendering: script, event handlers, javascript: URLs,
// CSS and remote images in a customer's HTML come out inert: no
// script element or handler, no javascript: link, no style element,
// remote images as links, quoted history folded.
func TestHostileMailRendering(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	body := `<html><head><style>body{background:url(https://evil.test/x.png)}</style><script>window.pwned=1</script></head><body>` +
		`<p onclick="window.pwned=2">Hello <b onmouseover="window.pwned=3">there</b></p>` +
		`<a href="javascript:window.pwned=4">click</a> <a href="https://example.com/help">help</a>` +
		`<img src="https://tracker.evil.test/pixel.gif" alt="logo" onerror="window.pwned=5">` +
		`<svg onload="window.pwned=6"><script>window.pwned=7</script></svg>` +
		`<iframe src="https://evil.test/"></iframe><form action="https://evil.test/"><input name=x></form>` +
		`<div style="background-image:url(javascript:alert(1))">styled</div>` +
		`<p id="csrf" class="flash">Reply queued for sending.</p>` +
		`<blockquote>On Monday you wrote: old stuff</blockquote></body></html>`
	id := h.mail("mallory@example.com", "support@acme.test", `<script>window.pwned=8</script>Help`,
		"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"+body+"\r\n")
	b := h.browser()
	b.mustSignIn("root@agents.test")
	page := b.get(ticketPath(id))
	if page.code != 200 {
		t.Fatalf("page: %d", page.code)
	}
	lower := strings.ToLower(page.body)
	if n := strings.Count(lower, "<script"); n != 1 { // our own script tag
		t.Errorf("%d script elements", n)
	}
	for _, bad := range []string{`id="csrf"`, `class="flash">Reply queued`, "onclick", "onmouseover", "onerror", "onload", "javascript:", "<style", "<iframe", "<form action=\"https://evil", "<svg", `src="https://tracker`} {
		if strings.Contains(lower, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, want := range []string{`href="https://tracker.evil.test/pixel.gif"`, `class="remote-image"`, `<details class="quoted"><summary>Quoted text</summary><blockquote>`,
		`&lt;script&gt;window.pwned=8&lt;/script&gt;Help`, `href="https://example.com/help"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
