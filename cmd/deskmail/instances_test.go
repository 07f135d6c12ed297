package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

const instancesConfig = `database: %s
smtp:
  hostname: deskmail.acme.test
  rate_per_minute: 100000
outbound:
  relay: %s
  tls: none
channels:
  - name: support
    addresses: [support@acme.test]
  - name: mailbox
    addresses: [mailbox@acme.test]
    imap:
      host: 127.0.0.1
      port: %d
      tls: none
      username: support
      password: secret
      existing: import
      poll_interval: 1s
`

// fencedIMAP is imapmemserver behind imapserver.New whose STORE (the
// poller's acknowledgement: \Seen) first checks, in the database,
// that every message it flags is committed: a flag before the commit
// is recorded as a violation.
type fencedIMAP struct {
	user *imapmemserver.User
	db   *sql.DB

	mu    sync.Mutex
	ids   map[imap.UID]string // UID → Message-ID
	flags map[imap.UID]int
	early []string // violations
}

type fencedSession struct {
	imapserver.Session
	f *fencedIMAP
}

func (s fencedSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	s.f.check(numSet)
	return s.Session.Store(w, numSet, flags, options)
}

func (f *fencedIMAP) check(numSet imap.NumSet) {
	set, ok := numSet.(imap.UIDSet)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !ok {
		f.early = append(f.early, fmt.Sprintf("STORE by sequence numbers %v", numSet))
		return
	}
	for uid, id := range f.ids {
		if !set.Contains(uid) {
			continue
		}
		var n int
		if err := f.db.QueryRow("SELECT COUNT(*) FROM message_ids WHERE message_id=$1", id).Scan(&n); err != nil || n != 1 {
			f.early = append(f.early, fmt.Sprintf("uid %d (%s) flagged with %d committed rows (%v)", uid, id, n, err))
		}
		f.flags[uid]++
	}
}

func (f *fencedIMAP) add(t *testing.T, id string) {
	t.Helper()
	raw := testMail("imap-"+id, "mailbox@acme.test", "By IMAP "+id, id)
	data, err := f.user.Append("INBOX", literal{bytes.NewReader([]byte(raw))}, &imap.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.ids[data.UID] = id
	f.mu.Unlock()
}

// instancesMailbox is the IMAP mailbox TestPostgresInstances puts
// mail in and watches: fencedIMAP in-process, or a real Dovecot.
type instancesMailbox interface {
	// add appends a mail with Message-ID id to INBOX.
	add(t *testing.T, id string)
	// messageIDs lists the Message-IDs added.
	messageIDs() []string
	// flagged counts the messages acknowledged (\Seen).
	flagged(t *testing.T) int
	// violations lists the acknowledgements seen before their commit.
	violations() []string
}

func (f *fencedIMAP) messageIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.ids))
	for _, id := range f.ids {
		ids = append(ids, id)
	}
	return ids
}

func (f *fencedIMAP) flagged(*testing.T) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.flags)
}

func (f *fencedIMAP) violations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.early)
}

func serveFencedIMAP(t *testing.T, db *sql.DB) (*fencedIMAP, int) {
	t.Helper()
	f := &fencedIMAP{user: imapmemserver.NewUser("support", "secret"), db: db, ids: map[imap.UID]string{}, flags: map[imap.UID]int{}}
	if err := f.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem := imapmemserver.New()
	mem.AddUser(f.user)
	port := serveIMAP(t, func() imapserver.Session { return fencedSession{Session: mem.NewSession(), f: f} },
		imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}})
	return f, port
}

// TestPostgresInstances is the "How we will check it": three
// `deskmail serve` (the built binary) on one PostgreSQL; SMTP mail to
// all three and IMAP mail into one mailbox; the instance polling the
// mailbox is SIGKILLed midway. Every mail that got 250 or was in the
// mailbox is stored exactly once, the mailbox is taken over within
// 30s, no message is flagged \Seen before its commit, and every
// outbox mail reaches the relay sink exactly once — but those the
// killed instance had claimed, which another instance takes over and
// sends again: one it had handed to the relay just before the SIGKILL,
// without recording it, arrives twice (at least once across a crash).
func TestPostgresInstances(t *testing.T) {
	if !pgCluster.Available(t) {
		return
	}
	postgresInstancesOn(t, func(db *sql.DB) (instancesMailbox, int) { return serveFencedIMAP(t, db) })
}

// postgresInstancesOn is TestPostgresInstances with the mailbox that
// serve (given the database) starts.
func postgresInstancesOn(t *testing.T, serve func(db *sql.DB) (instancesMailbox, int)) {
	url := pgCluster.URL(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bin := buildBinary(t)
	sink := newRelaySink(t)
	mbox, imapPort := serve(db)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "deskmail.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(instancesConfig, url, sink.addr, imapPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}
	type inst struct {
		p          *daemonProc
		smtp, http string
	}
	var insts []*inst
	for range 3 {
		p, s, h := startServe(t, bin, dir, args...)
		insts = append(insts, &inst{p, s, h})
	}

	type statusView struct {
		Instances []struct {
			ID      string   `json:"id"`
			PID     int      `json:"pid"`
			Folders []string `json:"folders"`
		} `json:"instances"`
	}
	status := func() statusView {
		var v statusView
		out := deskmailCmd(t, bin, dir, "status", "--config", cfg, "--json")
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		return v
	}
	holder := func() int { // pid holding mailbox/INBOX, 0 for none
		for _, in := range status().Instances {
			for _, f := range in.Folders {
				if f == "mailbox/INBOX" {
					return in.PID
				}
			}
		}
		return 0
	}
	waitFor(t, "3 instances, one polling the mailbox", 60*time.Second, func() bool {
		return len(status().Instances) == 3 && holder() != 0
	})

	var mu sync.Mutex
	accepted := map[string]bool{} // Message-IDs that got 250
	send := func(in *inst, id string) {
		msg := testMail("cust-"+id, "support@acme.test", "By SMTP "+id, id)
		if err := smtpSend(in.smtp, "cust-"+id, "support@acme.test", msg); err == nil {
			mu.Lock()
			accepted[id] = true
			mu.Unlock()
		}
	}
	burst := func(round int, targets []*inst) {
		var wg sync.WaitGroup
		for i, in := range targets {
			wg.Go(func() {
				for j := range 10 {
					send(in, fmt.Sprintf("r%d-i%d-m%d@customer.example", round, i, j))
				}
			})
		}
		for j := range 10 {
			mbox.add(t, fmt.Sprintf("r%d-imap%d@customer.example", round, j))
		}
		wg.Wait()
	}
	burst(1, insts)

	// Kill the instance polling the mailbox, in the middle of traffic.
	pid := holder()
	var victim *inst
	var rest []*inst
	for _, in := range insts {
		if in.p.cmd.Process.Pid == pid {
			victim = in
		} else {
			rest = append(rest, in)
		}
	}
	if victim == nil {
		t.Fatalf("no instance has pid %d", pid)
	}
	go burst(2, insts) // the victim's share may fail: only 250s count
	time.Sleep(200 * time.Millisecond)
	victim.p.cmd.Process.Kill()
	<-victim.p.done
	killed := time.Now()
	var took time.Duration
	waitFor(t, "the mailbox taken over", 45*time.Second, func() bool {
		if h := holder(); h != 0 && h != pid {
			took = time.Since(killed)
			return true
		}
		return false
	})
	if took > 30*time.Second {
		t.Errorf("mailbox taken over after %s, want within 30s", took)
	}
	t.Logf("mailbox taken over %s after SIGKILL", took.Round(time.Millisecond))
	burst(3, rest)

	// Everything accepted or in the mailbox is stored exactly once.
	ids := mbox.messageIDs()
	want := len(ids)
	mu.Lock()
	for id := range accepted {
		ids = append(ids, id)
	}
	mu.Unlock()
	waitFor(t, "every mail stored", 60*time.Second, func() bool {
		var n int
		db.QueryRow("SELECT COUNT(*) FROM conversations WHERE message_id = ANY($1)", ids).Scan(&n)
		return n >= len(ids)
	})
	var dups int
	db.QueryRow("SELECT COUNT(*) FROM (SELECT message_id FROM conversations WHERE message_id<>'' GROUP BY message_id HAVING COUNT(*)>1) d").Scan(&dups)
	if dups != 0 {
		t.Errorf("%d Message-IDs stored more than once", dups)
	}
	waitFor(t, "every IMAP message flagged", 60*time.Second, func() bool {
		return mbox.flagged(t) >= want
	})
	if v := mbox.violations(); len(v) > 0 {
		t.Errorf("acknowledged before commit: %s", strings.Join(v, "; "))
	}

	// Every outbox mail reaches the relay once.
	var queued int
	// Mail the victim had claimed is taken over once its heartbeat is
	// older than store.InstanceLive (30s), at the survivors' next
	// look at the queue (30s at most).
	deadline := time.Now().Add(90 * time.Second)
	for {
		db.QueryRow("SELECT COUNT(*) FROM outbox WHERE state='queued'").Scan(&queued)
		if queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			rows, _ := db.Query("SELECT id, kind, attempts, next_attempt_at, last_error FROM outbox WHERE state='queued' ORDER BY id LIMIT 20")
			for rows != nil && rows.Next() {
				var id, attempts int
				var kind, next, last string
				rows.Scan(&id, &kind, &attempts, &next, &last)
				t.Logf("queued outbox %d %s: attempts %d, next %s, last error %q", id, kind, attempts, next, last)
			}
			t.Fatalf("timed out waiting for the outbox delivered: %d queued", queued)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rows, err := db.QueryContext(context.Background(), "SELECT message_id, attempts FROM outbox WHERE state='sent'")
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]int{}
	attempts := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		rows.Scan(&id, &n)
		sent[id], attempts[id] = 0, n
	}
	rows.Close()
	if len(sent) < len(ids)/2 {
		t.Errorf("%d outbox mails sent for %d tickets", len(sent), len(ids))
	}
	for _, m := range sink.mails("") {
		if m.Msg == nil {
			continue
		}
		id := strings.Trim(m.Msg.Header.Get("Message-Id"), "<>")
		if _, ok := sent[id]; ok {
			sent[id]++
		}
	}
	// The relay accepts everything, so a second attempt is a mail the
	// victim claimed and never recorded, taken over after its death:
	// if the victim had handed it to the relay before the SIGKILL, it
	// reached the relay twice (delivery is at least once across a
	// crash, README). Every other mail reached it exactly once.
	takenOver, twice := 0, 0
	for id, n := range sent {
		switch {
		case attempts[id] >= 2 && (n == 1 || n == 2):
			takenOver++
			if n == 2 {
				twice++
			}
		case n != 1:
			t.Errorf("outbox mail %s (%d attempts) reached the relay %d times", id, attempts[id], n)
		}
	}
	t.Logf("%d outbox mails taken over from the killed instance, %d of which it had delivered before dying", takenOver, twice)
	t.Logf("%d mails stored (%d by SMTP with 250, %d by IMAP), %d outbox mails delivered", len(ids), len(ids)-want, want, len(sent))
	for _, in := range rest {
		in.p.stop()
	}
}
