package store

import (
	"fmt"
	"strings"
)

// A Message-ID claim put off (SQLite, a WriteBatch's fast attempt).
//
// Ingestion looks a mail's Message-ID up, inserts it to claim it, and
// once the ticket and conversation exist points it at them: an INSERT
// and an UPDATE of the same row, 2 of the ~20 statements of a mail. In
// a fast attempt on SQLite the INSERT of an id the transaction has
// just looked up and not found waits, in Go, until SetMessageIDTarget
// gives it its targets, then runs once with them.
//
// What the transaction reads stays what it would read had the INSERT
// run at once: the claim is inserted before any statement that names
// the message_ids table (no view, trigger or foreign key of the schema
// reads it otherwise: TestMessageIDsReadOnlyByName), before the
// message's savepoint function returns, and before COMMIT. Nothing else
// can insert the id meanwhile: the transaction is the only writer
// (BEGIN IMMEDIATE), and any write to message_ids forgets which ids
// were found missing. If the INSERT fails at its late place, the fast
// attempt fails and the batch runs again with savepoints, where
// nothing is put off.
type claim struct {
	ref MessageRef
	at  string // created_at, stamped when AddMessageID was called
}

// deferClaim reports whether AddMessageID may put m's insertion off,
// and if so does.
func (t *Tx) deferClaim(m MessageRef, at string) bool {
	if t.fast == nil || t.d.pg || t.claim != nil || !t.missing[m.MessageID] {
		return false
	}
	t.claim = &claim{ref: m, at: at}
	delete(t.missing, m.MessageID)
	return true
}

// noteMissing remembers, for deferClaim, that the ids of looked (a
// lookup of message_ids) were not in found.
func (t *Tx) noteMissing(looked []string, found map[string]MessageRef) {
	if t.fast == nil || t.d.pg {
		return
	}
	for _, id := range looked {
		if _, ok := found[id]; !ok {
			if t.missing == nil {
				t.missing = make(map[string]bool)
			}
			t.missing[id] = true
		}
	}
}

// beforeStatement inserts the claim put off, if any, when query names
// message_ids, and forgets the ids found missing when query may write
// it.
func (t *Tx) beforeStatement(query string) error {
	t.forgetCached(query)
	if (t.claim == nil && t.missing == nil) || !strings.Contains(query, "message_ids") {
		return nil
	}
	if err := t.flushClaim(); err != nil {
		return err
	}
	if !strings.HasPrefix(strings.TrimSpace(query), "SELECT") {
		t.missing = nil
	}
	return nil
}

// flushClaim inserts the claim put off, if any.
func (t *Tx) flushClaim() error {
	c := t.claim
	if c == nil {
		return nil
	}
	t.claim = nil
	m := c.ref
	_, err := t.exec(`INSERT INTO message_ids(message_id, direction, channel_id, ticket_id, conversation_id, raw_id, created_at) VALUES (?,?,?,?,?,?,?)`,
		m.MessageID, m.Direction, int64OrNil(m.ChannelID), int64OrNil(m.TicketID), int64OrNil(m.ConversationID), int64OrNil(m.RawID), c.at)
	if err != nil {
		err = fmt.Errorf("store: message-id %s: %w", m.MessageID, err)
		t.fast.fail(err)
	}
	return err
}

// failedRow is a row whose query could not run.
type failedRow struct{ err error }

func (r failedRow) Scan(...any) error { return r.err }
