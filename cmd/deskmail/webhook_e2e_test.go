package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/webhook"
)

const webhookE2EConfig = `database: deskmail.db
smtp:
  hostname: deskmail.acme.test
threading:
  secret: "e2e webhook secret"
agents:
  - {email: alice@acme.test, name: Alice Agent, role: admin}
outbound:
  relay: %s
  tls: none
channels:
  - name: support
    addresses: [support@acme.test]
sla:
  policies:
    - {name: fast, first_response: 2s, resolution: 1h}
webhooks:
  - name: crm
    url: %s/hooks/deskmail
    secret: "hook secret"
    events: [ticket_created, agent_replied, sla_breached]
`

// TestWebhooksEndToEnd: the built daemon posts ticket events to an
// httptest receiver that is down (503) for the first seconds; every
// event arrives once, with a valid signature, and deskmail status
// shows the queue.
func TestWebhooksEndToEnd(t *testing.T) {
	forEachDatabase(t, webhooksEndToEndOn)
}

func webhooksEndToEndOn(t *testing.T, db string) {
	type got struct {
		event string
		p     webhook.Payload
	}
	var (
		mu       sync.Mutex
		down     = true
		accepted = map[string]got{}
		repeats  int
		badSig   int
		refused  int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if down {
			refused++
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if !webhook.Verify([]byte("hook secret"), body, r.Header.Get("X-Deskmail-Signature")) {
			badSig++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var p webhook.Payload
		if err := json.Unmarshal(body, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, dup := accepted[p.DeliveryID]; dup {
			repeats++
		}
		accepted[p.DeliveryID] = got{r.Header.Get("X-Deskmail-Event"), p}
	}))
	defer srv.Close()

	d := &slaDaemon{newTrustDaemon(t, db)}
	d.writeConfig(fmt.Sprintf(webhookE2EConfig, d.sink.addr, srv.URL))
	d.start()
	d.key = strings.TrimSpace(deskmailCmd(t, d.bin, d.dir, "agents", "key", "alice@acme.test", "--config", d.cfg))
	d.send("jane@customer.test", "support@acme.test", mailText("Jane <jane@customer.test>", "support@acme.test", "Printer broken", "wh-1@customer.test", "", "It jams."))
	d.send("bob@customer.test", "support@acme.test", mailText("Bob <bob@customer.test>", "support@acme.test", "Invoice", "wh-2@customer.test", "", "Wrong."))
	d.api("POST", "/api/v2/tickets/1/reply", map[string]any{"body": "Looking into it."}, nil)
	// Ticket 2 misses its first response (2s) while the receiver is down.
	waitFor(t, "ticket 2 escalated", 15*time.Second, func() bool {
		var tk struct {
			FrEscalated bool `json:"fr_escalated"`
		}
		d.api("GET", "/api/v2/tickets/2", nil, &tk)
		return tk.FrEscalated
	})
	var st struct {
		Webhooks struct {
			Queued    int    `json:"queued"`
			Retrying  int    `json:"retrying"`
			Sent      int    `json:"sent"`
			LastError string `json:"last_error"`
		} `json:"webhooks"`
	}
	out := deskmailCmd(t, d.bin, d.dir, "status", "--config", d.cfg, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Webhooks.Queued != 4 || st.Webhooks.Sent != 0 || !strings.Contains(st.Webhooks.LastError, "503") {
		t.Errorf("status while the receiver is down: %s", out)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	waitFor(t, "four webhook deliveries", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) >= 4
	})
	time.Sleep(1500 * time.Millisecond) // nothing more may come
	mu.Lock()
	defer mu.Unlock()
	count := map[string]int{}
	for _, g := range accepted {
		count[g.event+fmt.Sprint(g.p.Ticket.ID)]++
		if g.event != g.p.Event || !strings.HasSuffix(g.p.Ticket.URL, fmt.Sprintf("/api/v2/tickets/%d", g.p.Ticket.ID)) || g.p.Ticket.Requester.Email == "" {
			t.Errorf("payload %+v", g.p)
		}
		if g.event == "sla_breached" && (g.p.Breach == nil || g.p.Breach.Target != "first_response" || g.p.Breach.Policy != "fast") {
			t.Errorf("sla_breached payload: %+v", g.p.Breach)
		}
	}
	want := map[string]int{"ticket_created1": 1, "ticket_created2": 1, "agent_replied1": 1, "sla_breached2": 1}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("events received %v, want %v", count, want)
	}
	if repeats != 0 || badSig != 0 || refused == 0 {
		t.Errorf("repeats %d, bad signatures %d, refused while down %d", repeats, badSig, refused)
	}
	out = deskmailCmd(t, d.bin, d.dir, "status", "--config", d.cfg)
	if !strings.Contains(out, "webhooks: 0 queued (0 retrying), 0 failed, 4 sent") {
		t.Errorf("deskmail status:\n%s", out)
	}
	d.proc.stop()
}
