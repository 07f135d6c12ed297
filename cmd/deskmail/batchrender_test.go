package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jhillyerd/enmime/v2"
)

const batchRenderConfig = `database: deskmail.db
threading:
  secret: "batch render secret"
  hostname: deskmail.acme.test
agents:
  - {email: alice@acme.test, name: Alice Agent, role: admin}
outbound:
  templates_dir: %s
channels:
  - name: support
    addresses: [support@acme.test]
    language: en
`

// TestIngestBatchRendersMailAtCommit: `deskmail ingest FILE…` renders
// the outbound mail of a batch on a goroutine of its transaction, the
// bytes written into the rows before COMMIT (store.Tx.RenderLater). Every mail in the outbox is then whole
// and is the row's: its Subject and Message-ID are the row's, its text
// the ticket's. A confirmation template that fails for one sender makes
// the batch commit again mail by mail: that message alone is kept raw
// and marked failed (no ticket, no mail), the others are committed as
// usual, a reply in the same batch included.
func TestIngestBatchRendersMailAtCommit(t *testing.T) {
	forEachDatabase(t, ingestBatchRendersMailAtCommitOn)
}

func ingestBatchRendersMailAtCommitOn(t *testing.T, db string) {
	dir := t.TempDir()
	// Fails (index out of range) only for broken@example.test, and only
	// in the body: the subject renders for everyone.
	templates := writeTemplates(t, dir, "en", map[string]string{
		"confirmation.txt.tmpl": `{{define "subject"}}Received: {{.Title}}{{end}}{{if eq .Requester.Email "broken@example.test"}}{{index .Ticket.Tags 3}}{{end}}Hello {{.Requester.Name}},

your request is {{.Token}}: {{.Title}}.
`,
		"confirmation.html.tmpl": `<p>Request {{.Token}}</p>`,
	})
	cfg := writeConfigOn(t, dir, db, fmt.Sprintf(batchRenderConfig, templates))
	bin := buildBinary(t)

	type mailSpec struct{ from, name, subject, id, extra string }
	specs := []mailSpec{
		{"ann@example.test", "Ann", "Printer on fire", "m1@example.test", ""},
		{"bob@example.test", "Bob", "Cannot log in", "m2@example.test", ""},
		{"broken@example.test", "Broken", "Template trouble", "m3@example.test", ""},
		{"ann@example.test", "Ann", "Re: Printer on fire", "m4@example.test", "In-Reply-To: <m1@example.test>\n"},
		{"cid@example.test", "Cid", "Invoice missing", "m5@example.test", ""},
	}
	write := func(batch string, specs []mailSpec) []string {
		var files []string
		for i, s := range specs {
			p := filepath.Join(dir, fmt.Sprintf("%s-%d.eml", batch, i))
			body := mailText(s.name+" <"+s.from+">", "support@acme.test", s.subject, s.id, s.extra, "Hello, "+s.subject+".")
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, p)
		}
		return files
	}

	// A batch whose mail all renders, then one with the broken sender.
	out := deskmailCmd(t, bin, dir, append([]string{"ingest", "--config", cfg}, write("a", specs[:2])...)...)
	out += deskmailCmd(t, bin, dir, append([]string{"ingest", "--config", cfg}, write("b", specs[2:])...)...)
	var actions []string
	tickets := map[string]float64{}
	for _, l := range ingestLines(t, out) {
		actions = append(actions, fmt.Sprint(l["action"]))
		if id, ok := l["ticket_id"].(float64); ok {
			tickets[fmt.Sprint(l["message_id"])] = id
		}
	}
	if got := strings.Join(actions, " "); got != "created created ignored appended created" {
		t.Fatalf("actions %q, want created created ignored appended created\n%s", got, out)
	}
	if _, ok := tickets["m3@example.test"]; ok {
		t.Errorf("the mail whose confirmation failed has a ticket: %v", tickets)
	}
	if tickets["m4@example.test"] != tickets["m1@example.test"] {
		t.Errorf("reply in the batch on ticket %v, want %v", tickets["m4@example.test"], tickets["m1@example.test"])
	}

	var rows []struct {
		TicketID  int64    `json:"ticket_id"`
		To        []string `json:"to"`
		Subject   string   `json:"subject"`
		MessageID string   `json:"message_id"`
		Kind      string   `json:"kind"`
		Raw       string   `json:"raw"`
	}
	if err := json.Unmarshal([]byte(deskmailCmd(t, bin, dir, "outbox", "list", "--config", cfg, "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range rows {
		kinds[r.Kind]++
		if strings.Contains(strings.Join(r.To, ","), "broken@") {
			t.Errorf("mail queued for the failed message: %+v", r)
		}
		env, err := enmime.ReadEnvelope(bytes.NewReader([]byte(r.Raw)))
		if err != nil {
			t.Errorf("outbox mail %s does not parse: %v\n%s", r.MessageID, err, r.Raw)
			continue
		}
		token := fmt.Sprintf("[#%d]", r.TicketID)
		if got := env.GetHeader("Subject"); got != r.Subject || !strings.Contains(got, token) {
			t.Errorf("outbox mail %s: Subject %q, row %q, want the row's with %s", r.MessageID, got, r.Subject, token)
		}
		if got := strings.Trim(env.GetHeader("Message-Id"), "<>"); got != r.MessageID {
			t.Errorf("outbox mail: Message-ID %q, row %q", got, r.MessageID)
		}
		if !strings.Contains(env.Text, token) {
			t.Errorf("outbox %s mail %s: text without %s:\n%s", r.Kind, r.MessageID, token, env.Text)
		}
		if r.Kind == "confirmation" && !strings.HasPrefix(env.Text, "Hello ") {
			t.Errorf("confirmation %s not from templates_dir: %q", r.MessageID, env.Text)
		}
	}
	// Three tickets: a confirmation and a notification each, and a
	// notification of the reply.
	if kinds["confirmation"] != 3 || kinds["notification"] != 4 {
		t.Errorf("outbox kinds %v, want 3 confirmations and 4 notifications", kinds)
	}
}
