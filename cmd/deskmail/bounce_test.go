package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const bounceConfig = `database: deskmail.db
smtp:
  hostname: deskmail.acme.example
  rate_per_minute: 100000
threading:
  secret: "e2e bounce secret"
agents:
  - {email: alice@acme.example, name: Alice Agent, role: admin}
outbound:
  relay: %s
  tls: none
channels:
  - name: support
    addresses: [support@acme.example]
`

// flaggedContact is one line of `deskmail contacts list --bouncing --json`.
type flaggedContact struct {
	ID           int64  `json:"id"`
	Email        string `json:"email"`
	Bouncing     bool   `json:"bouncing"`
	BouncedAt    string `json:"bounced_at"`
	BounceStatus string `json:"bounce_status"`
	BounceReason string `json:"bounce_reason"`
	BounceReport *struct {
		ID        int64  `json:"id"`
		MessageID string `json:"message_id"`
		Status    string `json:"status"`
		OutboxID  *int64 `json:"outbox_id"`
		Outcome   string `json:"outcome"`
	} `json:"bounce_report"`
}

// TestBouncesEndToEnd drives fixtures/threading/bounces through the
// built binary: mail in over SMTP, the confirmation captured at a
// go-smtp relay sink (its MAIL FROM is the signed VERP sender), delivery
// reports sent back over SMTP from the null sender, state read back
// with `contacts list --bouncing`, `tickets show`, `status`,
// `outbox list` and the API.
func TestBouncesEndToEnd(t *testing.T) {
	forEachDatabase(t, bouncesEndToEndOn)
}

func bouncesEndToEndOn(t *testing.T, db string) {
	d := newTrustDaemon(t, db)
	d.writeConfig(fmt.Sprintf(bounceConfig, d.sink.addr))
	d.proc, d.smtp, d.http = startServe(t, d.bin, d.dir, "--config", d.cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	d.key = strings.TrimSpace(deskmailCmd(t, d.bin, d.dir, "agents", "key", "alice@acme.example", "--config", d.cfg))
	const jane = "jane.doe@customer.example"

	var verp, ourID string
	fixture := func(name string, n int) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "threading", "bounces", name+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "support+{{BOUNCE_TOKEN 1}}@acme.example", verp)
		s = strings.ReplaceAll(s, "{{OUTBOX_MESSAGE_ID 1}}", ourID)
		if n > 0 {
			// The same report once more: a new Message-ID, or it is a duplicate.
			s = regexp.MustCompile(`(?m)^Message-Id: <`).ReplaceAllString(s, fmt.Sprintf("Message-Id: <again%d.", n))
		}
		return s
	}
	// sendDSN delivers a report the way a remote MTA does: from the
	// null sender to the address it names in To.
	sendDSN := func(rcpt, msg string) {
		t.Helper()
		d.send("", rcpt, msg)
	}
	flagged := func() []flaggedContact {
		t.Helper()
		var list []flaggedContact
		out := deskmailCmd(t, d.bin, d.dir, "contacts", "list", "--bouncing", "--json", "--config", d.cfg)
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("contacts list: %v\n%s", err, out)
		}
		return list
	}
	bounceNotes := func() []string {
		var notes []string
		for _, h := range d.ticket(1).History {
			if h.Action == "bounce" {
				notes = append(notes, h.Note)
			}
		}
		return notes
	}
	waitNotes := func(n int) []string {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d bounce entries on ticket 1", n), 10*time.Second, func() bool { return len(bounceNotes()) >= n })
		return bounceNotes()
	}
	var status struct {
		Bounces struct {
			Flagged, Transient, Uncorrelated int
			Recent                           []struct {
				RawID    *int64 `json:"raw_id"`
				TicketID *int64 `json:"ticket_id"`
				Note     string `json:"note"`
			} `json:"recent_uncorrelated"`
			BouncingContacts int `json:"bouncing_contacts"`
		} `json:"bounces"`
	}
	readStatus := func() {
		t.Helper()
		out := deskmailCmd(t, d.bin, d.dir, "status", "--config", d.cfg, "--json")
		if err := json.Unmarshal([]byte(out), &status); err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
	}

	d.send(jane, "support@acme.example", fixture("01-new", 0))
	conf := d.sink.waitMails(t, jane, 1)[0]
	verp, ourID = conf.From, strings.Trim(conf.Msg.Header.Get("Message-Id"), "<>")
	if !regexp.MustCompile(`^support\+b\d+\.[a-z2-7]{10}@acme\.example$`).MatchString(verp) {
		t.Fatalf("the confirmation's envelope sender %q is no signed VERP address", verp)
	}

	t.Run("a forged report from a stranger flags nobody", func(t *testing.T) {
		sendDSN("support@acme.example", fixture("05-forged-dsn", 0))
		// The same with a guessed bounce token in the recipient.
		guessed := regexp.MustCompile(`\+b(\d+)\.[a-z2-7]{10}@`).ReplaceAllString(verp, "+b$1.aaaaaaaaaa@")
		sendDSN(guessed, strings.ReplaceAll(fixture("02-dsn-real", 1), verp, guessed))
		notes := waitNotes(1)
		if len(flagged()) != 0 {
			t.Fatalf("a forged report flagged %+v", flagged())
		}
		if !strings.Contains(notes[0], "flags nobody") {
			t.Errorf("ticket history %q", notes[0])
		}
		waitFor(t, "two unproven reports in status", 10*time.Second, func() bool { readStatus(); return status.Bounces.Uncorrelated == 2 })
		if r := status.Bounces.Recent; len(r) != 2 || r[0].RawID == nil || r[1].TicketID == nil || *r[1].TicketID != 1 {
			t.Errorf("status recent_uncorrelated %+v", r)
		}
		human := deskmailCmd(t, d.bin, d.dir, "status", "--config", d.cfg)
		if !strings.Contains(human, "2 proved nothing and flagged nobody") {
			t.Errorf("status does not show the unproven reports:\n%s", human)
		}
	})

	t.Run("a real bounce of our mail flags the customer; their next mail clears it", func(t *testing.T) {
		sendDSN(verp, fixture("02-dsn-real", 0))
		waitFor(t, "jane flagged", 10*time.Second, func() bool { return len(flagged()) == 1 })
		f := flagged()[0]
		if f.Email != jane || f.BounceStatus != "5.1.1" || f.BouncedAt == "" || f.BounceReport == nil ||
			f.BounceReport.Outcome != "flagged" || f.BounceReport.OutboxID == nil || !strings.Contains(f.BounceReason, ourID) {
			t.Fatalf("flag %+v (report %+v)", f, f.BounceReport)
		}
		if human := deskmailCmd(t, d.bin, d.dir, "contacts", "list", "--bouncing", "--config", d.cfg); !strings.Contains(human, jane) || !strings.Contains(human, "5.1.1") {
			t.Errorf("contacts list --bouncing:\n%s", human)
		}
		// Nothing more goes to her: an agent reply is held back.
		before := len(d.sink.mails(jane))
		d.api("POST", "/api/v2/tickets/1/reply", map[string]any{"body": "We fixed the invoice."}, nil)
		waitFor(t, "the suppressed reply", 10*time.Second, func() bool {
			return strings.Contains(deskmailCmd(t, d.bin, d.dir, "outbox", "list", "--config", d.cfg, "--json"), "address is bouncing")
		})
		if n := len(d.sink.mails(jane)); n != before {
			t.Errorf("mail went to a bouncing address")
		}

		d.send(jane, "support@acme.example", fixture("03-customer-writes-again", 0))
		waitFor(t, "the flag cleared", 10*time.Second, func() bool { return len(flagged()) == 0 })
		if !d.ticket(1).has("bounce_cleared") {
			t.Errorf("no bounce_cleared on the ticket: %+v", d.ticket(1).History)
		}
	})

	t.Run("contacts unflag clears a flag", func(t *testing.T) {
		sendDSN(verp, fixture("02-dsn-real", 2))
		waitFor(t, "jane flagged again", 10*time.Second, func() bool { return len(flagged()) == 1 })
		out := deskmailCmd(t, d.bin, d.dir, "contacts", "unflag", jane, "--config", d.cfg)
		if !strings.Contains(out, "bouncing flag cleared") || len(flagged()) != 0 {
			t.Fatalf("contacts unflag: %q, still flagged %+v", out, flagged())
		}
	})

	t.Run("a transient failure and a report for someone else flag nobody", func(t *testing.T) {
		n := len(bounceNotes())
		sendDSN(verp, fixture("04-dsn-delayed", 0))
		sendDSN(verp, fixture("06-dsn-other-recipient", 0))
		notes := waitNotes(n + 2)
		if len(flagged()) != 0 {
			t.Fatalf("flagged %+v", flagged())
		}
		joined := strings.Join(notes[n:], "\n")
		if !strings.Contains(joined, "4.2.2") || !strings.Contains(joined, "transient") || !strings.Contains(joined, "boss@customer.example") {
			t.Errorf("history:\n%s", joined)
		}
	})

	t.Run("the API clears a flag with bouncing false and refuses true", func(t *testing.T) {
		sendDSN(verp, fixture("02-dsn-real", 3))
		waitFor(t, "jane flagged again", 10*time.Second, func() bool { return len(flagged()) == 1 })
		id := flagged()[0].ID
		put := func(body string) (int, string) {
			req, _ := http.NewRequest("PUT", fmt.Sprintf("http://%s/api/v2/contacts/%d", d.http, id), strings.NewReader(body))
			req.SetBasicAuth(d.key, "X")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			return resp.StatusCode, b.String()
		}
		if code, body := put(`{"bouncing": true}`); code != 400 || !strings.Contains(body, "bouncing") {
			t.Errorf("bouncing true: %d %s", code, body)
		}
		code, body := put(`{"bouncing": false}`)
		if code != 200 || !strings.Contains(body, `"bouncing":false`) || len(flagged()) != 0 {
			t.Fatalf("bouncing false: %d %s; flagged %+v", code, body, flagged())
		}
	})

	readStatus()
	if b := status.Bounces; b.Flagged != 3 || b.Transient != 1 || b.Uncorrelated != 3 || b.BouncingContacts != 0 {
		t.Errorf("status bounces %+v", b)
	}
	d.proc.stop()
}
