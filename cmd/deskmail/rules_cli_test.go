package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// rulesLoopConfig has two rules that undo each other: A reopens what
// is pending, B sets pending what is open.
const rulesLoopConfig = `database: %s
channels:
  - name: support
    addresses: [support@acme.test]
rules:
  - name: A
    on: status_changed
    if: {status: pending, subject_contains: loop}
    then: {status: open}
  - name: B
    on: [status_changed]
    if: {status: [open], subject_contains: [loop]}
    then: {status: pending, add_tags: [looped]}
`

// TestRulesLoopCut: A's action triggers B, whose action triggers A
// again; the second A is cut, logged and recorded, and the change
// commits (deskmail tickets update exits 0).
func TestRulesLoopCut(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "d.db")
	cfg := filepath.Join(dir, "deskmail.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(rulesLoopConfig, db)), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := mailText("jane@customer.test", "support@acme.test", "A loop", "loop-1@customer.test", "", "Hi.")
	if code, out, errs := deskmail(t, msg, "ingest", "--config", cfg, "-"); code != 0 {
		t.Fatalf("ingest: %d %s %s", code, out, errs)
	}
	update := exec.Command(bin, "tickets", "update", "1", "--config", cfg, "--status", "3")
	logged, err := update.CombinedOutput()
	if err != nil {
		t.Fatalf("tickets update: %v %s", err, logged)
	}
	if !strings.Contains(string(logged), "rule loop cut") || !strings.Contains(string(logged), "A → B → A") {
		t.Errorf("the cut is not logged: %s", logged)
	}
	code, out, errs := deskmail(t, "", "tickets", "show", "1", "--db", db, "--json")
	if code != 0 {
		t.Fatalf("tickets show: %s", errs)
	}
	var tk struct {
		Status  int      `json:"status"`
		Tags    []string `json:"tags"`
		History []struct {
			Action    string `json:"action"`
			ActorType string `json:"actor_type"`
			Actor     string `json:"actor"`
			Note      string `json:"note"`
		} `json:"history"`
	}
	if err := json.Unmarshal([]byte(out), &tk); err != nil {
		t.Fatal(err)
	}
	// admin → 3, A → 2, B → 3; A is not run again.
	if tk.Status != 3 || strings.Join(tk.Tags, ",") != "looped" {
		t.Errorf("status %d tags %v, want 3 [looped]", tk.Status, tk.Tags)
	}
	var runs []string
	cuts := 0
	for _, h := range tk.History {
		switch h.Action {
		case "rule_applied":
			runs = append(runs, h.Actor)
		case "rule_loop_cut":
			cuts++
			if h.Actor != "A" || !strings.Contains(h.Note, "A → B → A") {
				t.Errorf("loop cut recorded as %+v", h)
			}
		}
	}
	if strings.Join(runs, ",") != "A,B" || cuts != 1 {
		t.Errorf("rules run %v, loop cuts %d; history %s", runs, cuts, out)
	}
}

// TestRulesCheckConfig: the built binary's check-config reports every
// bad rule at its FILE:LINE.
func TestRulesCheckConfig(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	body := `channels:
  - name: support
    addresses: [support@acme.test]
agents:
  - {email: alice@acme.test, role: agent}
rules:
  - on: note_eaten
    then: {status: pending}
  - name: vip
    on: ticket_created
    if:
      channel: nowhere
      from: "not an address"
      priority: [high, 9]
      status: snoozed
    then:
      status: sleeping
      priority: asap
      assign: bob@acme.test
      add_tags: ["two words"]
      notify: [carol@acme.test]
      webhook: crm
  - name: vip
    on: ticket_created
  - on: [customer_replied]
    then: {colour: red}
`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check-config", cfg)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("check-config accepted it:\n%s", out)
	}
	for _, want := range []string{
		"bad.yaml:7: rules[0].on[0]: \"note_eaten\" is not an event",
		"bad.yaml:12: rules[1].if.channel[0]:",
		"bad.yaml:13: rules[1].if.from[0]:",
		"bad.yaml:14: rules[1].if.priority[1]: \"9\" is not a priority",
		"bad.yaml:15: rules[1].if.status[0]: \"snoozed\" is not a status",
		"bad.yaml:17: rules[1].then.status:",
		"bad.yaml:18: rules[1].then.priority:",
		"bad.yaml:19: rules[1].then.assign:",
		"bad.yaml:20: rules[1].then.add_tags[0]:",
		"bad.yaml:21: rules[1].then.notify[0]:",
		"bad.yaml:22: rules[1].then.webhook:",
		"bad.yaml:23: rules[2].name: rule \"vip\" is also declared at line 9",
		"bad.yaml:23: rules[2]: rule \"vip\" has no then: actions",
		"bad.yaml:26: rules[3].then.colour: unknown option",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}
}
