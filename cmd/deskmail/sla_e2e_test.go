package main

import (
	"encoding/json"
	"fmt"
	"mime"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// slaE2EConfig has targets of a second or three, as an operator
// trying it out would write them.
const slaE2EConfig = `database: deskmail.db
smtp:
  hostname: deskmail.acme.test
  rate_per_minute: 100000
threading:
  secret: "e2e sla secret"
agents:
  - {email: alice@acme.test, name: Alice Agent, role: admin}
outbound:
  relay: %s
  tls: none
pipelines:
  - name: default
    statuses: [2, 3, 4, 5]
    agent_reply_status: unchanged
    close_resolved_after: 2s
channels:
  - name: support
    addresses: [support@acme.test]
    send: {closing_mail: true, notification: false}
  - name: sales
    addresses: [sales@acme.test]
    send: {notification: false}
sla:
  policies:
    - {name: fast, channels: [support], first_response: 1s, resolution: 2s}
    - {name: slow, channels: [sales], first_response: 3s, resolution: 1h}
`

type slaDaemon struct {
	*trustDaemon
}

func (d *slaDaemon) start() {
	d.t.Helper()
	d.proc, d.smtp, d.http = startServe(d.t, d.bin, d.dir, "--config", d.cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
}

// escalations returns the escalation mails about ticket id that
// reached alice at the relay.
func (d *slaDaemon) escalations(id int64) []sunkMail {
	var out []sunkMail
	for _, m := range d.sink.mails("alice@acme.test") {
		if m.Msg != nil && strings.Contains(subjectOf(m), fmt.Sprintf("Escalated [#%d]", id)) {
			out = append(out, m)
		}
	}
	return out
}

// waitEscalations waits for n escalation mails about ticket id, and
// says what the daemon did when they do not come.
func (d *slaDaemon) waitEscalations(id int64, n int) {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(d.escalations(id)) < n {
		if time.Now().After(deadline) {
			d.t.Fatalf("%d escalation mails for ticket %d, want %d\noutbox:\n%s\nticket:\n%s\nstderr:\n%s", len(d.escalations(id)), id, n,
				deskmailCmd(d.t, d.bin, d.dir, "outbox", "list", "--config", d.cfg, "--json"),
				deskmailCmd(d.t, d.bin, d.dir, "tickets", "show", fmt.Sprint(id), "--config", d.cfg, "--json"), d.proc.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *slaDaemon) history(id int64, action string) int {
	n := 0
	for _, h := range d.ticket(id).History {
		if h.Action == action {
			n++
		}
	}
	return n
}

// TestSLAEndToEnd runs the clock through the built binary: mail in over
// SMTP, escalation mail out at a go-smtp relay sink, due dates and
// flags read back through the API (Freshdesk's field names) and the
// CLI; a restart fires nothing twice, a breach that fell due while the
// daemon was stopped fires once when it starts, the first agent reply
// meets the first-response target, and a resolved ticket is closed
// automatically with one closing mail in all.
func TestSLAEndToEnd(t *testing.T) {
	forEachDatabase(t, slaEndToEndOn)
}

func slaEndToEndOn(t *testing.T, db string) {
	d := &slaDaemon{newTrustDaemon(t, db)}
	d.writeConfig(fmt.Sprintf(slaE2EConfig, d.sink.addr))
	d.start()
	d.key = strings.TrimSpace(deskmailCmd(t, d.bin, d.dir, "agents", "key", "alice@acme.test", "--config", d.cfg))

	// 1. Both targets of the fast policy are missed: one mail each.
	d.send("jane@customer.test", "support@acme.test", mailText("Jane <jane@customer.test>", "support@acme.test", "Printer broken", "sla-1@customer.test", "", "It jams."))
	var api struct {
		ID          int64   `json:"id"`
		Status      int     `json:"status"`
		DueBy       *string `json:"due_by"`
		FrDueBy     *string `json:"fr_due_by"`
		FrEscalated bool    `json:"fr_escalated"`
		IsEscalated bool    `json:"is_escalated"`
		CreatedAt   string  `json:"created_at"`
		Stats       struct {
			FirstRespondedAt *string `json:"first_responded_at"`
		} `json:"stats"`
	}
	d.api("GET", "/api/v2/tickets/1?include=stats", nil, &api)
	created, _ := time.Parse(time.RFC3339, api.CreatedAt)
	if api.FrDueBy == nil || api.DueBy == nil || api.FrEscalated || api.IsEscalated {
		t.Fatalf("new ticket in the API: %+v", api)
	}
	frDue, _ := time.Parse(time.RFC3339, *api.FrDueBy)
	if frDue.Sub(created) != time.Second {
		t.Errorf("fr_due_by %s for created_at %s", *api.FrDueBy, api.CreatedAt)
	}
	d.waitEscalations(1, 2)
	esc := d.escalations(1)
	subjects := subjectOf(esc[0]) + " | " + subjectOf(esc[1])
	if !strings.Contains(subjects, "first response overdue") || !strings.Contains(subjects, "resolution overdue") {
		t.Errorf("escalation subjects: %s", subjects)
	}
	if !strings.Contains(esc[0].Body, `"fast"`) {
		t.Errorf("escalation mail does not name the policy:\n%s", esc[0].Body)
	}
	d.api("GET", "/api/v2/tickets/1?include=stats", nil, &api)
	if !api.FrEscalated || !api.IsEscalated {
		t.Errorf("after the breaches: fr_escalated=%v is_escalated=%v", api.FrEscalated, api.IsEscalated)
	}
	if n := d.history(1, "sla_escalated"); n != 2 {
		t.Errorf("ticket 1: %d sla_escalated history entries, want 2", n)
	}
	var cli slaShown
	if err := json.Unmarshal([]byte(deskmailCmd(t, d.bin, d.dir, "tickets", "show", "1", "--config", d.cfg, "--json")), &cli); err != nil {
		t.Fatal(err)
	}
	if !cli.FrEscalated || !cli.IsEscalated || cli.FrDueBy == nil || !cli.FrDueBy.Truncate(time.Second).Equal(frDue) {
		t.Errorf("tickets show: %+v", cli)
	}

	// 2. A restart fires nothing twice.
	d.proc.stop()
	d.start()
	time.Sleep(1500 * time.Millisecond)
	if n := len(d.escalations(1)); n != 2 {
		t.Errorf("after a restart: %d escalation mails for ticket 1, want 2", n)
	}

	// 3. A breach that fell due while deskmail was stopped fires once,
	// when it starts. The mail comes in through `deskmail ingest`.
	d.proc.stop()
	raw := mailText("Bob <bob@customer.test>", "support@acme.test", "Invoice wrong", "sla-2@customer.test", "", "Twice billed.")
	cmdIn := raw
	out := deskmailCmdIn(t, d.bin, d.dir, cmdIn, "ingest", "--config", d.cfg, "-")
	if !strings.Contains(out, `"ticket_id":2`) {
		t.Fatalf("ingest: %s", out)
	}
	time.Sleep(2500 * time.Millisecond)
	d.start()
	d.waitEscalations(2, 2)
	time.Sleep(1200 * time.Millisecond)
	if n := len(d.escalations(2)); n != 2 {
		t.Errorf("ticket 2: %d escalation mails, want 2", n)
	}

	// 4. The first agent reply (API) meets the first-response target.
	d.send("carol@customer.test", "sales@acme.test", mailText("Carol <carol@customer.test>", "sales@acme.test", "Quote please", "sla-3@customer.test", "", "For 10 seats."))
	d.api("POST", "/api/v2/tickets/3/reply", map[string]any{"body": "On its way."}, nil)
	time.Sleep(3500 * time.Millisecond)
	d.api("GET", "/api/v2/tickets/3?include=stats", nil, &api)
	if api.FrEscalated || api.Stats.FirstRespondedAt == nil || len(d.escalations(3)) != 0 {
		t.Errorf("ticket 3 answered in time: fr_escalated=%v first_responded_at=%v, %d escalation mails", api.FrEscalated, api.Stats.FirstRespondedAt, len(d.escalations(3)))
	}

	// 5. Auto-close: resolved (by another process, the CLI) and closed
	// 2s later by the daemon; the customer had one closing mail, at
	// resolution. A reply after that opens a follow-up.
	deskmailCmd(t, d.bin, d.dir, "tickets", "update", "1", "--config", d.cfg, "--status", "4")
	waitFor(t, "ticket 1 closed automatically", 10*time.Second, func() bool { return d.ticket(1).Status == 5 })
	if n := d.history(1, "auto_closed"); n != 1 {
		t.Errorf("ticket 1: %d auto_closed history entries", n)
	}
	time.Sleep(500 * time.Millisecond)
	closing := 0
	for _, m := range d.sink.mails("jane@customer.test") {
		if m.Msg != nil && m.Msg.Header.Get("Auto-Submitted") == "auto-generated" {
			closing++
		}
	}
	if closing != 1 {
		t.Errorf("jane got %d closing mails, want 1", closing)
	}
	d.send("jane@customer.test", "support@acme.test", mailText("Jane <jane@customer.test>", "support@acme.test", "Re: [#1] Printer broken", "sla-4@customer.test",
		"In-Reply-To: <sla-1@customer.test>\n", "It jams again."))
	list := d.tickets()
	if last := list[len(list)-1]; last.ID != 4 {
		t.Errorf("reply to the auto-closed ticket: tickets %+v", list)
	}
	d.proc.stop()
}

// subjectOf is a delivered mail's decoded Subject.
func subjectOf(m sunkMail) string {
	s, err := new(mime.WordDecoder).DecodeHeader(m.Msg.Header.Get("Subject"))
	if err != nil {
		return m.Msg.Header.Get("Subject")
	}
	return s
}

// deskmailCmdIn is deskmailCmd with stdin.
func deskmailCmdIn(t *testing.T, bin, dir, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("deskmail %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}
