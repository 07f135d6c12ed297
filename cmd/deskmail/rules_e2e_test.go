package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/webhook"
)

// rulesE2EConfig has the seed's three-line rule (a private note moves
// the ticket to Pending), a rule on the sender's domain and subject
// that calls a webhook, and one on status_changed.
const rulesE2EConfig = `database: deskmail.db
smtp:
  hostname: deskmail.acme.test
  rate_per_minute: 100000
threading:
  secret: "e2e rules secret"
  trusted_auth_servers: [mx.acme.test]
agents:
  - {email: alice@acme.test, name: Alice Agent, role: admin}
outbound:
  relay: %s
  tls: none
channels:
  - name: support
    addresses: [support@acme.test]
webhooks:
  - name: crm
    url: %s/hooks/deskmail
    secret: "rule hook secret"
    events: [sla_breached]
  - name: ops
    url: %s/hooks/ops
    secret: "rule hook secret"
    events: [status_changed, ticket_closed]
rules:
  - on: note_added
    then: {status: pending}
  - name: vip
    on: ticket_created
    if: {from: "@bigcorp.test", subject_contains: urgent}
    then: {priority: urgent, add_tags: [vip], webhook: crm}
  - name: waiting
    on: status_changed
    if: {status: pending}
    then: {add_tags: [waiting], webhook: crm}
`

// hookReceiver is a webhook endpoint that is down (503) until up is
// called, and keeps every signed delivery it accepted.
type hookReceiver struct {
	srv      *httptest.Server
	secret   []byte
	mu       sync.Mutex
	down     bool
	accepted map[string]webhook.Payload
	repeats  int
	badSig   int
	refused  int
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{secret: []byte(secret), down: true, accepted: map[string]webhook.Payload{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.down {
			h.refused++
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if !webhook.Verify(h.secret, body, r.Header.Get("X-Deskmail-Signature")) {
			h.badSig++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var p webhook.Payload
		if err := json.Unmarshal(body, &p); err != nil || p.Event != r.Header.Get("X-Deskmail-Event") {
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		if _, dup := h.accepted[p.DeliveryID]; dup {
			h.repeats++
		}
		h.accepted[p.DeliveryID] = p
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) up() {
	h.mu.Lock()
	h.down = false
	h.mu.Unlock()
}

// got lists the accepted deliveries as "rule:event:ticket", sorted.
func (h *hookReceiver) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, p := range h.accepted {
		rule := "-"
		if p.Rule != nil {
			rule = *p.Rule
		}
		out = append(out, fmt.Sprintf("%s:%s:%d", rule, p.Event, p.Ticket.ID))
	}
	sort.Strings(out)
	return out
}

// TestRulesEndToEnd drives the rules through the built daemon: mail in
// over SMTP, a private note by the API and by an agent's #note mail
// command move the ticket to Pending (read back with the CLI, history
// naming the rule), and a webhook receiver that is down for a while
// gets every rule event (and the status changes and the close it
// subscribed to) once, signed.
func TestRulesEndToEnd(t *testing.T) {
	forEachDatabase(t, rulesEndToEndOn)
}

func rulesEndToEndOn(t *testing.T, db string) {
	hooks := newHookReceiver(t, "rule hook secret")
	d := &slaDaemon{newTrustDaemon(t, db)}
	d.writeConfig(fmt.Sprintf(rulesE2EConfig, d.sink.addr, hooks.srv.URL, hooks.srv.URL))
	d.start()
	d.key = strings.TrimSpace(deskmailCmd(t, d.bin, d.dir, "agents", "key", "alice@acme.test", "--config", d.cfg))

	// Ticket 1: the vip rule acts on the new ticket in its transaction.
	d.send("ceo@bigcorp.test", "support@acme.test", mailText("CEO <ceo@bigcorp.test>", "support@acme.test", "URGENT: site down", "r-1@bigcorp.test", "", "Help."))
	// Ticket 2: an ordinary customer; the vip rule does not match.
	d.send("jane@customer.test", "support@acme.test", mailText("Jane <jane@customer.test>", "support@acme.test", "Urgent question", "r-2@customer.test", "", "Hi."))
	waitFor(t, "two tickets", 10*time.Second, func() bool { return len(d.tickets()) == 2 })
	tk := d.ticket(1)
	if tk.Priority != 4 || tk.Status != 2 || !tk.has("rule_applied") {
		t.Fatalf("vip rule on ticket 1: priority %d status %d history %+v", tk.Priority, tk.Status, tk.History)
	}
	if tk2 := d.ticket(2); tk2.Priority != 1 || tk2.has("rule_applied") {
		t.Fatalf("vip rule matched jane's ticket: %+v", tk2)
	}

	// A private note through the API: the three-line rule sets Pending.
	d.api("POST", "/api/v2/tickets/1/notes", map[string]any{"body": "Checking the logs.", "private": true}, nil)
	var api struct {
		Status int      `json:"status"`
		Tags   []string `json:"tags"`
	}
	d.api("GET", "/api/v2/tickets/1", nil, &api)
	if api.Status != 3 || strings.Join(api.Tags, ",") != "vip,waiting" {
		t.Fatalf("after the API note: %+v", api)
	}
	ruleNamed(d, 1, "rule 1")

	// An agent's #note mail command on ticket 2 (proven by the border's
	// Authentication-Results): the same rule, through the mail path.
	d.send("alice@acme.test", "support@acme.test", mailText("Alice Agent <alice@acme.test>", "support@acme.test", "Re: Urgent question", "r-3@acme.test",
		"Authentication-Results: mx.acme.test; dkim=pass header.i=alice@acme.test\nIn-Reply-To: <r-2@customer.test>\n", "#note\nAsked billing."))
	waitFor(t, "ticket 2 pending", 10*time.Second, func() bool { return d.ticket(2).Status == 3 })
	ruleNamed(d, 2, "rule 1")

	// Ticket 1 resolved through the API, then closed by the CLI: the
	// ops webhook hears both status changes and the close (no second
	// closing mail is due, the webhook is).
	d.api("PUT", "/api/v2/tickets/1", map[string]any{"status": 4}, nil)
	deskmailCmd(t, d.bin, d.dir, "tickets", "update", "1", "--config", d.cfg, "--status", "5")

	// The receiver was down for all of it; every event waits.
	var st struct {
		Webhooks struct {
			Queued int `json:"queued"`
			Sent   int `json:"sent"`
		} `json:"webhooks"`
	}
	out := deskmailCmd(t, d.bin, d.dir, "status", "--config", d.cfg, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Webhooks.Queued != 8 || st.Webhooks.Sent != 0 {
		t.Errorf("status while the receiver is down: %s", out)
	}
	hooks.up()
	want := []string{"-:status_changed:1", "-:status_changed:1", "-:status_changed:1", "-:status_changed:2", "-:ticket_closed:1",
		"vip:ticket_created:1", "waiting:status_changed:1", "waiting:status_changed:2"}
	waitFor(t, "eight webhooks", 30*time.Second, func() bool { return len(hooks.got()) >= len(want) })
	time.Sleep(1500 * time.Millisecond) // nothing more may come
	if got := hooks.got(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("webhooks received %v, want %v", got, want)
	}
	hooks.mu.Lock()
	if hooks.repeats != 0 || hooks.badSig != 0 || hooks.refused == 0 {
		t.Errorf("repeats %d, bad signatures %d, refused while down %d", hooks.repeats, hooks.badSig, hooks.refused)
	}
	hooks.mu.Unlock()
	d.proc.stop()
}

// ruleNamed checks that ticket id's move to Pending is recorded with
// the rule as its actor, and the rule's run beside it.
func ruleNamed(d *slaDaemon, id int64, rule string) {
	d.t.Helper()
	var tk struct {
		History []struct {
			ActorType string  `json:"actor_type"`
			Actor     string  `json:"actor"`
			Action    string  `json:"action"`
			NewValue  *string `json:"new_value"`
			Note      string  `json:"note"`
		} `json:"history"`
	}
	out := deskmailCmd(d.t, d.bin, d.dir, "tickets", "show", fmt.Sprint(id), "--config", d.cfg, "--json")
	if err := json.Unmarshal([]byte(out), &tk); err != nil {
		d.t.Fatal(err)
	}
	changed, ran := false, false
	for _, h := range tk.History {
		if h.Action == "status_changed" && h.ActorType == "rule" && h.Actor == rule && h.NewValue != nil && *h.NewValue == "3" {
			changed = true
		}
		if h.Action == "rule_applied" && h.Actor == rule && strings.Contains(h.Note, `rule "`+rule+`" on note_added: status: pending`) {
			ran = true
		}
	}
	if !changed || !ran {
		d.t.Errorf("ticket %d history does not show %s moving it to pending: %s", id, rule, out)
	}
}
