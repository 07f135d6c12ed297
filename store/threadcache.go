package store

import (
	"slices"
	"strings"
)

// thread remembers, for one PostgreSQL transaction, the last ticket
// thread it read (TicketThread) and what the transaction's own
// EnqueueOutbox added to it since: every outbound mail builds its
// References from the thread, and a new ticket's confirmation and
// agent notification read it one after the other, each read a round
// trip to PostgreSQL (1.7 per ingested mail on the generated
// workload), with only the confirmation's row added in between.
//
// What it answers is what the query would answer: EnqueueOutbox adds
// the row its Message-ID makes, in the query's order (created_at, then
// insertion); any other statement that writes message_ids, outbox,
// conversations or agents (the tables the query reads), and any
// rollback to a savepoint, forgets it.
type thread struct {
	ticket int64
	rows   []ThreadMessage
	// at are the rows' created_at, as stored; convs their
	// conversation's id (0: none).
	at    []string
	convs []int64
}

// cachedThread returns a copy of the thread of ticketID remembered,
// if any.
func (t *Tx) cachedThread(ticketID int64) ([]ThreadMessage, bool) {
	c := t.thread
	if c == nil || c.ticket != ticketID {
		return nil, false
	}
	return slices.Clone(c.rows), true
}

// rememberThread keeps the thread just read (PostgreSQL only: on SQLite
// the query costs no round trip).
func (t *Tx) rememberThread(ticketID int64, rows []ThreadMessage, at []string, convs []int64) {
	if t.pg == nil {
		return
	}
	t.thread = &thread{ticket: ticketID, rows: slices.Clone(rows), at: at, convs: convs}
}

// threadTables are the tables TicketThread reads.
var threadTables = []string{"message_ids", "outbox", "conversations", "agents"}

// forgetCached drops what the transaction remembers of message_ids
// and of a thread if query, about to run, may change it. Every
// statement passes here (beforeStatement, insert), and the writes that
// queue no statement of their own (a claim put off or patched) call
// forgetThread's effect themselves.
func (t *Tx) forgetCached(query string) {
	t.forgetMessageIDs(query)
	t.forgetThread(query)
	t.forgetSentTo(query)
	t.forgetTickets(query)
}

// forgetThread drops the thread remembered if query, about to run, may
// change it; EnqueueOutbox's own statements are accounted for by
// threadEnqueued.
func (t *Tx) forgetThread(query string) {
	if t.thread == nil || t.enqueuing {
		return
	}
	if strings.HasPrefix(strings.TrimSpace(query), "SELECT") {
		return
	}
	for _, name := range threadTables {
		if strings.Contains(query, name) {
			t.thread = nil
			return
		}
	}
}

// threadEnqueued adds to the thread remembered the row that enqueueing
// m (not suppressed) added to message_ids, at created_at.
func (t *Tx) threadEnqueued(m *OutboxMail, createdAt string) {
	c := t.thread
	if c == nil || m.TicketID == nil || *m.TicketID != c.ticket {
		return
	}
	row := ThreadMessage{MessageID: m.MessageID, Direction: "out", OutboxKind: m.Kind}
	var conv int64
	if m.ConversationID != nil {
		// The row carries its conversation's facts: those of another
		// row of the same conversation (a confirmation's is the
		// customer's mail it answers), or the thread is read again.
		conv = *m.ConversationID
		i := slices.Index(c.convs, conv)
		if i < 0 {
			t.thread = nil
			return
		}
		f := c.rows[i]
		row.HasConversation, row.Incoming, row.Private = f.HasConversation, f.Incoming, f.Private
		row.ConversationMessageID, row.FromEmail, row.FromAgent = f.ConversationMessageID, f.FromEmail, f.FromAgent
	}
	if !storedAsIs(m.MessageID) {
		t.thread = nil
		return
	}
	// After every row stored at or before it: ties keep insertion
	// order.
	i := len(c.at)
	for i > 0 && c.at[i-1] > createdAt {
		i--
	}
	c.rows = slices.Insert(c.rows, i, row)
	c.at = slices.Insert(c.at, i, createdAt)
	c.convs = slices.Insert(c.convs, i, conv)
}
