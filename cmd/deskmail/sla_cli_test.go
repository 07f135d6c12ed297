package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const slaCLIConfig = `database: %s
agents:
  - {email: alice@acme.test, name: Alice, role: admin}
statuses:
  - {code: 6, name: "Waiting on engineering", category: pending}
pipelines:
  - name: default
    statuses: [2, 3, 6, 4, 5]
    close_resolved_after: 72h
channels:
  - name: support
    addresses: [support@acme.test]
sla:
  policies:
    - {name: urgent, priorities: [4], first_response: 30m, resolution: 4h}
    - {name: standard, first_response: 1h, resolution: 8h}
`

type slaShown struct {
	ID               int64      `json:"id"`
	Status           int        `json:"status"`
	CreatedAt        time.Time  `json:"created_at"`
	FrDueBy          *time.Time `json:"fr_due_by"`
	DueBy            *time.Time `json:"due_by"`
	FrEscalated      bool       `json:"fr_escalated"`
	IsEscalated      bool       `json:"is_escalated"`
	FirstRespondedAt *time.Time `json:"first_responded_at"`
	SLAPolicy        *string    `json:"sla_policy"`
	SLAPausedSeconds float64    `json:"sla_paused_seconds"`
}

// TestSLADueDatesCLI: a ticket ingested under a policy gets its due
// dates; a priority change retargets them; `tickets update` without
// --config (the policy kept in the database) pauses the clock in a
// custom pending status and resumes it, and the due date moves on by
// the time paused.
func TestSLADueDatesCLI(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "d.db")
	cfg := filepath.Join(dir, "deskmail.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(slaCLIConfig, db)), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := mailText("jane@customer.test", "support@acme.test", "Printer broken", "sla-1@customer.test", "", "It jams.")
	if code, out, errs := deskmail(t, msg, "ingest", "--config", cfg, "-"); code != 0 {
		t.Fatalf("ingest: %d %s %s", code, out, errs)
	}
	show := func() slaShown {
		t.Helper()
		code, out, errs := deskmail(t, "", "tickets", "show", "1", "--db", db, "--json")
		if code != 0 {
			t.Fatalf("tickets show: %s", errs)
		}
		var s slaShown
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{`"fr_due_by"`, `"due_by"`, `"fr_escalated"`, `"is_escalated"`, `"first_responded_at"`} {
			if !strings.Contains(out, k) {
				t.Errorf("tickets show --json lacks %s", k)
			}
		}
		return s
	}
	s := show()
	if s.SLAPolicy == nil || *s.SLAPolicy != "standard" || s.FrDueBy == nil || s.DueBy == nil {
		t.Fatalf("ticket: %+v", s)
	}
	if !s.FrDueBy.Equal(s.CreatedAt.Add(time.Hour)) || !s.DueBy.Equal(s.CreatedAt.Add(8*time.Hour)) {
		t.Errorf("fr_due_by %s due_by %s for created %s", s.FrDueBy, s.DueBy, s.CreatedAt)
	}
	if code, _, errs := deskmail(t, "", "tickets", "update", "1", "--db", db, "--priority", "4"); code != 0 {
		t.Fatal(errs)
	}
	s = show()
	if *s.SLAPolicy != "urgent" || !s.FrDueBy.Equal(s.CreatedAt.Add(30*time.Minute)) || !s.DueBy.Equal(s.CreatedAt.Add(4*time.Hour)) {
		t.Errorf("after priority 4: %+v", s)
	}
	before := *s.DueBy
	if code, _, errs := deskmail(t, "", "tickets", "update", "1", "--db", db, "--status", "6"); code != 0 {
		t.Fatal(errs)
	}
	time.Sleep(50 * time.Millisecond)
	if code, _, errs := deskmail(t, "", "tickets", "update", "1", "--db", db, "--status", "2"); code != 0 {
		t.Fatal(errs)
	}
	s = show()
	paused := time.Duration(s.SLAPausedSeconds * float64(time.Second))
	if paused < 50*time.Millisecond {
		t.Errorf("paused %s, want at least 50ms", paused)
	}
	if moved := s.DueBy.Sub(before); moved < paused-time.Millisecond || moved > paused+time.Millisecond {
		t.Errorf("due_by moved by %s for a pause of %s", moved, paused)
	}
}

func TestSLACheckConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	body := `channels:
  - name: support
    addresses: [support@acme.test]
pipelines:
  - name: default
    statuses: [2, 3, 4, 5]
    close_resolved_after: soon
sla:
  business_hours:
    - name: office
      time_zone: Mars/Olympus
      hours: ["mon-fri 09:00-18:00"]
    - name: shop
      hours: ["monday 9-5"]
      holidays: [25/12/2026]
  policies:
    - name: fast
      priorities: [7]
      channels: [nowhere]
      first_response: 3s
      business_hours: lunch
    - name: empty
webhooks:
  - name: crm
    url: ftp://crm.example
    events: [ticket_eaten]
`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := deskmail(t, "", "check-config", cfg)
	if code == 0 {
		t.Fatalf("check-config accepted it:\n%s", out)
	}
	for _, want := range []string{
		"bad.yaml:7: pipelines[0].close_resolved_after:",
		"bad.yaml:11: sla.business_hours[0].time_zone:",
		"bad.yaml:14: sla.business_hours[1].hours[0]:",
		"bad.yaml:15: sla.business_hours[1].holidays[0]:",
		"bad.yaml:18: sla.policies[0].priorities[0]:",
		"bad.yaml:19: sla.policies[0].channels[0]:",
		"bad.yaml:21: sla.policies[0].business_hours:",
		"bad.yaml:22: sla.policies[1]:",
		"bad.yaml:24: webhooks[0].secret:",
		"bad.yaml:25: webhooks[0].url:",
		"bad.yaml:26: webhooks[0].events[0]:",
	} {
		if !strings.Contains(out+errs, want) {
			t.Errorf("check-config output lacks %q:\n%s%s", want, out, errs)
		}
	}
}
