package store

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// sentTo remembers, for one PostgreSQL transaction, when mail of one
// kind was created for a set of addresses (PrefetchOutboxTo), kept up
// to date by the transaction's own EnqueueOutbox: the confirmation of
// every new ticket is rate-limited per address (CountOutboxTo), a round
// trip to PostgreSQL per new ticket that one query for a batch
// replaces.
//
// What it answers is what CountOutboxTo's query would: mail of that
// kind in any state but suppressed, counted once per address however
// often the address is listed, created at or after since (which must
// not be earlier than the prefetch's). Any other statement that writes
// outbox or outbox_rcpt, and any rollback to a savepoint, forgets it.
type sentTo struct {
	kind  string
	since string
	// at holds, by lower-cased address, the created_at of each mail.
	at map[string][]string
}

// PrefetchOutboxTo reads, in one query, when mail of kind still
// counted by CountOutboxTo was created at or after since for each of
// rcpts, so that CountOutboxTo(kind, rcpt, later) of any of them
// answers without asking the database again. Only on PostgreSQL, where
// a count is a round trip; elsewhere, and for addresses beyond ASCII
// (whose case folding is the database's to decide), it does nothing.
func (t *Tx) PrefetchOutboxTo(kind string, rcpts []string, since time.Time) error {
	if t.pg == nil || len(rcpts) == 0 {
		return nil
	}
	var ask []string
	seen := make(map[string]bool, len(rcpts))
	for _, r := range rcpts {
		a := strings.ToLower(r)
		if a == "" || seen[a] || !asciiOnly(a) || !storedAsIs(a) {
			continue
		}
		seen[a] = true
		ask = append(ask, a)
	}
	if len(ask) == 0 {
		return nil
	}
	c := &sentTo{kind: kind, since: ts(since), at: make(map[string][]string, len(ask))}
	for _, a := range ask {
		c.at[a] = nil
	}
	for start := 0; start < len(ask); start += prefetchChunk {
		chunk := ask[start:min(len(ask), start+prefetchChunk)]
		// Joined to the addresses' list, not = ANY(array): PostgreSQL
		// then walks the address index once per address, where ANY of a
		// citext array scanned the whole of outbox_rcpt and outbox.
		rows, err := t.query(`SELECT DISTINCT lower(r.address::text), o.id, o.created_at
			FROM unnest(CAST(? AS TEXT[])) AS a(addr) JOIN outbox_rcpt r ON r.address=CAST(a.addr AS citext) JOIN outbox o ON o.id=r.outbox_id
			WHERE o.kind=? AND o.state<>'suppressed' AND o.created_at>=?`, chunk, kind, c.since)
		if err != nil {
			return fmt.Errorf("store: prefetch outbox to: %w", err)
		}
		for rows.Next() {
			var a, at string
			var id int64
			if err := rows.Scan(&a, &id, &at); err != nil {
				rows.Close()
				return fmt.Errorf("store: prefetch outbox to: %w", err)
			}
			if _, ok := c.at[a]; !ok {
				// Folded otherwise than ASCII lower-casing would: the
				// database decides for this address.
				rows.Close()
				return nil
			}
			c.at[a] = append(c.at[a], at)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: prefetch outbox to: %w", err)
		}
	}
	t.sentTo = c
	return nil
}

// cachedCountOutboxTo answers CountOutboxTo from sentTo, if it can.
func (t *Tx) cachedCountOutboxTo(kind, rcpt string, since time.Time) (int, bool) {
	c := t.sentTo
	if c == nil || c.kind != kind {
		return 0, false
	}
	s := ts(since)
	if s < c.since {
		return 0, false
	}
	at, ok := c.at[strings.ToLower(rcpt)]
	if !ok || !asciiOnly(rcpt) {
		return 0, false
	}
	n := 0
	for _, x := range at {
		if x >= s {
			n++
		}
	}
	return n, true
}

// forgetSentTo drops sentTo if query, about to run, may change what it
// answers; EnqueueOutbox's own INSERT is accounted for by
// sentToEnqueued.
func (t *Tx) forgetSentTo(query string) {
	if t.sentTo == nil || t.enqueuing || !strings.Contains(query, "outbox") {
		return
	}
	if strings.HasPrefix(strings.TrimSpace(query), "SELECT") {
		return
	}
	t.sentTo = nil
}

// sentToEnqueued adds the mail m, just inserted, to sentTo.
func (t *Tx) sentToEnqueued(m *OutboxMail) {
	c := t.sentTo
	if c == nil || m.State == OutboxSuppressed || m.Kind != c.kind {
		return
	}
	at := ts(m.CreatedAt)
	var done []string
	for _, r := range m.RcptTo {
		a := strings.ToLower(r)
		if !asciiOnly(a) {
			t.sentTo = nil
			return
		}
		if slices.Contains(done, a) {
			continue
		}
		done = append(done, a)
		if list, ok := c.at[a]; ok {
			c.at[a] = append(list, at)
		}
	}
}
