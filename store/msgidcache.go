package store

import (
	"fmt"
	"strings"
)

// msgIDs remembers, for one PostgreSQL transaction, the message_ids
// rows a batch looked up ahead (PrefetchMessageIDs) and what the
// transaction itself wrote to them since: ingestion looks each mail's
// own Message-ID up, then its In-Reply-To and References, each lookup
// a round trip to PostgreSQL (1.3 per mail on the generated workload)
// that one query for the whole batch replaces.
//
// What it answers is what the database would answer in this
// transaction: the two statements that ingestion writes message_ids
// with (AddMessageID's INSERT, SetMessageIDTarget's UPDATE) update it
// as they are run; any other statement that writes message_ids, and
// any rollback to a savepoint, forgets it all. Rows that other
// instances commit meanwhile are not seen, as a lookup made a little
// earlier would not see them: the claim's INSERT, unique on the
// Message-ID, is what settles a race (see AddMessageID).
type msgIDs struct {
	// rows holds the rows known by Message-ID, absent the ids known to
	// have none.
	rows   map[string]MessageRef
	absent map[string]bool
}

// PrefetchMessageIDs looks ids up in one query so that the
// transaction's LookupMessageIDs of any of them answers without asking
// the database again. It only saves round trips: on SQLite, where a
// lookup costs no more than a map, and for ids stored otherwise than
// as given (invalid UTF-8, NUL), it does nothing.
func (t *Tx) PrefetchMessageIDs(ids []string) error {
	if t.pg == nil || len(ids) == 0 {
		return nil
	}
	var ask []string
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !seen[id] && storedAsIs(id) && !t.msgIDKnown(id) {
			seen[id] = true
			ask = append(ask, id)
		}
	}
	if len(ask) == 0 {
		return nil
	}
	c := t.msgIDs
	if c == nil {
		c = &msgIDs{rows: make(map[string]MessageRef), absent: make(map[string]bool, len(ask))}
		t.msgIDs = c
	}
	for start := 0; start < len(ask); start += prefetchChunk {
		chunk := ask[start:min(len(ask), start+prefetchChunk)]
		rows, err := t.query(`SELECT message_id, direction, channel_id, ticket_id, conversation_id, raw_id FROM message_ids WHERE message_id = ANY(?)`, chunk)
		if err != nil {
			return fmt.Errorf("store: prefetch message-ids: %w", err)
		}
		found, err := scanMessageRefs(rows)
		if err != nil {
			return fmt.Errorf("store: prefetch message-ids: %w", err)
		}
		for _, id := range chunk {
			if m, ok := found[id]; ok {
				c.rows[id] = m
			} else {
				c.absent[id] = true
			}
		}
	}
	return nil
}

// prefetchChunk bounds the ids one prefetch query asks for (a batch
// of hostile mails may name a hundred each).
const prefetchChunk = 5000

// msgIDKnown reports whether the transaction remembers id's row or its
// absence.
func (t *Tx) msgIDKnown(id string) bool {
	c := t.msgIDs
	if c == nil {
		return false
	}
	_, ok := c.rows[id]
	return ok || c.absent[id]
}

// RememberedMessageIDs answers LookupMessageIDs(ids) from what the
// transaction remembers (PrefetchMessageIDs), without asking the
// database; false when it does not remember every one of them.
func (t *Tx) RememberedMessageIDs(ids []string) (map[string]MessageRef, bool) {
	return t.cachedMessageIDs(ids)
}

// cachedMessageIDs answers LookupMessageIDs(ids) from what the
// transaction remembers, if it remembers every one of them.
func (t *Tx) cachedMessageIDs(ids []string) (map[string]MessageRef, bool) {
	c := t.msgIDs
	if c == nil {
		return nil, false
	}
	for _, id := range ids {
		if !t.msgIDKnown(id) {
			return nil, false
		}
	}
	out := make(map[string]MessageRef, len(ids))
	for _, id := range ids {
		if m, ok := c.rows[id]; ok {
			out[id] = m
		}
	}
	return out, true
}

// The two statements that write message_ids whose effect the
// functions running them (AddMessageID, SetMessageIDTarget) tell
// msgIDs themselves.
const (
	sqlAddMessageID = `INSERT INTO message_ids(message_id, direction, channel_id, ticket_id, conversation_id, raw_id, created_at) VALUES (?,?,?,?,?,?,?)`
	sqlSetMsgTarget = `UPDATE message_ids SET ticket_id=?, conversation_id=? WHERE message_id=?`
)

// forgetMessageIDs drops what the transaction remembers of message_ids
// if query, about to run, may write it: any statement naming the table
// but a SELECT and the two above.
func (t *Tx) forgetMessageIDs(query string) {
	if t.msgIDs == nil || !strings.Contains(query, "message_ids") {
		return
	}
	q := strings.TrimSpace(query)
	if strings.HasPrefix(q, "SELECT") || strings.HasPrefix(q, sqlAddMessageID) || q == sqlSetMsgTarget {
		return
	}
	t.msgIDs = nil
}

// msgIDInserted remembers m as the row the transaction inserted.
func (t *Tx) msgIDInserted(m MessageRef) {
	c := t.msgIDs
	if c == nil {
		return
	}
	if !storedAsIs(m.MessageID) {
		return
	}
	delete(c.absent, m.MessageID)
	c.rows[m.MessageID] = m
}

// msgIDUnknown forgets what the transaction remembers of id: an
// INSERT found it taken.
func (t *Tx) msgIDUnknown(id string) {
	if c := t.msgIDs; c != nil {
		delete(c.rows, id)
		delete(c.absent, id)
	}
}

// msgIDTargeted records SetMessageIDTarget(id, ticketID,
// conversationID) on the row remembered, if any (an id remembered
// absent has no row to change).
func (t *Tx) msgIDTargeted(id string, ticketID, conversationID *int64) {
	c := t.msgIDs
	if c == nil {
		return
	}
	if m, ok := c.rows[id]; ok {
		m.TicketID, m.ConversationID = copyRef(ticketID), copyRef(conversationID)
		c.rows[id] = m
	}
}

func copyRef(v *int64) *int64 {
	if v == nil {
		return nil
	}
	n := *v
	return &n
}
