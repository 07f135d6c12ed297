package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/internal/imaptest"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestPostgresInstancesDovecot is TestPostgresInstances with the IMAP
// mail in a real Dovecot mailbox, as the check has it. Dovecot
// cannot refuse a STORE that comes before its commit, so a watcher
// looks instead, every 50 ms, at the messages flagged \Seen since its
// last look and checks that each is committed: an acknowledgement made
// before its commit shows when the watcher looks in between.
func TestPostgresInstancesDovecot(t *testing.T) {
	if !pgCluster.Available(t) {
		return
	}
	d := imaptest.Dovecot(t, "support", "secret")
	postgresInstancesOn(t, func(db *sql.DB) (instancesMailbox, int) {
		return watchDovecot(t, d, db), d.Port
	})
}

// dovecotMailbox is a Dovecot INBOX that a client appends to and a
// watcher reads the \Seen flags of (see TestPostgresInstancesDovecot).
type dovecotMailbox struct {
	addr string
	db   *sql.DB
	app  *imapclient.Client

	mu    sync.Mutex
	ids   []string
	seen  map[imap.UID]bool
	early []string
}

func watchDovecot(t *testing.T, d *imaptest.Server, db *sql.DB) *dovecotMailbox {
	t.Helper()
	m := &dovecotMailbox{addr: fmt.Sprintf("%s:%d", d.Host, d.Port), db: db, seen: map[imap.UID]bool{}}
	m.app = m.login(t)
	t.Cleanup(func() { m.app.Close() })
	w := m.login(t)
	if _, err := w.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			m.look(w)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done; w.Close() })
	return m
}

func (m *dovecotMailbox) login(t *testing.T) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(m.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("support", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// look checks the messages flagged \Seen since the last look.
func (m *dovecotMailbox) look(w *imapclient.Client) {
	if err := w.Noop().Wait(); err != nil {
		return
	}
	data, err := w.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil {
		return
	}
	var fresh imap.UIDSet
	m.mu.Lock()
	for _, uid := range data.AllUIDs() {
		if !m.seen[uid] {
			fresh.AddNum(uid)
		}
	}
	m.mu.Unlock()
	if len(fresh) == 0 {
		return
	}
	msgs, err := w.Fetch(fresh, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil {
		return
	}
	for _, msg := range msgs {
		if msg.Envelope == nil {
			continue
		}
		id := msg.Envelope.MessageID
		var n int
		if err := m.db.QueryRow("SELECT COUNT(*) FROM message_ids WHERE message_id=$1", id).Scan(&n); err != nil || n != 1 {
			m.mu.Lock()
			m.early = append(m.early, fmt.Sprintf("uid %d (%s) flagged with %d committed rows (%v)", msg.UID, id, n, err))
			m.mu.Unlock()
		}
		m.mu.Lock()
		m.seen[msg.UID] = true
		m.mu.Unlock()
	}
}

func (m *dovecotMailbox) add(t *testing.T, id string) {
	t.Helper()
	imaptest.Append(t, m.app, "INBOX", []byte(testMail("imap-"+id, "mailbox@acme.test", "By IMAP "+id, id)), time.Now())
	m.mu.Lock()
	m.ids = append(m.ids, id)
	m.mu.Unlock()
}

func (m *dovecotMailbox) messageIDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.ids...)
}

func (m *dovecotMailbox) flagged(*testing.T) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.seen)
}

func (m *dovecotMailbox) violations() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.early...)
}
