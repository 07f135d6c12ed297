package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deskmail/deskmail/store"
)

// writeHistoryMbox writes an mbox of n messages in threads of three
// (customer question, agent answer, customer reply by In-Reply-To),
// oldest first, threads interleaved as real traffic is.
func writeHistoryMbox(t *testing.T, path string, threads int) {
	t.Helper()
	var b strings.Builder
	at := time.Date(2025, 1, 6, 8, 0, 0, 0, time.UTC)
	add := func(from, to, subject, id, reply, body string) {
		at = at.Add(7 * time.Minute)
		b.WriteString("From " + from + " " + at.Format("Mon Jan _2 15:04:05 2006") + "\n")
		fmt.Fprintf(&b, "From: %s\nTo: %s\nSubject: %s\nDate: %s\nMessage-ID: <%s>\n", from, to, subject, at.Format(time.RFC1123Z), id)
		if reply != "" {
			fmt.Fprintf(&b, "In-Reply-To: <%s>\nReferences: <%s>\n", reply, reply)
		}
		b.WriteString("\n" + body + "\n>From the archive, a quoted From line.\n\n")
	}
	for i := 0; i < threads; i += 2 {
		for k := i; k < i+2 && k < threads; k++ {
			add(fmt.Sprintf("c%d@customer.example", k), "support@acme.example", fmt.Sprintf("Order %d is late", k), fmt.Sprintf("q%d@customer.example", k), "", "Where is my order?")
		}
		for k := i; k < i+2 && k < threads; k++ {
			add("alice@acme.example", fmt.Sprintf("c%d@customer.example", k), fmt.Sprintf("RE: Order %d is late", k), fmt.Sprintf("a%d@acme.example", k), fmt.Sprintf("q%d@customer.example", k), "It ships today.")
		}
		for k := i; k < i+2 && k < threads; k++ {
			add(fmt.Sprintf("c%d@customer.example", k), "support@acme.example", fmt.Sprintf("Re: Order %d is late", k), fmt.Sprintf("r%d@customer.example", k), fmt.Sprintf("a%d@acme.example", k), "Thanks!")
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImportHistory: `deskmail import` of a 1,002-message mbox and a
// Maildir, killed midway and run again, stores every message exactly
// once, threads replies (agent mail as agent replies), queues no mail
// at all, and a third run finds nothing new.
func TestImportHistory(t *testing.T) {
	forEachDatabase(t, importHistoryOn)
}

func importHistoryOn(t *testing.T, db string) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := writeConfigOn(t, dir, db, `database: deskmail.db
agents:
  - {email: alice@acme.example, name: Alice Martin}
channels:
  - name: support
    addresses: [support@acme.example]
    send: {closing_mail: true}
sla:
  policies:
    - {name: standard, first_response: 1h, resolution: 8h}
`)
	const threads = 334 // 1,002 messages
	mbox := filepath.Join(dir, "history.mbox")
	writeHistoryMbox(t, mbox, threads)
	maildir, _ := filepath.Abs(filepath.Join("..", "..", "fixtures", "import", "maildir"))
	fixture, _ := filepath.Abs(filepath.Join("..", "..", "fixtures", "import", "history.mbox"))

	// First run, killed once some tickets are stored.
	cmd := exec.Command(bin, "import", "--config", cfg, mbox, maildir, fixture)
	cmd.Dir = dir
	var firstStderr bytes.Buffer
	cmd.Stderr = &firstStderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	killed := false
	var firstErr error
	deadline := time.Now().Add(60 * time.Second)
poll:
	for time.Now().Before(deadline) {
		select {
		case firstErr = <-exited:
			break poll
		case <-time.After(20 * time.Millisecond):
		}
		if n := countTickets(t, databaseOf(dir, db)); n >= 20 {
			cmd.Process.Kill()
			<-exited
			killed = true
			break
		}
	}
	if !killed {
		t.Logf("the first run finished (%v) before it could be killed; the rerun still must add nothing twice; its stderr: %s", firstErr, firstStderr.Bytes())
	}
	before := countTickets(t, databaseOf(dir, db))

	run := func() importSummary {
		t.Helper()
		c := exec.Command(bin, "import", "--config", cfg, "--json", mbox, maildir, fixture)
		c.Dir = dir
		out, err := c.Output()
		if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != exDataErr) {
			var stderr []byte
			if ok {
				stderr = ee.Stderr
			}
			t.Fatalf("import: %v\n%s\nstderr: %s", err, out, stderr)
		}
		var s importSummary
		if err := json.Unmarshal(out, &s); err != nil {
			t.Fatalf("summary %q: %v", out, err)
		}
		return s
	}
	second := run()
	wantMsgs := 3*threads + 2 + 5
	if second.Messages != wantMsgs || second.Failed != 1 || second.Reasons == nil {
		t.Errorf("second run: %+v, want %d messages and the one broken message failed", second, wantMsgs)
	}
	if killed && second.Duplicates == 0 {
		t.Errorf("second run after a kill with %d tickets stored found no duplicates: %+v", before, second)
	}

	// State through the CLI: one ticket per thread (+3 from the
	// fixtures), every message once, agent answers as agent replies.
	list := listWithClocks(t, bin, dir, cfg)
	if len(list) != threads+3 {
		t.Fatalf("%d tickets, want %d", len(list), threads+3)
	}
	total := 0
	for _, id := range []int64{list[0].ID, list[len(list)/2].ID, list[len(list)-1].ID} {
		tk := deskmailTicket(t, bin, dir, cfg, id)
		seen := map[string]bool{}
		for _, c := range tk.Conversations {
			if seen[c.MessageID] {
				t.Errorf("ticket %d: message %s stored twice", id, c.MessageID)
			}
			seen[c.MessageID] = true
			if c.FromEmail == "alice@acme.example" && (c.Private || c.Incoming || c.AgentID == nil) {
				t.Errorf("ticket %d: the agent's answer is not her outgoing reply: private %v incoming %v agent %v", id, c.Private, c.Incoming, c.AgentID)
			}
		}
		total += len(tk.Conversations)
	}
	if total < 7 {
		t.Errorf("sampled tickets hold %d conversations", total)
	}
	if n := countConversations(t, databaseOf(dir, db)); n != wantMsgs-1 {
		t.Errorf("%d conversations, want %d (every message but the broken one, once)", n, wantMsgs-1)
	}
	// Nothing was mailed: nothing is even queued.
	if out := deskmailCmd(t, bin, dir, "outbox", "list", "--config", cfg, "--json"); strings.TrimSpace(out) != "[]" && strings.TrimSpace(out) != "" && strings.TrimSpace(out) != "null" {
		t.Errorf("the import queued mail: %s", out)
	}

	// History has no SLA clock: nothing is due, nothing can escalate.
	for _, tk := range list {
		if tk.FrDueBy != nil || tk.DueBy != nil {
			t.Errorf("imported ticket %d has an SLA clock: fr_due_by %v due_by %v", tk.ID, tk.FrDueBy, tk.DueBy)
			break
		}
	}

	third := run()
	if third.Created != 0 || third.Threaded != 0 || third.Duplicates != wantMsgs-1 {
		t.Errorf("third run: %+v, want nothing new", third)
	}
}

// ticketClocks is a ticket of `tickets list --json` with its SLA due
// dates.
type ticketClocks struct {
	shown
	FrDueBy *time.Time `json:"fr_due_by"`
	DueBy   *time.Time `json:"due_by"`
}

// listWithClocks reads `tickets list --json`.
func listWithClocks(t *testing.T, bin, dir, cfg string) []ticketClocks {
	t.Helper()
	var list []ticketClocks
	if err := json.Unmarshal([]byte(deskmailCmd(t, bin, dir, "tickets", "list", "--config", cfg, "--json")), &list); err != nil {
		t.Fatal(err)
	}
	return list
}

func deskmailTicket(t *testing.T, bin, dir, cfg string, id int64) shown {
	t.Helper()
	var s shown
	out := deskmailCmd(t, bin, dir, "tickets", "show", fmt.Sprint(id), "--config", cfg, "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("tickets show %d: %v\n%s", id, err, out)
	}
	return s
}

// countTickets and countConversations read the database the import
// writes, while it runs (WAL readers do not block the writer). On
// SQLite they read through a read-only connection of their own, so that
// the probe can take no lock the import would wait for (store.Open
// migrates, which writes when a schema is behind).
func countTickets(t *testing.T, db string) int {
	return countRows(t, db, "tickets", func(tx *store.Tx) (int, error) { return tx.CountTickets() })
}

func countConversations(t *testing.T, db string) int {
	return countRows(t, db, "conversations", func(tx *store.Tx) (int, error) { return tx.CountConversations() })
}

func countRows(t *testing.T, db, table string, f func(tx *store.Tx) (int, error)) int {
	t.Helper()
	n := 0
	if !store.IsPostgres(db) {
		if _, err := os.Stat(db); err != nil {
			return 0
		}
		c, err := sql.Open("sqlite3", "file:"+db+"?mode=ro&_busy_timeout=10000")
		if err != nil {
			return 0
		}
		defer c.Close()
		if err := c.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
			return 0 // no schema yet
		}
		return n
	}
	st, err := store.Open(context.Background(), db, store.Options{ShortLived: true})
	if err != nil {
		return 0
	}
	defer st.Close()
	_ = st.Read(context.Background(), func(tx *store.Tx) error {
		var err error
		n, err = f(tx)
		return err
	})
	return n
}
