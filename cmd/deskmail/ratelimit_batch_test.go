package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfirmationRateLimitInBatch: the hourly confirmation limit (5 by
// default) counts the confirmations a batch queues itself, whatever the
// case of the sender's address, and those committed by an earlier run;
// on both stores (PostgreSQL reads the counts for a whole batch in one
// query and keeps them up to date, see store.Tx.PrefetchOutboxTo).
func TestConfirmationRateLimitInBatch(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db string) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "deskmail.yaml")
		if err := os.WriteFile(cfg, []byte(`database: `+db+`
threading:
  secret: "rate-secret-0123456789abcdef"
  hostname: deskmail.acme.test
agents:
  - {email: alice@acme.test, name: Alice, role: admin}
channels:
  - name: support
    addresses: [support@acme.test]
`), 0o644); err != nil {
			t.Fatal(err)
		}
		mail := func(i int, from string) string {
			p := filepath.Join(dir, fmt.Sprintf("%02d.eml", i))
			body := fmt.Sprintf("From: Flo <%s>\r\nTo: support@acme.test\r\nSubject: problem %d\r\nMessage-ID: <flood-%d@customer.test>\r\n"+
				"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\nIt broke again (%d).\r\n", from, i, i, i)
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
		var files []string
		for i := range 7 {
			from := "flood@customer.test"
			if i%2 == 1 {
				from = "Flood@Customer.TEST"
			}
			files = append(files, mail(i, from))
		}
		// A mail from someone else in the same batch is not limited.
		other := filepath.Join(dir, "other.eml")
		if err := os.WriteFile(other, []byte("From: bob@customer.test\r\nTo: support@acme.test\r\nSubject: hello\r\n"+
			"Message-ID: <bob-1@customer.test>\r\n\r\nHi.\r\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files[:3], append([]string{other}, files[3:]...)...)
		if code, _, errOut := deskmail(t, "", append([]string{"ingest", "--config", cfg}, files...)...); code != 0 {
			t.Fatalf("ingest: exit %d: %s", code, errOut)
		}
		count := func() (queued, suppressed map[string]int) {
			t.Helper()
			code, out, errOut := deskmail(t, "", "outbox", "list", "--db", db, "--json")
			if code != 0 {
				t.Fatalf("outbox list: exit %d: %s", code, errOut)
			}
			var rows []outboxJSON
			if err := json.Unmarshal([]byte(out), &rows); err != nil {
				t.Fatalf("outbox list: %v\n%s", err, out)
			}
			queued, suppressed = map[string]int{}, map[string]int{}
			for _, r := range rows {
				if r.Kind != "confirmation" {
					continue
				}
				to := strings.ToLower(strings.Join(r.To, ","))
				switch r.State {
				case "queued":
					queued[to]++
				case "suppressed":
					suppressed[to]++
					if r.LastError == nil || !strings.Contains(*r.LastError, "rate limit") {
						t.Errorf("confirmation suppressed for %v", r.LastError)
					}
				}
			}
			return queued, suppressed
		}
		q, s := count()
		if q["flood@customer.test"] != 5 || s["flood@customer.test"] != 2 || q["bob@customer.test"] != 1 {
			t.Fatalf("after one batch: queued %v, suppressed %v; want 5 and 2 to flood@, 1 to bob@", q, s)
		}
		// A later run counts what the first committed.
		if code, _, errOut := deskmail(t, "", "ingest", "--config", cfg, mail(7, "FLOOD@customer.test"), mail(8, "flood@customer.test")); code != 0 {
			t.Fatalf("ingest: exit %d: %s", code, errOut)
		}
		if q, s := count(); q["flood@customer.test"] != 5 || s["flood@customer.test"] != 4 {
			t.Fatalf("after a second run: queued %v, suppressed %v; want 5 and 4 to flood@", q, s)
		}
	})
}
