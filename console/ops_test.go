package console_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deskmail/deskmail/opsreport"
	"github.com/deskmail/deskmail/store"
)

// TestOpsDashboard: admins only; the numbers are opsreport's (what
// deskmail status prints); a failing channel shows its error; retry,
// cancel, download and re-process of raw mail, unflag — each a POST
// with the CSRF token.
func TestOpsDashboard(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	id := h.mail("customer@example.com", "support@acme.test", "Printer broken", "")
	good := "From: Late <late@example.com>\r\nTo: support@acme.test\r\nSubject: Parsed after the fix\r\nMessage-ID: <late-1@example.com>\r\n\r\nhello\r\n"
	var rawID, failedOutbox int64
	err := h.st.Write(h.ctx, func(tx *store.Tx) error {
		if err := tx.RecordChannelError("mailbox", time.Now(), "LOGIN failed: invalid credentials"); err != nil {
			return err
		}
		var err error
		if rawID, err = tx.AddRaw(&store.RawMessage{Source: "smtp", Name: "q1", Data: []byte(good), State: "failed", Error: "threading failed: disk"}); err != nil {
			return err
		}
		mails, err := tx.ListOutbox(store.OutboxFilter{TicketID: id})
		if err != nil || len(mails) == 0 {
			t.Fatalf("no confirmation queued: %v", err)
		}
		failedOutbox = mails[0].ID
		if err := tx.MarkOutboxFailed(failedOutbox, "550 5.1.1 user unknown"); err != nil {
			return err
		}
		if _, err = tx.MarkBouncing("customer@example.com", store.BounceFlag{Reason: "mail bounced: 5.1.1", Status: "5.1.1"}); err != nil {
			return err
		}
		missed := time.Now().Add(-time.Hour)
		return tx.PutTicketSLA(&store.TicketSLA{TicketID: id, Policy: "gold", Priority: 1, Category: "open", FrDueAt: &missed, FrEscalatedAt: &missed})
	})
	if err != nil {
		t.Fatal(err)
	}
	alice := h.browser()
	alice.mustSignIn("alice@agents.test")
	if r := alice.get("/ops"); r.code != http.StatusForbidden {
		t.Fatalf("agent on /ops: %d", r.code)
	}
	root := h.browser()
	root.mustSignIn("root@agents.test")
	page := root.get("/ops")
	if page.code != 200 {
		t.Fatalf("ops: %d\n%s", page.code, page.body)
	}
	rep, err := opsreport.Read(h.ctx, h.st, h.cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	nums := pageNumbers(t, page.body)
	for key, want := range map[string]int{"outbox.queued": rep.Outbox.Queued, "outbox.failed": rep.Outbox.Failed, "failed_messages": rep.FailedMessages,
		"bounces.bouncing_contacts": rep.Bounces.BouncingContacts, "imap_set_aside": rep.IMAPSetAside} {
		if nums[key] != want {
			t.Errorf("%s: page %d, report %d", key, nums[key], want)
		}
	}
	if rep.Outbox.Failed != 1 || rep.FailedMessages != 1 || rep.Bounces.BouncingContacts != 1 {
		t.Fatalf("report %+v", rep)
	}
	for _, want := range []string{"LOGIN failed: invalid credentials", "Instances serving this database (sqlite)", "550 5.1.1 user unknown", "threading failed: disk", "customer@example.com",
		`<td data-label="Subject"><a href="/tickets/` + strconv.FormatInt(id, 10) + `">Printer broken</a>`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("ops page lacks %q", want)
		}
	}
	if q := root.get("/tickets?sla=breached"); strings.Count(q.body, `<tr class="cat-`) != 1 || !strings.Contains(q.body, "escalated") {
		t.Error("queue of missed SLA targets")
	}
	tok := csrf(t, page.body)
	if r := root.post("/ops/outbox/"+strconv.FormatInt(failedOutbox, 10)+"/retry", url.Values{}); r.code != http.StatusForbidden {
		t.Errorf("retry without token: %d", r.code)
	}
	if r := root.post("/ops/outbox/"+strconv.FormatInt(failedOutbox, 10)+"/retry", url.Values{"csrf": {tok}}); r.code != http.StatusSeeOther {
		t.Fatalf("retry: %d %s", r.code, r.body)
	}
	var m *store.OutboxMail
	h.st.Read(h.ctx, func(tx *store.Tx) error { m, err = tx.OutboxMailByID(failedOutbox); return err })
	if m.State != "queued" || m.Attempts != 0 {
		t.Fatalf("after retry: %s %d", m.State, m.Attempts)
	}
	if r := root.post("/ops/outbox/"+strconv.FormatInt(failedOutbox, 10)+"/cancel", url.Values{"csrf": {tok}}); r.code != http.StatusSeeOther {
		t.Fatalf("cancel: %d", r.code)
	}
	h.st.Read(h.ctx, func(tx *store.Tx) error { m, err = tx.OutboxMailByID(failedOutbox); return err })
	if m.State != "suppressed" || !strings.Contains(m.LastError, "root@agents.test") {
		t.Fatalf("after cancel: %s %q", m.State, m.LastError)
	}
	dl := root.get("/ops/raw/" + strconv.FormatInt(rawID, 10))
	if dl.code != 200 || dl.body != good || !strings.HasPrefix(dl.hdr.Get("Content-Disposition"), "attachment") {
		t.Fatalf("raw download: %d %v", dl.code, dl.hdr)
	}
	if r := alice.get("/ops/raw/" + strconv.FormatInt(rawID, 10)); r.code != http.StatusForbidden {
		t.Errorf("agent downloads raw mail: %d", r.code)
	}
	r := root.post("/ops/raw/"+strconv.FormatInt(rawID, 10)+"/reprocess", url.Values{"csrf": {tok}})
	if r.code != 200 || !strings.Contains(r.body, "Re-processed: created") {
		t.Fatalf("reprocess: %d\n%s", r.code, r.body)
	}
	rep, _ = opsreport.Read(h.ctx, h.st, h.cfg, time.Now())
	if rep.FailedMessages != 0 {
		t.Errorf("failed messages after re-processing: %d", rep.FailedMessages)
	}
	if q := root.get("/tickets?q=Parsed+after"); !strings.Contains(q.body, "Parsed after the fix") {
		t.Error("re-processed mail made no ticket")
	}
	if r := root.post("/ops/raw/"+strconv.FormatInt(rawID, 10)+"/reprocess", url.Values{"csrf": {tok}}); r.code != http.StatusNotFound {
		t.Errorf("second re-process: %d", r.code)
	}
	if r := root.post("/ops/contacts/unflag", url.Values{"csrf": {tok}, "email": {"customer@example.com"}}); r.code != http.StatusSeeOther {
		t.Fatalf("unflag: %d", r.code)
	}
	rep, _ = opsreport.Read(h.ctx, h.st, h.cfg, time.Now())
	if rep.Bounces.BouncingContacts != 0 {
		t.Error("still bouncing")
	}
	if p := root.get("/ops"); pageNumbers(t, p.body)["failed_messages"] != 0 || !strings.Contains(p.body, `class="bad"`) {
		t.Error("dashboard after the actions")
	}
}

var dataN = regexp.MustCompile(`data-n="([a-z_.]+)">(\d+)<`)

// pageNumbers reads the dashboard's summary numbers (data-n).
func pageNumbers(t *testing.T, body string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range dataN.FindAllStringSubmatch(body, -1) {
		n, _ := strconv.Atoi(m[2])
		if _, ok := out[m[1]]; !ok {
			out[m[1]] = n
		}
	}
	return out
}
