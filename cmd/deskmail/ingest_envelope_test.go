package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const envelopeConfig = `database: %s
channels:
  - name: support
    addresses: [support@example.com]
  - name: sales
    addresses: [sales@example.com]
`

// bccMail is a customer's mail to a partner with sales@ in Bcc: no
// support address in its headers.
func bccMail(id string) string {
	return "From: Alice <alice@customer.example>\r\nTo: partner@other.example\r\nSubject: Quote request " + id +
		"\r\nMessage-ID: <" + id + "@customer.example>\r\nDate: Mon, 02 Feb 2026 10:00:00 +0000\r\n\r\nPlease send a quote.\r\n"
}

// ticketChannel returns the channel of the ticket an ingest line names.
func ticketChannel(t *testing.T, db, out string) string {
	t.Helper()
	lines := ingestLines(t, out)
	if len(lines) != 1 || lines[0]["action"] != "created" {
		t.Fatalf("ingest printed %v, want one created ticket", lines)
	}
	code, show, errOut := deskmail(t, "", "tickets", "show", fmt.Sprint(lines[0]["ticket_id"]), "--db", db, "--json")
	if code != 0 {
		t.Fatalf("tickets show: %d %s", code, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(show), &m); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(m["channel"])
}

// TestCLIIngestEnvelope is the pipe mode with the envelope an MTA
// passes: the channel comes from --recipient (a Bcc'd support address
// is in no header), a recipient that is no support address exits 67
// (EX_NOUSER: the MTA bounces) with nothing stored, and a broken store
// exits 75 (EX_TEMPFAIL: the MTA retries).
func TestCLIIngestEnvelope(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "d.db")
	cfg := filepath.Join(dir, "deskmail.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(envelopeConfig, db)), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := deskmail(t, bccMail("bcc-1"), "ingest", "--config", cfg, "--recipient", "sales@example.com", "--sender", "alice@customer.example", "-")
	if code != 0 {
		t.Fatalf("ingest --recipient sales@: exit %d: %s", code, errOut)
	}
	if ch := ticketChannel(t, db, out); ch != "sales" {
		t.Errorf("Bcc to sales@ landed in channel %q, want sales", ch)
	}
	// Without the envelope the headers name no support address: the
	// default channel (what the old README's pipe line did).
	code, out, errOut = deskmail(t, bccMail("bcc-2"), "ingest", "--config", cfg, "-")
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errOut)
	}
	if ch := ticketChannel(t, db, out); ch != "support" {
		t.Errorf("without --recipient: channel %q, want the default (support)", ch)
	}
	// Several recipients: the first one's channel, as over SMTP; the
	// plus-addressed form belongs to its address.
	code, out, errOut = deskmail(t, bccMail("bcc-3"), "ingest", "--config", cfg, "--recipient", "Sales+quotes@Example.com", "--recipient", "support@example.com", "-")
	if code != 0 {
		t.Fatalf("ingest with two recipients: exit %d: %s", code, errOut)
	}
	if ch := ticketChannel(t, db, out); ch != "sales" {
		t.Errorf("first recipient sales+quotes@: channel %q, want sales", ch)
	}

	code, out, errOut = deskmail(t, bccMail("bcc-4"), "ingest", "--config", cfg, "--recipient", "support@example.com", "--recipient", "nobody@example.com", "-")
	if code != 67 || out != "" || !strings.Contains(errOut, "nobody@example.com is not a support address") {
		t.Errorf("unknown recipient: exit %d, stdout %q, stderr %q; want 67 and one line naming it", code, out, errOut)
	}
	_, list, _ := deskmail(t, "", "tickets", "list", "--db", db, "--json")
	var tickets []any
	if err := json.Unmarshal([]byte(list), &tickets); err != nil || len(tickets) != 3 {
		t.Errorf("after the refused recipient: %d tickets (%v), want 3", len(tickets), err)
	}

	// A database file that is not a database.
	broken := filepath.Join(dir, "broken.db")
	if err := os.WriteFile(broken, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = deskmail(t, bccMail("bcc-5"), "ingest", "--config", cfg, "--db", broken, "--recipient", "sales@example.com", "-")
	if code != 75 {
		t.Errorf("broken store: exit %d (%s), want 75", code, errOut)
	}
	if code, _, errOut := deskmail(t, "", "ingest", "--config", cfg, "--recipient", "", "-"); code != 2 {
		t.Errorf("empty --recipient: exit %d (%s), want 2", code, errOut)
	}
}
