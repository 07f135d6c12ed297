package poller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/internal/imaptest"
	"github.com/deskmail/deskmail/store"
)

// Tests that run the same against imapmemserver and Dovecot take a
// backend; see dovecot_test.go for the Dovecot side.

func testNewMailIdle(t *testing.T, b *backend) {
	h := newHarness(t, b, "poll_interval: 1h") // only IDLE can wake it
	h.start()
	eventually(t, 10*time.Second, "first poll", func() bool { hl := h.health(); return hl != nil && hl.LastOKAt != nil })
	sent := time.Now()
	b.appendMsg(t, "INBOX", message("new-1@example.net", "alice@example.net", "Parcel missing"), time.Now())
	eventually(t, 20*time.Second, "a ticket from the new mail", func() bool { return len(h.tickets()) == 1 })
	t.Logf("IDLE: ticket %v after append", time.Since(sent).Round(time.Millisecond))
	if got := h.tickets()[0].Subject; got != "Parcel missing" {
		t.Errorf("subject = %q", got)
	}
	eventually(t, 20*time.Second, `\Seen on the server`, func() bool {
		fs := b.flags(t, "INBOX")
		return len(fs) == 1 && hasFlag(firstFlags(fs), imap.FlagSeen)
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.notices {
		if n.Quiet {
			t.Errorf("new mail notice is quiet: %+v", n.Event)
		}
	}
}

func firstFlags(m map[imap.UID][]imap.Flag) []imap.Flag {
	for _, f := range m {
		return f
	}
	return nil
}

func TestNewMailIdle(t *testing.T) { testNewMailIdle(t, memServer(t, memOptions{})) }

func TestPollingWithoutIdle(t *testing.T) {
	b := memServer(t, memOptions{})
	h := newHarness(t, b, "idle: false", "poll_interval: 50ms")
	h.start()
	eventually(t, 10*time.Second, "first poll", func() bool { return h.checkpoint("INBOX") != nil })
	b.appendMsg(t, "INBOX", message("poll-1@example.net", "bob@example.net", "Refund"), time.Now())
	eventually(t, 20*time.Second, "a ticket by polling", func() bool { return len(h.tickets()) == 1 })
}

// testPostActions runs each post-action; withFallbacks adds the cases of
// servers without MOVE or UIDPLUS, which only the in-process server can
// play.
func testPostActions(t *testing.T, withFallbacks bool, mk func(t *testing.T, o memOptions) *backend) {
	cases := []struct {
		name  string
		caps  imap.CapSet
		extra []string
		check func(t *testing.T, b *backend)
	}{
		{name: "seen", extra: []string{"after: seen"}, check: func(t *testing.T, b *backend) {
			fs := b.flags(t, "INBOX")
			if len(fs) != 2 {
				t.Fatalf("INBOX holds %d messages, want 2", len(fs))
			}
			for uid, f := range fs {
				if !hasFlag(f, imap.FlagSeen) {
					t.Errorf("uid %d not seen: %v", uid, f)
				}
			}
		}},
		{name: "move", extra: []string{"after: move", "move_to: Done/Tickets"}, check: func(t *testing.T, b *backend) {
			if n := len(b.flags(t, "INBOX")); n != 0 {
				t.Errorf("INBOX still holds %d messages", n)
			}
			if n := len(b.flags(t, "Done/Tickets")); n != 2 {
				t.Errorf("Done/Tickets holds %d messages, want 2", n)
			}
		}},
		{name: "move-without-MOVE", caps: imap.CapSet{imap.CapIMAP4rev1: {}}, extra: []string{"after: move", "move_to: Done"},
			check: func(t *testing.T, b *backend) {
				if n := len(b.flags(t, "INBOX")); n != 0 {
					t.Errorf("INBOX still holds %d messages", n)
				}
				if n := len(b.flags(t, "Done")); n != 2 {
					t.Errorf("Done holds %d messages, want 2", n)
				}
			}},
		{name: "delete", extra: []string{"after: delete"}, check: func(t *testing.T, b *backend) {
			if n := len(b.flags(t, "INBOX")); n != 0 {
				t.Errorf("INBOX still holds %d messages", n)
			}
		}},
		{name: "delete-without-UIDPLUS", caps: imap.CapSet{imap.CapIMAP4rev1: {}}, extra: []string{"after: delete"},
			check: func(t *testing.T, b *backend) {
				if n := len(b.flags(t, "INBOX")); n != 0 {
					t.Errorf("INBOX still holds %d messages", n)
				}
			}},
	}
	for _, tc := range cases {
		if tc.caps != nil && !withFallbacks {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			b := mk(t, memOptions{caps: tc.caps})
			if b == nil {
				return
			}
			h := newHarness(t, b, tc.extra...)
			h.start()
			eventually(t, 10*time.Second, "first poll", func() bool { return h.checkpoint("INBOX") != nil })
			for i := range 2 {
				b.appendMsg(t, "INBOX", message(fmt.Sprintf("%s-%d@example.net", tc.name, i), "carol@example.net", "Question "+tc.name), time.Now())
			}
			eventually(t, 10*time.Second, "two tickets", func() bool { return len(h.tickets()) == 2 })
			eventually(t, 10*time.Second, "checkpoint past both", func() bool {
				cp := h.checkpoint("INBOX")
				return cp != nil && cp.LastUID >= 2
			})
			h.stop()
			tc.check(t, b)
		})
	}
}

func TestPostActions(t *testing.T) {
	testPostActions(t, true, func(t *testing.T, o memOptions) *backend { return memServer(t, o) })
}

// A crash after the commit and before the acknowledgement: the next
// run gets the message again, the pipeline says duplicate, and the
// acknowledgement is completed. One ticket, one conversation.
func testCrashBetweenCommitAndAck(t *testing.T, b *backend) {
	h := newHarness(t, b, "after: move", "move_to: Processed")
	var crashed atomic.Bool
	h.opts.afterCommit = func(channel, folder string, uids []imap.UID) error {
		if crashed.CompareAndSwap(false, true) {
			h.cancel() // the process dies here
			return errors.New("simulated crash")
		}
		return nil
	}
	b.appendMsg(t, "INBOX", message("crash-1@example.net", "dave@example.net", "Broken screen"), time.Now())
	// existing: import so that the message already there is taken on
	// the first poll (as history).
	h.cfg.Channels[0].IMAP.Existing = "import"
	h.start()
	h.pollers.Wait()
	if !crashed.Load() {
		t.Fatal("the crash hook did not run")
	}
	if n := len(h.tickets()); n != 1 {
		t.Fatalf("after the crash: %d tickets, want 1 (committed)", n)
	}
	if n := len(b.flags(t, "INBOX")); n != 1 {
		t.Fatalf("after the crash: INBOX holds %d messages, want 1 (not acknowledged)", n)
	}
	h.cancel = nil
	h.start() // restart
	eventually(t, 10*time.Second, "the move completed", func() bool { return len(b.flags(t, "INBOX")) == 0 })
	h.stop()
	if n := len(h.tickets()); n != 1 {
		t.Errorf("after restart: %d tickets, want 1", n)
	}
	if n := h.countRaw("duplicate"); n != 1 {
		t.Errorf("after restart: %d duplicate raw messages, want 1", n)
	}
	if n := len(b.flags(t, "Processed")); n != 1 {
		t.Errorf("Processed holds %d messages, want 1", n)
	}
}

func TestCrashBetweenCommitAndAck(t *testing.T) {
	testCrashBetweenCommitAndAck(t, memServer(t, memOptions{}))
}

// A new UIDVALIDITY re-scans the folder: stored mail comes back as
// duplicates, mail from before the channel existed stays skipped, new
// mail becomes tickets.
func testUIDValidityChange(t *testing.T, b *backend) {
	old := time.Now().Add(-48 * time.Hour)
	c := b.client(t)
	if err := c.Create("Support", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	b.appendWith(t, c, "Support", message("history-1@example.net", "erin@example.net", "Last year"), old)
	h := newHarness(t, b, "folders: [Support]", "existing: skip")
	h.start()
	eventually(t, 10*time.Second, "first poll", func() bool { return h.checkpoint("Support") != nil })
	b.appendWith(t, c, "Support", message("v1-new@example.net", "frank@example.net", "Before the change"), time.Now())
	eventually(t, 10*time.Second, "one ticket", func() bool { return len(h.tickets()) == 1 })
	eventually(t, 10*time.Second, "checkpoint", func() bool { return h.checkpoint("Support").LastUID >= 2 })
	h.stop()
	first := h.checkpoint("Support")

	// The folder is re-created (a server migration): new UIDVALIDITY,
	// the same messages under new UIDs, plus a new one.
	if err := c.Delete("Support").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Support", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	b.appendWith(t, c, "Support", message("history-1@example.net", "erin@example.net", "Last year"), old)
	b.appendWith(t, c, "Support", message("v1-new@example.net", "frank@example.net", "Before the change"), time.Now())
	b.appendWith(t, c, "Support", message("v2-new@example.net", "grace@example.net", "After the change"), time.Now())

	h.start()
	eventually(t, 10*time.Second, "re-scan", func() bool {
		cp := h.checkpoint("Support")
		return cp != nil && cp.UIDValidity != first.UIDValidity && cp.LastUID >= 3
	})
	h.stop()
	tks := h.tickets()
	var subjects []string
	for _, tk := range tks {
		subjects = append(subjects, tk.Subject)
	}
	if len(tks) != 2 {
		t.Fatalf("tickets %q, want Before the change and After the change", subjects)
	}
	if n := h.countRaw("duplicate"); n != 1 {
		t.Errorf("%d duplicates, want 1", n)
	}
	fs := b.flags(t, "Support")
	seen := 0
	for _, f := range fs {
		if hasFlag(f, imap.FlagSeen) {
			seen++
		}
	}
	if seen != 2 {
		t.Errorf("%d messages seen, want 2 (the history message is left alone)", seen)
	}
}

func TestUIDValidityChange(t *testing.T) { testUIDValidityChange(t, memServer(t, memOptions{})) }

func testWrongPassword(t *testing.T, b *backend) {
	h := newHarness(t, b, `password: "not the password"`)
	h.start()
	eventually(t, 10*time.Second, "an error in channel health", func() bool {
		hl := h.health()
		return hl != nil && hl.ConsecutiveFailures >= 2
	})
	h.stop()
	hl := h.health()
	t.Logf("health: %q", hl.LastError)
	if !strings.Contains(hl.LastError, "support") || !strings.Contains(strings.ToLower(hl.LastError), "login") {
		t.Errorf("last error %q should name the channel and the login", hl.LastError)
	}
	if strings.Contains(hl.LastError, "not the password") {
		t.Errorf("last error shows the password: %q", hl.LastError)
	}
	if hl.LastOKAt != nil {
		t.Errorf("last ok set: %v", hl.LastOKAt)
	}
}

func TestWrongPassword(t *testing.T) { testWrongPassword(t, memServer(t, memOptions{})) }

func TestPasswordFromFileAndEnv(t *testing.T) {
	b := memServer(t, memOptions{})
	t.Setenv("DESKMAIL_TEST_IMAP_PASSWORD", testPassword)
	h := newHarness(t, b, "password: env:DESKMAIL_TEST_IMAP_PASSWORD")
	h.start()
	eventually(t, 10*time.Second, "login with the password from the environment", func() bool {
		hl := h.health()
		return hl != nil && hl.LastOKAt != nil
	})
	h.stop()

	// An unset variable (validation would refuse it at load time; here
	// it disappears after): health names the variable.
	h2 := newHarness(t, b)
	h2.cfg.Channels[0].IMAP.Password = config.Secret{Env: "DESKMAIL_TEST_UNSET_VARIABLE"}
	h2.start()
	eventually(t, 10*time.Second, "an error for the unset variable", func() bool {
		hl := h2.health()
		return hl != nil && strings.Contains(hl.LastError, "DESKMAIL_TEST_UNSET_VARIABLE")
	})
}

// The server dies in the middle of a FETCH: the poller reconnects and
// every message ends up stored once and acknowledged.
func TestDropMidFetch(t *testing.T) {
	b := memServer(t, memOptions{dropAfter: 3000})
	c := b.client(t)
	for i := range 20 {
		b.appendWith(t, c, "INBOX", message(fmt.Sprintf("drop-%d@example.net", i), fmt.Sprintf("c%d@example.net", i), fmt.Sprintf("Order %d", i)), time.Now())
	}
	h := newHarness(t, b, "existing: import", "batch_size: 50")
	h.start()
	eventually(t, 10*time.Second, "20 tickets", func() bool { return len(h.tickets()) == 20 })
	eventually(t, 10*time.Second, "all seen", func() bool {
		n := 0
		for _, f := range b.flags(t, "INBOX") {
			if hasFlag(f, imap.FlagSeen) {
				n++
			}
		}
		return n == 20
	})
	h.stop()
	hl := h.health()
	if hl.LastError == "" {
		t.Errorf("the dropped connection is not in channel health")
	}
	t.Logf("health after the drop: %q", hl.LastError)
	if n := h.countRaw(""); n != 20 {
		t.Errorf("%d raw messages stored, want 20 (no fetch stored twice)", n)
	}
}

func testMalformedToFailedFolder(t *testing.T, b *backend) {
	h := newHarness(t, b, "failed_folder: Deskmail/Failed")
	h.start()
	eventually(t, 10*time.Second, "first poll", func() bool { return h.checkpoint("INBOX") != nil })
	b.appendMsg(t, "INBOX", []byte("this is not a mail message at all\r\n\r\njust bytes\r\n"), time.Now())
	b.appendMsg(t, "INBOX", message("good-1@example.net", "heidi@example.net", "Fine mail"), time.Now())
	eventually(t, 10*time.Second, "the malformed message in the failed folder", func() bool {
		return len(b.flags(t, "Deskmail/Failed")) == 1
	})
	eventually(t, 10*time.Second, "the good one stored", func() bool { return len(h.tickets()) == 1 })
	// The ticket exists at commit; \Seen is set just after. Wait for it
	// before stopping, or stopping can land in between.
	eventually(t, 10*time.Second, "the good one seen", func() bool {
		fs := b.flags(t, "INBOX")
		return len(fs) == 1 && hasFlag(firstFlags(fs), imap.FlagSeen)
	})
	h.stop()
	if n := h.countRaw("failed"); n != 1 {
		t.Errorf("%d raw messages failed, want 1 (kept raw)", n)
	}
	fs := b.flags(t, "INBOX")
	if len(fs) != 1 || !hasFlag(firstFlags(fs), imap.FlagSeen) {
		t.Errorf("INBOX = %v, want the good message, seen", fs)
	}
}

func TestMalformedToFailedFolder(t *testing.T) {
	testMalformedToFailedFolder(t, memServer(t, memOptions{}))
}

// existing: import takes what was there as quiet history (no mail
// sent for it); mail arriving later is not quiet.
func TestExistingImportIsQuiet(t *testing.T) {
	b := memServer(t, memOptions{})
	c := b.client(t)
	for i := range 3 {
		b.appendWith(t, c, "INBOX", message(fmt.Sprintf("old-%d@example.net", i), fmt.Sprintf("o%d@example.net", i), "Old"), time.Now().Add(-time.Hour))
	}
	h := newHarness(t, b, "existing: import")
	h.start()
	eventually(t, 10*time.Second, "3 imported tickets", func() bool { return len(h.tickets()) == 3 })
	b.appendWith(t, c, "INBOX", message("fresh@example.net", "fresh@example.net", "Fresh"), time.Now())
	eventually(t, 10*time.Second, "4 tickets", func() bool { return len(h.tickets()) == 4 })
	h.stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	quiet, loud := 0, 0
	for _, n := range h.notices {
		if n.Quiet {
			quiet++
		} else {
			loud++
			if n.Ticket == nil || n.Ticket.Subject != "Fresh" {
				t.Errorf("a loud notice for %+v", n.Ticket)
			}
		}
	}
	if quiet == 0 || loud == 0 {
		t.Errorf("notices: %d quiet, %d loud; want history quiet and the fresh one loud", quiet, loud)
	}
}

func TestExistingSkip(t *testing.T) {
	b := memServer(t, memOptions{})
	b.appendMsg(t, "INBOX", message("before@example.net", "x@example.net", "Before"), time.Now())
	h := newHarness(t, b, "existing: skip")
	h.start()
	eventually(t, 10*time.Second, "first poll", func() bool { hl := h.health(); return hl != nil && hl.LastOKAt != nil })
	b.appendMsg(t, "INBOX", message("after@example.net", "y@example.net", "After"), time.Now())
	eventually(t, 10*time.Second, "one ticket", func() bool { return len(h.tickets()) == 1 })
	h.stop()
	if s := h.tickets()[0].Subject; s != "After" {
		t.Errorf("ticket %q, want After", s)
	}
	for uid, f := range b.flags(t, "INBOX") {
		if uid == 1 && hasFlag(f, imap.FlagSeen) {
			t.Errorf("the skipped message was flagged")
		}
	}
}

// Two channels on one server: one broken (bad password) and one fine.
func TestBrokenChannelDoesNotStopOthers(t *testing.T) {
	b := memServer(t, memOptions{})
	h := newHarness(t, b)
	bad := h.cfg.Channels[0]
	im := *bad.IMAP
	im.Password.Inline = "wrong"
	bad.IMAP, bad.Name, bad.Addresses = &im, "broken", []string{"broken@example.com"}
	h.cfg.Channels = append(h.cfg.Channels, bad)
	h.start()
	if n := len(h.pollers.Folders()); n != 2 {
		t.Fatalf("%d pollers, want 2", n)
	}
	eventually(t, 10*time.Second, "first poll", func() bool { return h.checkpoint("INBOX") != nil })
	b.appendMsg(t, "INBOX", message("ok@example.net", "z@example.net", "Works"), time.Now())
	eventually(t, 10*time.Second, "a ticket through the good channel", func() bool { return len(h.tickets()) == 1 })
}

// existing: import of an INBOX whose history holds an agent's answer
// (From the agent, Cc the support address): it becomes the agent's
// outgoing reply on the customer's ticket, not a customer message, and
// nothing is mailed.
func TestExistingImportAgentMail(t *testing.T) {
	b := memServer(t, memOptions{})
	c := b.client(t)
	at := time.Now().Add(-48 * time.Hour)
	b.appendWith(t, c, "INBOX", imaptest.Mail("q1@customer.example", "Carol <carol@customer.example>", "support@example.com", "", "Printer on fire", at), at)
	b.appendWith(t, c, "INBOX", imaptest.Mail("a1@example.com", "Alice <alice@example.com>", "carol@customer.example", "support@example.com",
		"Re: Printer on fire", at.Add(time.Hour), "q1@customer.example"), at.Add(time.Hour))
	b.appendWith(t, c, "INBOX", imaptest.Mail("r1@customer.example", "carol@customer.example", "alice@example.com", "support@example.com",
		"Re: Printer on fire", at.Add(2*time.Hour), "q1@customer.example", "a1@example.com"), at.Add(2*time.Hour))
	h := newHarness(t, b, "existing: import")
	h.cfg.Agents = []config.AgentConfig{{Email: "alice@example.com", Name: "Alice"}}
	h.buildPipeline()
	h.start()
	eventually(t, 10*time.Second, "the history imported", func() bool { return h.countRaw("processed") == 3 })
	h.stop()
	tks := h.tickets()
	if len(tks) != 1 {
		t.Fatalf("%d tickets, want the one thread", len(tks))
	}
	var convs []store.Conversation
	var hist []store.History
	var alice *store.Agent
	err := h.st.Read(context.Background(), func(tx *store.Tx) (err error) {
		if convs, err = tx.Conversations(tks[0].ID); err != nil {
			return err
		}
		if hist, err = tx.TicketHistory(tks[0].ID); err != nil {
			return err
		}
		alice, err = tx.AgentByEmail("alice@example.com")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(convs) != 3 {
		t.Fatalf("%d conversations, want 3", len(convs))
	}
	a := convs[1]
	if a.MessageID != "a1@example.com" || a.Incoming || a.Private || a.AgentID == nil || *a.AgentID != alice.ID {
		t.Errorf("the agent's answer: message %s incoming %v private %v agent %v; want Alice's outgoing public reply",
			a.MessageID, a.Incoming, a.Private, a.AgentID)
	}
	replied := false
	for _, e := range hist {
		if e.Action == "sent_from_mailbox" && e.Actor == "alice@example.com" && strings.Contains(e.Note, "imported history") {
			replied = true
		}
	}
	if !replied {
		t.Errorf("no agent reply in the history: %+v", hist)
	}
	if tks[0].AgentRespondedAt == nil {
		t.Errorf("ticket has no agent response time")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.notices {
		if !n.Quiet {
			t.Errorf("history produced a loud notice: %s", n.Event)
		}
	}
}
