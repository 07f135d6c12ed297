package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// agentReplyConfig: one channel reached over SMTP whose shared mailbox
// also has a Sent folder deskmail watches (imapmemserver), an agent,
// and a relay sink.
const agentReplyConfig = `database: deskmail.db
smtp:
  hostname: mx.acme.example
  rate_per_minute: 100000
threading:
  secret: "agent reply e2e secret"
  hostname: mail.acme.example
agents:
  - {email: alice@acme.example, name: Alice Agent, role: admin}
outbound:
  relay: %s
  tls: none
channels:
  - name: support
    addresses: [support@acme.example]
    send: {closing_mail: true}
    imap: {host: 127.0.0.1, port: %d, tls: none, username: support, password: secret, poll_interval: 1s, idle: false, sent_folder: Sent}
`

// sentIMAP serves imapmemserver on 127.0.0.1:0 with user support /
// secret, an empty INBOX and a Sent folder, and returns its port and
// the user (to put mail in the Sent folder as the team's client does).
func sentIMAP(t *testing.T) (int, *imapmemserver.User) {
	t.Helper()
	u := imapmemserver.NewUser("support", "secret")
	for _, f := range []string{"INBOX", "Sent"} {
		if err := u.Create(f, nil); err != nil {
			t.Fatal(err)
		}
	}
	return serveMemIMAP(t, u), u
}

// agentReplyFixture reads fixtures/threading/agent-reply/NAME.eml with
// its {{PLACEHOLDERS}} filled in (LF line ends: send writes CRLF).
func agentReplyFixture(t *testing.T, name string, vars map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "threading", "agent-reply", name+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	if i := strings.Index(s, "{{"); i >= 0 {
		t.Fatalf("%s: placeholder left: %s", name, s[i:min(len(s), i+40)])
	}
	return s
}

var msgIDList = regexp.MustCompile(`<([^<>\s]+)>`)

// ids returns the Message-IDs of a header of a sunk mail, without <>.
func (m sunkMail) ids(name string) []string {
	var out []string
	for _, sm := range msgIDList.FindAllStringSubmatch(m.Msg.Header.Get(name), -1) {
		out = append(out, sm[1])
	}
	return out
}

func (m sunkMail) id() string { return strings.Trim(m.Msg.Header.Get("Message-Id"), "<> ") }

// convsShown is the part of `deskmail tickets show --json` this test reads.
type convsShown struct {
	ID            int64 `json:"id"`
	Status        int   `json:"status"`
	Conversations []struct {
		ID        int64  `json:"id"`
		Incoming  bool   `json:"incoming"`
		Private   bool   `json:"private"`
		FromEmail string `json:"from_email"`
		BodyText  string `json:"body_text"`
		MessageID string `json:"message_id"`
	} `json:"conversations"`
	History []struct {
		Action string `json:"action"`
		Note   string `json:"note"`
	} `json:"history"`
}

// TestAgentReplyByMailThreadsForCustomer drives an agent's replies by
// mail through the built binary: the customer's mail in over SMTP, the
// notification out at a relay sink, the agent answering it from a
// laptop's mail client (proven by the notification's signed reply
// address), the customer's copy checked at the sink, the customer
// answering that copy; then #send-and-resolve, and a reply the team
// sends from the shared mailbox, read from its Sent folder
// (imapmemserver). State is read back with the CLI and the API.
func TestAgentReplyByMailThreadsForCustomer(t *testing.T) {
	forEachDatabase(t, agentReplyByMailThreadsForCustomerOn)
}

func agentReplyByMailThreadsForCustomerOn(t *testing.T, db string) {
	port, imapUser := sentIMAP(t)
	d := newTrustDaemon(t, db)
	d.writeConfig(fmt.Sprintf(agentReplyConfig, d.sink.addr, port))
	d.proc, d.smtp, d.http = startServe(t, d.bin, d.dir, "--config", d.cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	d.key = strings.TrimSpace(deskmailCmd(t, d.bin, d.dir, "agents", "key", "alice@acme.example", "--config", d.cfg))
	const jane, alice = "jane.doe@customer.example", "alice@acme.example"
	show := func() convsShown {
		t.Helper()
		var s convsShown
		out := deskmailCmd(t, d.bin, d.dir, "tickets", "show", "1", "--config", d.cfg, "--json")
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("tickets show 1: %v\n%s", err, out)
		}
		return s
	}
	// notification waits for alice's n-th notification and returns what
	// her client answers: its Message-ID and Reply-To address.
	notification := func(n int) map[string]string {
		t.Helper()
		m := d.sink.waitMails(t, alice, n)[n-1]
		replyTo := msgIDList.FindStringSubmatch(m.Msg.Header.Get("Reply-To"))
		if replyTo == nil || !strings.HasPrefix(replyTo[1], "support+") {
			t.Fatalf("notification %d Reply-To %q", n, m.Msg.Header.Get("Reply-To"))
		}
		return map[string]string{"NOTIFICATION_ID": m.id(), "NOTIFICATION_REPLY_TO": replyTo[1]}
	}
	// customerCopy waits for jane's n-th mail and checks that nothing of
	// the agent's own mail — Message-ID, host name, address — reached
	// her: not in Message-ID, In-Reply-To, References, Received or any
	// other header, nor in the body.
	agentIDs := []string{}
	var notifIDs []string
	customerCopy := func(n int, wantIRT string, wantRefs ...string) sunkMail {
		t.Helper()
		m := d.sink.waitMails(t, jane, n)[n-1]
		raw := string(m.Data)
		for _, leak := range append([]string{"agent-laptop", "192.168.1.23", alice, "Received:", "X-Originating-IP", "User-Agent", "X-Mailer"}, append(agentIDs, notifIDs...)...) {
			if strings.Contains(raw, leak) {
				t.Errorf("mail %d to the customer contains %q:\n%s", n, leak, raw)
			}
		}
		if !strings.HasPrefix(m.id(), "deskmail.t1.") || !strings.HasSuffix(m.id(), "@mail.acme.example") {
			t.Errorf("mail %d Message-ID %q is not ours", n, m.id())
		}
		if irt := m.ids("In-Reply-To"); len(irt) != 1 || irt[0] != wantIRT {
			t.Errorf("mail %d In-Reply-To %v, want %s", n, irt, wantIRT)
		}
		refs := m.ids("References")
		if len(refs) == 0 || refs[len(refs)-1] != wantIRT {
			t.Errorf("mail %d References %v do not end with the message answered %s", n, refs, wantIRT)
		}
		for _, w := range wantRefs {
			if !strings.Contains(" "+strings.Join(refs, " ")+" ", " "+w+" ") {
				t.Errorf("mail %d References %v lack %s", n, refs, w)
			}
		}
		return m
	}
	vars := func(base map[string]string, copyMail sunkMail) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		out["AGENT_REPLY_ID"] = copyMail.id()
		var refs []string
		for _, id := range append(copyMail.ids("References"), copyMail.id()) {
			refs = append(refs, "<"+id+">")
		}
		out["AGENT_REPLY_REFERENCES"] = strings.Join(refs, " ")
		return out
	}

	d.send(jane, "support@acme.example", agentReplyFixture(t, "01-customer-new", nil))
	conf := d.sink.waitMails(t, jane, 1)[0]
	confID := conf.id()
	n1 := notification(1)
	notifIDs = append(notifIDs, n1["NOTIFICATION_ID"])

	// 1. Alice answers the notification from Thunderbird on her laptop.
	const agentID1 = "c0ffee12-3456-4789-abcd-0123456789ab@agent-laptop.local"
	agentIDs = append(agentIDs, agentID1)
	d.send(alice, n1["NOTIFICATION_REPLY_TO"], agentReplyFixture(t, "02-agent-thunderbird-reply", n1))
	// Our confirmation is the latest message Jane saw: the reply answers it.
	reply1 := customerCopy(2, confID, "7d1e0c55-jane-1@customer.example", confID)
	if !strings.Contains(reply1.Body, "a replacement shade is on its way") || strings.Contains(reply1.Body, "Jane Doe via Support wrote") {
		t.Errorf("the reply's text as mailed:\n%s", reply1.Body)
	}
	if !strings.Contains(string(reply1.Data), "label.png") || !strings.Contains(string(reply1.Data), "iVBORw0KGgo") {
		t.Errorf("the agent's inline image did not reach the customer:\n%s", reply1.Data)
	}
	tk := show()
	last := tk.Conversations[len(tk.Conversations)-1]
	if last.Incoming || last.Private || last.FromEmail != alice || last.MessageID != reply1.id() {
		t.Errorf("the agent's reply is stored as %+v; want the Message-ID sent to the customer, %s", last, reply1.id())
	}

	// Her own Message-ID still maps to the ticket: a follow-up in her
	// client's thread (no signed address this time) lands on ticket 1.
	d.send(alice, "support@acme.example", mailText("Alice Agent <"+alice+">", "support@acme.example", "Re: Order 1042 arrived broken [#1]",
		"c0ffee12-follow-up@agent-laptop.local", "In-Reply-To: <"+agentID1+">\n", "One more thing."))
	agentIDs = append(agentIDs, "c0ffee12-follow-up@agent-laptop.local")
	waitFor(t, "the follow-up on ticket 1", 10*time.Second, func() bool { return len(show().Conversations) == 3 })

	// 2. Jane answers the copy she got: it threads onto ticket 1.
	d.send(jane, "support@acme.example", agentReplyFixture(t, "03-customer-reply-to-agent", vars(nil, reply1)))
	waitFor(t, "jane's answer on ticket 1", 10*time.Second, func() bool { return len(show().Conversations) == 4 })
	if n := len(d.tickets()); n != 1 {
		t.Fatalf("%d tickets, want 1", n)
	}

	// 3. #send-and-resolve from Apple Mail, answering the notification
	// of Jane's answer: the reply answers Jane's latest mail.
	n2 := notification(2)
	notifIDs = append(notifIDs, n2["NOTIFICATION_ID"])
	agentIDs = append(agentIDs, "5A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D@agent-laptop.local")
	d.send(alice, n2["NOTIFICATION_REPLY_TO"], agentReplyFixture(t, "04-agent-send-and-resolve", n2))
	reply2 := customerCopy(3, "7d1e0c55-jane-2@customer.example", "7d1e0c55-jane-1@customer.example", confID, reply1.id())
	if !strings.Contains(reply2.Body, "It arrives tomorrow") || strings.Contains(reply2.Body, "send-and-resolve") {
		t.Errorf("the send-and-resolve reply as mailed:\n%s", reply2.Body)
	}
	// The closing mail follows the reply in Jane's thread.
	closing := customerCopy(4, reply2.id(), reply1.id())
	if !strings.Contains(closing.Body, "resolved") {
		t.Errorf("mail 4 is not the closing mail:\n%s", closing.Body)
	}
	tk = show()
	if tk.Status != 4 {
		t.Errorf("status %d after #send-and-resolve, want 4", tk.Status)
	}
	if last := tk.Conversations[len(tk.Conversations)-1]; last.MessageID != reply2.id() || strings.Contains(last.BodyText, "send-and-resolve") {
		t.Errorf("the send-and-resolve reply is stored as %+v; want Message-ID %s", last, reply2.id())
	}

	// 4. Jane answers that copy: the resolved ticket is reopened.
	d.send(jane, "support@acme.example", agentReplyFixture(t, "05-customer-reply-after-resolve", vars(nil, reply2)))
	waitFor(t, "the reopened ticket", 10*time.Second, func() bool { return show().Status == 2 })

	// 5. The team answers from the shared mailbox: read from its Sent
	// folder, threaded, never mailed again; Jane's answer to it threads.
	const sentID = "AM0PR01MB7788A1B2C3D4E5F6@AM0PR01MB7788.eurprd01.prod.outlook.com"
	sent := agentReplyFixture(t, "06-sent-folder-reply", nil)
	if _, err := imapUser.Append("Sent", literal{bytes.NewReader([]byte(sent))}, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}}); err != nil {
		t.Fatal(err)
	}
	hasID := func(id string) bool {
		for _, c := range show().Conversations {
			if c.MessageID == id {
				return true
			}
		}
		return false
	}
	waitFor(t, "the Sent-folder reply on ticket 1", 20*time.Second, func() bool { return hasID(sentID) })
	d.send(jane, "support@acme.example", agentReplyFixture(t, "07-customer-reply-to-sent", nil))
	waitFor(t, "jane's answer to the Sent-folder reply", 10*time.Second, func() bool { return hasID("7d1e0c55-jane-4@customer.example") })

	// 6. Alice answers the notification of that answer by mail: Jane's
	// copy carries the Sent-folder reply in its References.
	n4 := notification(4)
	notifIDs = append(notifIDs, n4["NOTIFICATION_ID"])
	agentIDs = append(agentIDs, "c0ffee12-3456-4789-abcd-0123456789ff@agent-laptop.local")
	d.send(alice, n4["NOTIFICATION_REPLY_TO"], agentReplyFixture(t, "08-agent-reply-after-sent", n4))
	reply3 := customerCopy(5, "7d1e0c55-jane-4@customer.example", sentID, reply2.id(), "7d1e0c55-jane-3@customer.example")
	if !strings.Contains(reply3.Body, "A green shade leaves today") {
		t.Errorf("mail 5 is not the last reply:\n%s", reply3.Body)
	}
	if got := d.sink.mails(jane); len(got) != 5 {
		t.Errorf("%d mails to the customer, want 5 (the Sent-folder reply is not sent again)", len(got))
	}
	if n := len(d.tickets()); n != 1 {
		t.Errorf("%d tickets, want 1", n)
	}

	// Read back through the API and the outbox: each agent reply by mail
	// is the conversation whose Message-ID the customer received.
	var convs []struct {
		MessageID string `json:"message_id"`
		Incoming  bool   `json:"incoming"`
		Private   bool   `json:"private"`
	}
	d.api("GET", "/api/v2/tickets/1/conversations", nil, &convs)
	byID := map[string]bool{}
	for _, c := range convs {
		byID[c.MessageID] = true
		for _, a := range agentIDs[:1] {
			if c.MessageID == a {
				t.Errorf("the API shows the agent's own Message-ID %s as a conversation's", a)
			}
		}
	}
	for _, m := range []sunkMail{reply1, reply2, reply3} {
		if !byID[m.id()] {
			t.Errorf("no conversation records the Message-ID %s the customer received", m.id())
		}
	}
	var outbox []struct {
		Kind      string   `json:"kind"`
		MessageID string   `json:"message_id"`
		To        []string `json:"to"`
		State     string   `json:"state"`
	}
	out := deskmailCmd(t, d.bin, d.dir, "outbox", "list", "--config", d.cfg, "--json")
	if err := json.Unmarshal([]byte(out), &outbox); err != nil {
		t.Fatalf("outbox list: %v\n%s", err, out)
	}
	replies := 0
	for _, o := range outbox {
		if o.Kind == "agent_reply" {
			replies++
			if len(o.To) != 1 || o.To[0] != jane || !byID[o.MessageID] {
				t.Errorf("outbox agent reply %+v", o)
			}
		}
	}
	if replies != 3 {
		t.Errorf("%d agent replies in the outbox, want 3:\n%s", replies, out)
	}
	d.proc.stop()
}
