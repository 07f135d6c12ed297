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

const batchFailConfig = `database: deskmail.db
smtp:
  hostname: deskmail.acme.test
  rate_per_minute: 100000
threading:
  secret: "e2e batch failure secret"
outbound:
  relay: %s
  tls: none
  templates_dir: %s
channels:
  - name: support
    addresses: [support@acme.test]
`

// TestBatchSetsAsideFailingMessage: a batch `deskmail ingest` whose
// third mail cannot be stored (an administrator's confirmation template
// fails on its subject) keeps that mail raw and marked failed and
// stores its neighbours — before it and after it, a reply among them —
// exactly once: a group commit first runs without a savepoint per
// message, and on a failure runs again with them (store.WriteBatch).
// The built binary ingests; state is read back with the CLI; the
// confirmations reach a relay sink once each when serve delivers them.
func TestBatchSetsAsideFailingMessage(t *testing.T) {
	forEachDatabase(t, batchSetsAsideFailingMessageOn)
}

func batchSetsAsideFailingMessageOn(t *testing.T, db string) {
	dir := t.TempDir()
	// {{index .Title 99}} fails at execution on a short title.
	templates := writeTemplates(t, dir, "en", map[string]string{
		"confirmation.txt.tmpl": `{{define "subject"}}{{.ReplySubject}}{{end}}{{if eq .Title "poison"}}{{index .Title 99}}{{end}}We opened {{.Token}}: {{.Title}}
`,
		"confirmation.html.tmpl": `<p>We opened {{.Token}}.</p>`,
	})
	sink := newRelaySink(t)
	cfg := writeConfigOn(t, dir, db, fmt.Sprintf(batchFailConfig, sink.addr, templates))
	bin := buildBinary(t)

	mails := []struct{ file, text string }{
		{"1-ann.eml", mailText("Ann <ann@customer.test>", "support@acme.test", "Printer broken", "ann-1@customer.test", "", "It jams.")},
		{"2-bob.eml", mailText("Bob <bob@customer.test>", "support@acme.test", "Invoice wrong", "bob-1@customer.test", "", "Twice the price.")},
		{"3-eve.eml", mailText("Eve <eve@customer.test>", "support@acme.test", "poison", "eve-1@customer.test", "", "This one fails.")},
		{"4-ann.eml", mailText("Ann <ann@customer.test>", "support@acme.test", "Re: Printer broken", "ann-2@customer.test",
			"In-Reply-To: <ann-1@customer.test>\n", "Still jams.")},
		{"5-cat.eml", mailText("Cat <cat@customer.test>", "support@acme.test", "Login fails", "cat-1@customer.test", "", "Password refused.")},
		// Eve again: her contact, made in the failed mail's savepoint,
		// was rolled back with it and must be made again, not reused.
		{"6-eve.eml", mailText("Eve <eve@customer.test>", "support@acme.test", "Refund", "eve-2@customer.test", "", "This one passes.")},
	}
	var files []string
	for _, m := range mails {
		p := filepath.Join(dir, m.file)
		if err := os.WriteFile(p, []byte(m.text), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	out := deskmailCmd(t, bin, dir, append([]string{"ingest", "--config", cfg}, files...)...)
	var actions []string
	tickets := map[string]float64{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			File     string   `json:"file"`
			Action   string   `json:"action"`
			TicketID *float64 `json:"ticket_id"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("ingest printed %q: %v", l, err)
		}
		actions = append(actions, filepath.Base(r.File)+":"+r.Action)
		if r.TicketID != nil {
			tickets[filepath.Base(r.File)] = *r.TicketID
		}
	}
	want := "1-ann.eml:created 2-bob.eml:created 3-eve.eml:ignored 4-ann.eml:appended 5-cat.eml:created 6-eve.eml:created"
	if got := strings.Join(actions, " "); got != want {
		t.Fatalf("ingest actions\n got %s\nwant %s", got, want)
	}
	if tickets["4-ann.eml"] != tickets["1-ann.eml"] {
		t.Errorf("Ann's reply went to ticket %v, her ticket is %v", tickets["4-ann.eml"], tickets["1-ann.eml"])
	}

	var list []struct {
		Subject string `json:"subject"`
	}
	if err := json.Unmarshal([]byte(deskmailCmd(t, bin, dir, "tickets", "list", "--config", cfg, "--json")), &list); err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, tk := range list {
		subjects = append(subjects, tk.Subject)
	}
	if len(list) != 4 || strings.Contains(strings.Join(subjects, "|"), "poison") {
		t.Errorf("tickets %q, want Ann's, Bob's, Cat's and Eve's second only", subjects)
	}
	var st struct {
		FailedMessages int `json:"failed_messages"`
		Outbox         struct {
			Queued int `json:"queued"`
		} `json:"outbox"`
	}
	if err := json.Unmarshal([]byte(deskmailCmd(t, bin, dir, "status", "--config", cfg, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.FailedMessages != 1 || st.Outbox.Queued != 4 {
		t.Errorf("status: %d failed messages, %d mails queued; want 1 (Eve's first, kept raw) and 4 confirmations", st.FailedMessages, st.Outbox.Queued)
	}

	startServe(t, bin, dir, "--config", cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	for _, rcpt := range []string{"ann@customer.test", "bob@customer.test", "cat@customer.test", "eve@customer.test"} {
		sink.waitMails(t, rcpt, 1)
	}
	time.Sleep(500 * time.Millisecond) // a second delivery would come in the same pass
	for _, rcpt := range []string{"ann@customer.test", "bob@customer.test", "cat@customer.test", "eve@customer.test"} {
		want := 1 // Eve's second mail's confirmation only
		if got := len(sink.mails(rcpt)); got != want {
			t.Errorf("%d mails reached %s, want %d", got, rcpt, want)
		}
	}
}

// writeTemplates writes files (name → text) into dir/templates/lang,
// a templates_dir for the configuration, and returns dir/templates.
func writeTemplates(t *testing.T, dir, lang string, files map[string]string) string {
	t.Helper()
	root := filepath.Join(dir, "templates")
	if err := os.MkdirAll(filepath.Join(root, lang), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(root, lang, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}
