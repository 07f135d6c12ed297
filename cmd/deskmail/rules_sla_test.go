package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/sla"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/webhook"
)

// fixedClock is an sla.Clock standing still at now: the test moves it.
type fixedClock struct{ now time.Time }

func (c *fixedClock) Now() time.Time                         { return c.now }
func (c *fixedClock) After(d time.Duration) <-chan time.Time { return make(chan time.Time) }

const rulesSLAConfig = `database: %s
agents:
  - {email: alice@acme.test, name: Alice Agent, role: admin}
channels:
  - name: support
    addresses: [support@acme.test]
sla:
  policies:
    - {name: std, first_response: 1h, resolution: 8h}
webhooks:
  - name: crm
    url: http://127.0.0.1:9/hooks
    secret: "s"
    events: [ticket_created]
rules:
  - name: breached
    on: sla_breached
    then: {priority: urgent, add_tags: [breached], webhook: crm}
`

// TestSLABreachRule: with a fake clock two hours on, the scheduler
// escalates the missed first response, and the sla_breached rule acts
// in that transaction — once, however often the scheduler runs.
func TestSLABreachRule(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "deskmail.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(rulesSLAConfig, filepath.Join(dir, "d.db"))), 0o600); err != nil {
		t.Fatal(err)
	}
	ov := overrides{path: cfgFile}
	cfg, err := ov.load()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := newDaemon(ctx, cfg, ov, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	defer d.st.Close()
	g := d.gen.Load()
	msg := mailText("jane@customer.test", "support@acme.test", "Printer broken", "b-1@customer.test", "", "It jams.")
	res, err := g.pipeline.Ingest(ctx, []ingest.Raw{{Data: []byte(strings.ReplaceAll(msg, "\n", "\r\n")), Source: ingest.SourcePipe, Name: "b-1"}})
	if err != nil || len(res) != 1 || res[0].TicketID == nil {
		t.Fatalf("ingest: %v %+v", err, res)
	}
	id := *res[0].TicketID
	clock := &fixedClock{now: time.Now().Add(30 * time.Minute)}
	sched := &sla.Scheduler{Store: d.st, Tracker: g.tracker, Actions: slaActions{d: d}, Clock: clock}
	read := func() (*store.Ticket, []store.History, []store.WebhookDelivery) {
		t.Helper()
		var tk *store.Ticket
		var hist []store.History
		var hooks []store.WebhookDelivery
		err := d.st.Read(ctx, func(tx *store.Tx) error {
			var err error
			if tk, err = tx.Ticket(id); err != nil {
				return err
			}
			if hist, err = tx.TicketHistory(id); err != nil {
				return err
			}
			hooks, err = tx.WebhookDeliveries(100)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return tk, hist, hooks
	}
	if _, err := sched.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if tk, _, _ := read(); tk.Priority != 1 || tk.FrEscalated {
		t.Fatalf("escalated before its time: %+v", tk)
	}
	clock.now = time.Now().Add(2 * time.Hour)
	for range 3 {
		if _, err := sched.RunDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tk, hist, hooks := read()
	if !tk.FrEscalated || tk.Priority != 4 || strings.Join(tk.Tags, ",") != "breached" {
		t.Fatalf("after the breach: escalated %v priority %d tags %v", tk.FrEscalated, tk.Priority, tk.Tags)
	}
	runs := 0
	for _, h := range hist {
		if h.Action == "rule_applied" && h.Actor == "breached" && strings.Contains(h.Note, "on sla_breached") {
			runs++
		}
	}
	if runs != 1 {
		t.Errorf("the rule ran %d times: %+v", runs, hist)
	}
	var ruleHooks []webhook.Payload
	for _, h := range hooks {
		var p webhook.Payload
		if err := json.Unmarshal(h.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if p.Rule != nil {
			ruleHooks = append(ruleHooks, p)
		}
	}
	if len(ruleHooks) != 1 || *ruleHooks[0].Rule != "breached" || ruleHooks[0].Event != "sla_breached" ||
		ruleHooks[0].Breach == nil || ruleHooks[0].Breach.Target != "first_response" || ruleHooks[0].Ticket.Priority != 4 { // as the rule left it
		t.Errorf("rule webhooks %+v", ruleHooks)
	}
}

// TestSLAReloadRecomputes: after a reload that shortens the policy's
// first-response target, the open ticket's fr_due_by follows at once
// (no change to the ticket needed), and the scheduler escalates it.
func TestSLAReloadRecomputes(t *testing.T) {
	forEachDatabase(t, slaReloadRecomputesOn)
}

func slaReloadRecomputesOn(t *testing.T, db string) {
	d := &slaDaemon{newTrustDaemon(t, db)}
	conf := func(target string) {
		body := fmt.Sprintf(`database: deskmail.db
smtp: {hostname: deskmail.acme.test}
threading: {secret: "reload sla secret"}
agents:
  - {email: alice@acme.test, name: Alice Agent, role: admin}
outbound: {relay: %s, tls: none}
channels:
  - name: support
    addresses: [support@acme.test]
    send: {notification: false}
sla:
  policies:
    - {name: std, first_response: %s, resolution: 8h}
`, d.sink.addr, target)
		d.writeConfig(body)
	}
	conf("4h")
	d.start()
	d.send("jane@customer.test", "support@acme.test", mailText("Jane <jane@customer.test>", "support@acme.test", "Slow printer", "rl-1@customer.test", "", "Hi."))
	waitFor(t, "ticket 1", 10*time.Second, func() bool { return len(d.tickets()) == 1 })
	due := func() (time.Time, time.Time, bool) {
		var s struct {
			CreatedAt   time.Time `json:"created_at"`
			FrDueBy     time.Time `json:"fr_due_by"`
			FrEscalated bool      `json:"fr_escalated"`
		}
		out := deskmailCmd(t, d.bin, d.dir, "tickets", "show", "1", "--config", d.cfg, "--json")
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatal(err)
		}
		return s.CreatedAt, s.FrDueBy, s.FrEscalated
	}
	created, fr, _ := due()
	if fr.Sub(created) != 4*time.Hour {
		t.Fatalf("fr_due_by %s for a ticket created %s, want 4h later", fr, created)
	}
	conf("3s")
	if err := d.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload", 20*time.Second, func() bool {
		return strings.Contains(d.proc.stderr.String(), "reload: configuration applied")
	})
	if !strings.Contains(d.proc.stderr.String(), "clocks of open tickets recomputed") {
		t.Errorf("the recompute is not logged:\n%s", d.proc.stderr.String())
	}
	if _, fr, _ = due(); fr.Sub(created) != 3*time.Second {
		t.Errorf("after the reload fr_due_by is %s after creation, want 3s", fr.Sub(created))
	}
	d.waitEscalations(1, 1)
	if _, _, esc := due(); !esc {
		t.Errorf("not escalated after the new target passed")
	}
	d.proc.stop()
}
