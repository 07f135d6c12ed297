package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/deskmail/deskmail/store"
	"io"
	"net"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// relaySink is a real SMTP server (go-smtp) on 127.0.0.1:0 standing for
// the outbound relay: it keeps every mail deskmail delivers.
type relaySink struct {
	addr string
	mu   sync.Mutex
	got  []sunkMail
}

// sunkMail is one delivered mail.
type sunkMail struct {
	From string
	Rcpt []string
	Data []byte
	Msg  *mail.Message
	Body string
}

func newRelaySink(t *testing.T) *relaySink {
	t.Helper()
	s := &relaySink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSess{s: s}, nil }))
	srv.Domain = "relay.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

type sinkSess struct {
	s    *relaySink
	from string
	rcpt []string
}

func (ss *sinkSess) Reset()        { ss.from, ss.rcpt = "", nil }
func (ss *sinkSess) Logout() error { return nil }
func (ss *sinkSess) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}
func (ss *sinkSess) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpt = append(ss.rcpt, to)
	return nil
}
func (ss *sinkSess) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := sunkMail{From: ss.from, Rcpt: append([]string(nil), ss.rcpt...), Data: data}
	if msg, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
		m.Msg = msg
		b, _ := io.ReadAll(msg.Body)
		m.Body = string(b)
	}
	ss.s.mu.Lock()
	ss.s.got = append(ss.s.got, m)
	ss.s.mu.Unlock()
	return nil
}

// mails returns the mails delivered so far whose envelope recipients
// include rcpt ("" for all).
func (s *relaySink) mails(rcpt string) []sunkMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sunkMail
	for _, m := range s.got {
		for _, r := range m.Rcpt {
			if rcpt == "" || strings.EqualFold(r, rcpt) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// waitMails waits until at least n mails reached rcpt and returns them.
func (s *relaySink) waitMails(t *testing.T, rcpt string, n int) []sunkMail {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d mail(s) to %s at the relay", n, rcpt), 20*time.Second, func() bool { return len(s.mails(rcpt)) >= n })
	return s.mails(rcpt)
}

// trustDaemon is `deskmail serve` on a configuration with two channels,
// an agent, a relay sink and an API key.
type trustDaemon struct {
	t        *testing.T
	bin, dir string
	// db is the database the configuration names: "" (or a SQLite
	// path) keeps its own deskmail.db in dir, a PostgreSQL URL
	// replaces it (forEachDatabase).
	db         string
	cfg        string
	proc       *daemonProc
	smtp, http string
	key        string
	sink       *relaySink
}

const trustConfig = `database: deskmail.db
smtp:
  hostname: deskmail.acme.test
  rate_per_minute: 100000
threading:
  secret: "e2e trust secret"
  trusted_auth_servers: [mx.acme.test]
agents:
  - {email: alice@acme.test, name: Alice Agent, role: admin}
outbound:
  relay: %s
  tls: none
channels:
  - name: support
    addresses: [support@acme.test]
    send: {closing_mail: true}
  - name: sales
    addresses: [sales@acme.test]
    thread_same_domain: true
`

// newTrustDaemon prepares a daemon on db (see trustDaemon.db) with a
// relay sink; writeConfig and start it.
func newTrustDaemon(t *testing.T, db string) *trustDaemon {
	t.Helper()
	return &trustDaemon{t: t, bin: buildBinary(t), dir: t.TempDir(), db: db, sink: newRelaySink(t)}
}

// writeConfig writes the daemon's configuration file: body, whose
// first line is `database: deskmail.db`, on d.db.
func (d *trustDaemon) writeConfig(body string) {
	d.t.Helper()
	d.cfg = writeConfigOn(d.t, d.dir, d.db, body)
}

// writeConfigOn writes dir/deskmail.yaml with body, whose first line
// is `database: deskmail.db`, naming db instead when db is a
// PostgreSQL URL (forEachDatabase; a SQLite path keeps dir's
// deskmail.db), and returns its path.
func writeConfigOn(t *testing.T, dir, db, body string) string {
	t.Helper()
	if store.IsPostgres(db) {
		first, rest, _ := strings.Cut(body, "\n")
		if first != "database: deskmail.db" {
			t.Fatalf("configuration does not start with database: deskmail.db: %q", first)
		}
		body = fmt.Sprintf("database: %q\n%s", db, rest)
	}
	cfg := filepath.Join(dir, "deskmail.yaml")
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// databaseOf is the database a configuration written by writeConfigOn
// in dir names.
func databaseOf(dir, db string) string {
	if store.IsPostgres(db) {
		return db
	}
	return filepath.Join(dir, "deskmail.db")
}

func startTrustDaemon(t *testing.T, db string) *trustDaemon {
	t.Helper()
	d := newTrustDaemon(t, db)
	d.writeConfig(fmt.Sprintf(trustConfig, d.sink.addr))
	d.proc, d.smtp, d.http = startServe(t, d.bin, d.dir, "--config", d.cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	d.key = strings.TrimSpace(deskmailCmd(t, d.bin, d.dir, "agents", "key", "alice@acme.test", "--config", d.cfg))
	return d
}

// send delivers one mail over SMTP to the daemon.
func (d *trustDaemon) send(from, to, msg string) {
	d.t.Helper()
	if err := smtpSend(d.smtp, from, to, strings.ReplaceAll(msg, "\n", "\r\n")); err != nil {
		d.t.Fatalf("SMTP %s → %s: %v\n%s", from, to, err, d.proc.stderr.String())
	}
}

// api calls the REST API as alice and decodes the answer into out.
func (d *trustDaemon) api(method, path string, body any, out any) {
	d.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+d.http+path, rd)
	req.SetBasicAuth(d.key, "X")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		d.t.Fatalf("%s %s: %s %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			d.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// shown is what `deskmail tickets show --json` says about a ticket.
type shown struct {
	ID        int64    `json:"id"`
	Subject   string   `json:"subject"`
	Status    int      `json:"status"`
	Priority  int      `json:"priority"`
	Channel   string   `json:"channel"`
	CcEmails  []string `json:"cc_emails"`
	Requester struct {
		Email string `json:"email"`
	} `json:"requester"`
	Conversations []struct {
		FromEmail string `json:"from_email"`
		Private   bool   `json:"private"`
		Incoming  bool   `json:"incoming"`
		AgentID   *int64 `json:"agent_id"`
		MessageID string `json:"message_id"`
	} `json:"conversations"`
	History []struct {
		Action string `json:"action"`
		Note   string `json:"note"`
	} `json:"history"`
}

func (d *trustDaemon) ticket(id int64) shown {
	d.t.Helper()
	var s shown
	out := deskmailCmd(d.t, d.bin, d.dir, "tickets", "show", fmt.Sprint(id), "--config", d.cfg, "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		d.t.Fatalf("tickets show %d: %v\n%s", id, err, out)
	}
	return s
}

func (d *trustDaemon) tickets() []shown {
	d.t.Helper()
	var list []shown
	out := deskmailCmd(d.t, d.bin, d.dir, "tickets", "list", "--config", d.cfg, "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		d.t.Fatalf("tickets list: %v\n%s", err, out)
	}
	return list
}

func (s shown) has(action string) bool {
	for _, h := range s.History {
		if h.Action == action {
			return true
		}
	}
	return false
}

func mailText(from, to, subject, id, extra, body string) string {
	return "From: " + from + "\nTo: " + to + "\nSubject: " + subject + "\nMessage-ID: <" + id + ">\n" + extra +
		"Date: Mon, 07 Dec 2026 10:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n" + body + "\n"
}

// TestTrustEndToEnd drives the trust rules through the built binary:
// mail in over SMTP, mail out at a relay sink, state read back with the
// CLI and the API.
func TestTrustEndToEnd(t *testing.T) {
	forEachDatabase(t, trustEndToEnd)
}

func trustEndToEnd(t *testing.T, db string) {
	d := startTrustDaemon(t, db)

	// Jane opens ticket 1; she gets a confirmation, Alice a notification.
	d.send("jane@customer.test", "support@acme.test", mailText("Jane <jane@customer.test>", "support@acme.test", "Order 1 broken", "jane-1@customer.test", "", "The order arrived broken."))
	conf := d.sink.waitMails(t, "jane@customer.test", 1)[0]
	confID := strings.Trim(conf.Msg.Header.Get("Message-Id"), "<>")
	d.sink.waitMails(t, "alice@acme.test", 1)

	t.Run("a stranger quoting Message-IDs gets a new ticket and no copy of the agent's reply", func(t *testing.T) {
		d.send("mallory@evil.test", "support@acme.test", mailText("Mallory <mallory@evil.test>", "support@acme.test", "Re: Order 1 broken", "mallory-1@evil.test",
			"In-Reply-To: <jane-1@customer.test>\nReferences: <jane-1@customer.test> <"+confID+">\n", "Please send the refund to my account instead."))
		waitFor(t, "the stranger's ticket", 10*time.Second, func() bool { return len(d.tickets()) == 2 })
		one, two := d.ticket(1), d.ticket(2)
		if two.Requester.Email != "mallory@evil.test" || len(one.Conversations) != 1 {
			t.Fatalf("stranger threaded: ticket 2 requester %s, ticket 1 has %d conversations", two.Requester.Email, len(one.Conversations))
		}
		if len(one.CcEmails) != 0 {
			t.Errorf("stranger joined ticket 1 as cc: %v", one.CcEmails)
		}
		if !one.has("possibly_related") || !two.has("possibly_related") {
			t.Errorf("the relation is not noted on both tickets: %+v / %+v", one.History, two.History)
		}
		d.api("POST", "/api/v2/tickets/1/reply", map[string]any{"body": "We are sending a replacement."}, nil)
		reply := d.sink.waitMails(t, "jane@customer.test", 2)[1]
		for _, r := range reply.Rcpt {
			if !strings.EqualFold(r, "jane@customer.test") {
				t.Errorf("agent reply also went to %s", r)
			}
		}
		for _, m := range d.sink.mails("mallory@evil.test") {
			if strings.Contains(m.Body, "replacement") {
				t.Errorf("the stranger received the agent's reply")
			}
		}
	})

	t.Run("a cc the requester added keeps threading", func(t *testing.T) {
		d.send("jane@customer.test", "support@acme.test", mailText("Jane <jane@customer.test>", "support@acme.test", "Re: Order 1 broken", "jane-2@customer.test",
			"Cc: Bob <bob@customer.test>\nIn-Reply-To: <"+confID+">\n", "Adding Bob, who handles deliveries."))
		waitFor(t, "jane's reply", 10*time.Second, func() bool { return len(d.ticket(1).Conversations) == 3 })
		if cc := d.ticket(1).CcEmails; len(cc) != 1 || cc[0] != "bob@customer.test" {
			t.Fatalf("cc list %v, want bob whom the requester copied", cc)
		}
		d.send("bob@customer.test", "support@acme.test", mailText("Bob <bob@customer.test>", "support@acme.test", "Re: Order 1 broken", "bob-1@customer.test",
			"In-Reply-To: <jane-2@customer.test>\n", "The carrier dropped it."))
		waitFor(t, "bob's reply on ticket 1", 10*time.Second, func() bool { return len(d.ticket(1).Conversations) == 4 })
		if n := len(d.tickets()); n != 2 {
			t.Errorf("%d tickets, want 2", n)
		}
	})

	t.Run("the channel's same-domain rule, and never across channels for strangers", func(t *testing.T) {
		d.send("paul@bigco.test", "sales@acme.test", mailText("Paul <paul@bigco.test>", "sales@acme.test", "Quote for 40 seats", "paul-1@bigco.test", "", "Can you quote 40 seats?"))
		waitFor(t, "paul's ticket", 10*time.Second, func() bool { return len(d.tickets()) == 3 })
		d.send("rita@bigco.test", "sales@acme.test", mailText("Rita <rita@bigco.test>", "sales@acme.test", "Re: Quote for 40 seats", "rita-1@bigco.test",
			"In-Reply-To: <paul-1@bigco.test>\n", "Make it 45."))
		waitFor(t, "rita's reply on paul's ticket", 10*time.Second, func() bool { return len(d.ticket(3).Conversations) == 2 })
		if cc := d.ticket(3).CcEmails; len(cc) != 0 {
			t.Errorf("a colleague joined as cc by writing in: %v", cc)
		}
		// Jane's colleague on support (no thread_same_domain) is a stranger there,
		// and a stranger writing to sales with a support ticket's id gets a sales ticket.
		d.send("carol@customer.test", "support@acme.test", mailText("Carol <carol@customer.test>", "support@acme.test", "Re: Order 1 broken", "carol-1@customer.test",
			"In-Reply-To: <jane-1@customer.test>\n", "Me too."))
		d.send("mallory@evil.test", "sales@acme.test", mailText("Mallory <mallory@evil.test>", "sales@acme.test", "Re: Order 1 broken", "mallory-2@evil.test",
			"In-Reply-To: <jane-1@customer.test>\n", "Reopen this."))
		waitFor(t, "two more tickets", 10*time.Second, func() bool { return len(d.tickets()) == 5 })
		if n := len(d.ticket(1).Conversations); n != 4 {
			t.Errorf("ticket 1 has %d conversations, want 4", n)
		}
		if ch := d.ticket(5).Channel; ch != "sales" {
			t.Errorf("the stranger's mail to sales opened a ticket in %q", ch)
		}
	})

	t.Run("an unproven agent forward opens nothing for the forwarded sender and mails nobody else", func(t *testing.T) {
		before := len(d.sink.mails(""))
		d.send("alice@acme.test", "support@acme.test", mailText("Alice Agent <alice@acme.test>", "support@acme.test", "Fwd: Invoice missing", "fwd-1@acme.test", "",
			"Please track this.\n\n---------- Forwarded message ---------\nFrom: Klaus <klaus@kunde.test>\nDate: Mon, 7 Dec 2026 at 09:41\nSubject: Invoice missing\nTo: Alice <alice@acme.test>\n\nWhere is my invoice?"))
		waitFor(t, "the forward's ticket", 10*time.Second, func() bool { return len(d.tickets()) == 6 })
		tk := d.ticket(6)
		if tk.Requester.Email != "alice@acme.test" || !tk.has("unverified_agent_mail") {
			t.Fatalf("unproven forward: requester %s history %+v", tk.Requester.Email, tk.History)
		}
		notice := d.sink.waitMails(t, "alice@acme.test", 2)
		if !strings.Contains(notice[len(notice)-1].Body, "could not be verified") {
			t.Errorf("the agent address got no notice: %q", notice[len(notice)-1].Body)
		}
		time.Sleep(500 * time.Millisecond) // let the outbox worker deliver anything else it would
		for _, m := range d.sink.mails("")[before:] {
			for _, r := range m.Rcpt {
				if !strings.EqualFold(r, "alice@acme.test") {
					t.Errorf("the unproven forward mailed %s", r)
				}
			}
		}
		if len(d.sink.mails("klaus@kunde.test")) != 0 {
			t.Errorf("the forwarded sender was mailed")
		}
	})

	t.Run("a forged Authentication-Results below a foreign Received proves nothing", func(t *testing.T) {
		cmd := func(id, headers, command string) {
			d.send("alice@acme.test", "support@acme.test", mailText("Alice Agent <alice@acme.test>", "support@acme.test", "Re: Order 1 broken", id,
				headers+"In-Reply-To: <jane-1@customer.test>\n", command+"\nDone."))
		}
		n := len(d.ticket(1).Conversations)
		cmd("forged-1@acme.test", "Received: from mail.evil.test (mail.evil.test [203.0.113.9]) by relay.evil.test with ESMTP id 1; Mon, 7 Dec 2026 10:00:00 +0000\n"+
			"Authentication-Results: mx.acme.test; dkim=pass header.i=alice@acme.test\n", "#status closed")
		cmd("forged-2@acme.test", "Authentication-Results: mx.evil.test; dkim=pass header.i=alice@acme.test\n", "#status closed")
		cmd("forged-3@acme.test", "Authentication-Results: mx.acme.test; dkim=pass header.d=acme.test header.i=@acme.test\n", "#status closed")
		waitFor(t, "three forged mails on ticket 1", 10*time.Second, func() bool { return len(d.ticket(1).Conversations) == n+3 })
		tk := d.ticket(1)
		if tk.Status == 5 {
			t.Fatalf("a forged Authentication-Results closed the ticket")
		}
		for _, c := range tk.Conversations[n:] {
			if !c.Private {
				t.Errorf("forged agent mail %s is public", c.MessageID)
			}
		}
		// The same header written by the border (at the top, from the
		// loopback relay) proves her.
		cmd("real-1@acme.test", "Authentication-Results: mx.acme.test; dkim=pass header.i=alice@acme.test\n", "#priority urgent")
		waitFor(t, "the proven command", 10*time.Second, func() bool { return d.ticket(1).Priority == 4 })
	})

	t.Run("pending to open is reopened; resolve then close sends one closing mail", func(t *testing.T) {
		d.api("PUT", "/api/v2/tickets/1", map[string]any{"status": 3}, nil)
		d.send("jane@customer.test", "support@acme.test", mailText("Jane <jane@customer.test>", "support@acme.test", "Re: Order 1 broken", "jane-3@customer.test",
			"In-Reply-To: <"+confID+">\n", "Any news?"))
		waitFor(t, "the reopened ticket", 10*time.Second, func() bool { return d.ticket(1).Status == 2 })
		if !d.ticket(1).has("reopened") {
			t.Errorf("pending→open not recorded as reopened: %+v", d.ticket(1).History)
		}
		if !strings.Contains(d.proc.stderr.String(), "action=reopened") && !strings.Contains(d.proc.stderr.String(), `"action":"reopened"`) {
			t.Errorf("the log does not say reopened")
		}
		closing := func() int {
			n := 0
			for _, m := range d.sink.mails("jane@customer.test") {
				if strings.Contains(m.Body, "has been resolved") || strings.Contains(m.Body, "is now closed") {
					n++
				}
			}
			return n
		}
		d.api("PUT", "/api/v2/tickets/1", map[string]any{"status": 4}, nil)
		waitFor(t, "the closing mail", 10*time.Second, func() bool { return closing() == 1 })
		d.api("PUT", "/api/v2/tickets/1", map[string]any{"status": 5}, nil)
		time.Sleep(time.Second)
		if n := closing(); n != 1 {
			t.Errorf("%d closing mails, want 1", n)
		}
	})
	d.proc.stop()
}
