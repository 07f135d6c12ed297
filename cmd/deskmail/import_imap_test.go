package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/deskmail/deskmail/internal/imaptest"
)

// TestImportIMAP: `deskmail import --channel support --imap` of a
// channel's configured mailbox (INBOX and its Sent folder, on the
// in-process imapmemserver).
func TestImportIMAP(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db string) {
		u := imapmemserver.NewUser("support", "secret")
		if err := u.Create("INBOX", nil); err != nil {
			t.Fatal(err)
		}
		testImportIMAP(t, fmt.Sprintf("127.0.0.1:%d", serveMemIMAP(t, u)), false, db)
	})
}

// TestDovecotImportIMAP: the same against a real Dovecot, named by
// imap:// URLs with the password from the environment.
func TestDovecotImportIMAP(t *testing.T) {
	d := imaptest.Dovecot(t, "support", "secret")
	testImportIMAP(t, fmt.Sprintf("%s:%d", d.Host, d.Port), true, "")
}

// testImportIMAP fills INBOX and Sent of the IMAP server at addr with
// 100 threads (customer question, Alice's answer — in Sent, or in
// INBOX with support in Cc — and the customer's reply), each folder
// in the reverse of date order, and imports them with the built binary
// through a proxy that cuts the connection the first time a folder's
// newest message's body is fetched (a crash midway, after the first batch is
// committed). The rerun imports the rest, counting what was stored as
// duplicates without fetching it; a third run finds nothing new. The
// threads come out as live mail would make them (one ticket each,
// Alice's answers her outgoing replies, the customer's reply reopening
// it), with no SLA clock, nothing queued, and the server untouched
// (EXAMINE: no flag set, nothing moved). Then `deskmail serve` on the
// same database and a relay sink delivers only mail about a live
// ticket: nothing of the history is mailed.
// testImportIMAP runs the import scenario against the IMAP server at
// addr, on db (forEachDatabase's; "" for the SQLite file in the
// test's directory).
func testImportIMAP(t *testing.T, addr string, viaURL bool, db string) {
	bin := buildBinary(t)
	dir := t.TempDir()
	const threads = 100
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("support", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	mailAt := func(k, step int) time.Time { return base.Add(time.Duration(k*10+step*3) * time.Minute) }
	type msg struct {
		folder string
		raw    []byte
		at     time.Time
	}
	var inbox, sent []msg
	for k := range threads {
		cust := fmt.Sprintf("c%d@customer.example", k)
		subj := fmt.Sprintf("Order %d is late", k)
		q, a, r := fmt.Sprintf("q%d@customer.example", k), fmt.Sprintf("a%d@acme.example", k), fmt.Sprintf("r%d@customer.example", k)
		inbox = append(inbox, msg{"INBOX", imaptest.Mail(q, cust, "support@acme.example", "", subj, mailAt(k, 0)), mailAt(k, 0)})
		if k%2 == 0 {
			sent = append(sent, msg{"Sent", imaptest.Mail(a, "Alice Martin <alice@acme.example>", cust, "", "Re: "+subj, mailAt(k, 1), q), mailAt(k, 1)})
		} else {
			inbox = append(inbox, msg{"INBOX", imaptest.Mail(a, "Alice Martin <alice@acme.example>", cust, "support@acme.example", "Re: "+subj, mailAt(k, 1), q), mailAt(k, 1)})
		}
		inbox = append(inbox, msg{"INBOX", imaptest.Mail(r, cust, "support@acme.example", "", "Re: "+subj, mailAt(k, 2), q, a), mailAt(k, 2)})
	}
	// Newest first: UID order is not date order.
	for i := len(inbox) - 1; i >= 0; i-- {
		imaptest.Append(t, c, "INBOX", inbox[i].raw, inbox[i].at)
	}
	for i := len(sent) - 1; i >= 0; i-- {
		imaptest.Append(t, c, "Sent", sent[i].raw, sent[i].at)
	}
	total := len(inbox) + len(sent)
	before := serverState(t, c, "INBOX", "Sent")

	// UID 1 of each folder is its newest message: in the last batch.
	proxy := newCutProxy(t, addr, 1)
	proxy.limit.Store(1)
	host, port, _ := net.SplitHostPort(proxy.addr)
	sink := newRelaySink(t)
	cfg := writeConfigOn(t, dir, db, fmt.Sprintf(`database: deskmail.db
agents:
  - {email: alice@acme.example, name: Alice Martin}
outbound:
  relay: %s
  tls: none
channels:
  - name: support
    addresses: [support@acme.example]
    send: {closing_mail: true}
    imap:
      host: %s
      port: %s
      tls: none
      username: support
      password: env:DESKMAIL_TEST_IMAP_PASSWORD
      sent_folder: Sent
      poll_interval: 1s
sla:
  policies:
    - {name: standard, first_response: 1h, resolution: 8h}
`, sink.addr, host, port))
	t.Setenv("DESKMAIL_TEST_IMAP_PASSWORD", "secret") // for the binary
	args := []string{"import", "--config", cfg, "--json", "--channel", "support"}
	if viaURL {
		args = append(args, "--password", "env:DESKMAIL_TEST_IMAP_PASSWORD",
			fmt.Sprintf("imap://support@%s/INBOX?tls=none", proxy.addr), fmt.Sprintf("imap://support@%s/Sent?tls=none", proxy.addr))
	} else {
		args = append(args, "--imap")
	}
	run := func() (importSummary, string, error) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var s importSummary
		if err == nil {
			if jerr := json.Unmarshal(out, &s); jerr != nil {
				t.Fatalf("summary %q: %v", out, jerr)
			}
		}
		return s, stderr.String(), err
	}

	// First run: cut off in the second batch.
	_, stderr, err := run()
	if err == nil || !strings.Contains(stderr, "run the same command again") {
		t.Fatalf("first run: %v, want it cut off midway with advice\n%s", err, stderr)
	}
	stored := countConversations(t, databaseOf(dir, db))
	if stored == 0 || stored >= total {
		t.Fatalf("%d of %d messages stored by the cut-off run, want some\n%s", stored, total, stderr)
	}

	// Second run: the rest; what is stored is not fetched again.
	second, stderr, err := run()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, stderr)
	}
	if second.Messages != total || second.Duplicates != stored || second.Failed != 0 ||
		second.Created+second.Threaded+second.Duplicates != total {
		t.Errorf("second run: %+v, want %d messages, the %d stored as duplicates and the rest imported", second, total, stored)
	}
	if n := proxy.cuts.Load(); n != 3 {
		t.Errorf("UID 1's body was fetched %d times, want 3 (cut, then once in each folder)", n)
	}
	third, stderr, err := run()
	if err != nil {
		t.Fatalf("third run: %v\n%s", err, stderr)
	}
	if third.Created != 0 || third.Threaded != 0 || third.Duplicates != total || third.Failed != 0 {
		t.Errorf("third run: %+v, want nothing new and %d duplicates", third, total)
	}

	// The threads, read back through the CLI.
	list := listWithClocks(t, bin, dir, cfg)
	if len(list) != threads {
		t.Fatalf("%d tickets, want %d", len(list), threads)
	}
	if n := countConversations(t, databaseOf(dir, db)); n != total {
		t.Errorf("%d conversations, want %d (every message once)", n, total)
	}
	for _, tk := range list {
		if tk.FrDueBy != nil || tk.DueBy != nil {
			t.Errorf("imported ticket %d has an SLA clock", tk.ID)
			break
		}
	}
	for _, i := range []int{0, 1, threads/2 + 1, threads - 1} {
		tk := deskmailTicket(t, bin, dir, cfg, list[i].ID)
		var k int
		if _, err := fmt.Sscanf(tk.Subject, "Order %d is late", &k); err != nil {
			t.Fatalf("ticket %d: subject %q", tk.ID, tk.Subject)
		}
		want := []string{fmt.Sprintf("q%d@customer.example", k), fmt.Sprintf("a%d@acme.example", k), fmt.Sprintf("r%d@customer.example", k)}
		if len(tk.Conversations) != 3 {
			t.Fatalf("ticket %d (thread %d): %d conversations, want 3", tk.ID, k, len(tk.Conversations))
		}
		for j, cv := range tk.Conversations {
			if cv.MessageID != want[j] {
				t.Errorf("ticket %d conversation %d is %s, want %s (date order)", tk.ID, j, cv.MessageID, want[j])
			}
		}
		a := tk.Conversations[1]
		if a.FromEmail != "alice@acme.example" || a.Incoming || a.Private || a.AgentID == nil {
			t.Errorf("thread %d: Alice's answer (from %s) is not her outgoing reply: incoming %v private %v agent %v", k, a.FromEmail, a.Incoming, a.Private, a.AgentID)
		}
		if !tk.Conversations[2].Incoming || tk.Status != 2 || tk.Requester.Email != fmt.Sprintf("c%d@customer.example", k) {
			t.Errorf("thread %d: status %d requester %s; want the customer's reply to reopen it (2)", k, tk.Status, tk.Requester.Email)
		}
	}
	if out := strings.TrimSpace(deskmailCmd(t, bin, dir, "outbox", "list", "--config", cfg, "--json")); out != "[]" {
		t.Errorf("the import queued mail: %s", out)
	}
	if after := serverState(t, c, "INBOX", "Sent"); after != before {
		t.Errorf("the import changed the server:\nbefore %s\nafter  %s", before, after)
	}

	// The daemon on the same database mails the live customer only.
	p, smtpAddr, _ := startServe(t, bin, dir, "--config", cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	if err := smtpSend(smtpAddr, "new@customer.example", "support@acme.example",
		testMail("new@customer.example", "support@acme.example", "A live question", "live@customer.example")); err != nil {
		t.Fatal(err)
	}
	sink.waitMails(t, "new@customer.example", 1)
	p.stop()
	// Everything mailed is about the live ticket (the customer's
	// confirmation, the agent's notification); nothing of the history.
	for _, m := range sink.mails("") {
		if subj := m.Msg.Header.Get("Subject"); !strings.Contains(subj, "A live question") {
			t.Errorf("the relay got mail to %s about %q: history was mailed", strings.Join(m.Rcpt, ","), subj)
		}
	}
}

// serverState describes folders as the server has them: message count,
// and each message's UID and flags, plus the folder list.
func serverState(t *testing.T, c *imapclient.Client, folders ...string) string {
	t.Helper()
	var b strings.Builder
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range list {
		b.WriteString(l.Mailbox + " ")
	}
	for _, f := range folders {
		sel, err := c.Select(f, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "| %s %d:", f, sel.NumMessages)
		var all imap.SeqSet
		all.AddRange(1, 0)
		bufs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range bufs {
			fmt.Fprintf(&b, " %d%v", m.UID, m.Flags)
		}
	}
	return b.String()
}

// TestImportIMAPUsage: IMAP sources that cannot be used fail at once,
// in one line, before anything is read.
func TestImportIMAPUsage(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "deskmail.yaml")
	if err := os.WriteFile(cfg, []byte("database: deskmail.db\nchannels:\n  - name: support\n    addresses: [support@acme.example]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--imap"}, "name it with --channel"},
		{[]string{"--channel", "support", "--imap"}, "has no imap section"},
		{[]string{"--password", "env:PW", "imaps://support:hunter2@imap.example.com/INBOX"}, "put no password in the URL"},
		{[]string{"imaps://support@imap.example.com/INBOX"}, "--password env:NAME or file:PATH is required"},
		{[]string{"--password", "hunter2", "imaps://support@imap.example.com/INBOX"}, "never the password itself"},
		{[]string{"--password", "env:PW", "imap://support@imap.example.com/INBOX?tls=none"}, "allowed only for loopback"},
	} {
		cmd := exec.Command(bin, append([]string{"import", "--config", cfg}, c.args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) || strings.Contains(string(out), "hunter2") {
			t.Errorf("import %v: %v\n%s\nwant an error saying %q (and no password)", c.args, err, out, c.want)
		}
	}
}
