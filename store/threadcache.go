package store

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// threads remembers, for one PostgreSQL write transaction, the ticket
// threads (TicketThread) it knows whole: those it read, those of the
// tickets it created (empty at first), those a batch prefetched
// (PrefetchTickets) — kept up to date by the transaction's own writes.
// Every outbound mail builds its References from its ticket's thread:
// a new ticket's confirmation and agent notification, a reply's
// notification, each read a round trip to PostgreSQL that the rest of
// the message's statements waited behind.
//
// What it answers is what the query would answer. The writes that add
// to a thread write through: a Message-ID recorded on a ticket
// (AddMessageID, EnqueueOutbox's own row with its outbox kind), a
// Message-ID pointed at a ticket (SetMessageIDTarget), with the facts
// of its conversation from the conversations the transaction added
// (AddConversation) or a row of the thread already names; a
// conversation's Message-ID set (SetConversationMessageID). Rows are
// kept in the query's order (created_at, then insertion). Where a fact
// is not known (a conversation from before, a sender address beyond
// ASCII, an id stored otherwise than as given), the thread concerned is
// forgotten instead. Any other statement that writes message_ids,
// outbox, conversations or agents (the tables the query reads), and any
// rollback to a savepoint, forgets them all. With VerifyTicketCache
// every answer from memory is checked against the database.
type thread struct {
	ticket int64
	rows   []ThreadMessage
	// at are the rows' created_at, as stored; convs their
	// conversation's id (0: none); seqs the order in which the
	// transaction recorded them (0: read from the database), which
	// orders rows of one created_at as their rowid does.
	at    []string
	convs []int64
	seqs  []int
}

// threadState is what a transaction remembers of threads (see thread).
type threadState struct {
	byTicket map[int64]*thread
	// convs are the facts of the conversations the transaction added.
	convs map[int64]convFacts
	// added are the Message-IDs the transaction recorded: created_at,
	// direction and order, for SetMessageIDTarget; recorded counts
	// them.
	added    map[string]addedID
	recorded int
}

// convFacts are what a thread row tells of its conversation.
type convFacts struct {
	incoming, private, fromAgent bool
	messageID, fromEmail         string
}

type addedID struct {
	at, direction string
	seq           int
}

// throughCaches runs fn, a write whose effect on what the transaction
// remembers (threads, tickets) its caller applies itself, without the
// forgetting that any other write causes (see forgetCached).
func (t *Tx) throughCaches(fn func() error) error {
	t.writingThrough = true
	defer func() { t.writingThrough = false }()
	return fn()
}

// threadQuery reads threads: ticket, created_at, conversation id and
// the ThreadMessage fields of each Message-ID recorded on the tickets
// matched by where, in order.
const threadQuery = `SELECT m.ticket_id, m.created_at, COALESCE(c.id, 0), m.message_id, m.direction,
		CASE WHEN m.direction='out' THEN COALESCE((SELECT o.kind FROM outbox o WHERE o.ticket_id=m.ticket_id AND o.message_id=m.message_id LIMIT 1), '') ELSE '' END,
		c.id IS NOT NULL, COALESCE(c.incoming, 0), COALESCE(c.private, 0), COALESCE(c.message_id, ''), COALESCE(c.from_email, ''),
		EXISTS (SELECT 1 FROM agents a WHERE a.email=c.from_email)
		FROM message_ids m LEFT JOIN conversations c ON c.id=m.conversation_id`

// readThreads runs threadQuery for the tickets matched by where (with
// args) and returns their threads by ticket.
func (t *Tx) readThreads(where string, args ...any) (map[int64]*thread, error) {
	rows, err := t.query(threadQuery+` WHERE `+where+` ORDER BY m.ticket_id, m.created_at, m.rowid`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]*thread{}
	for rows.Next() {
		var m ThreadMessage
		var ticket, conv int64
		var created string
		if err := rows.Scan(&ticket, &created, &conv, &m.MessageID, &m.Direction, &m.OutboxKind, &m.HasConversation, &m.Incoming, &m.Private,
			&m.ConversationMessageID, &m.FromEmail, &m.FromAgent); err != nil {
			return nil, err
		}
		th := out[ticket]
		if th == nil {
			th = &thread{ticket: ticket}
			out[ticket] = th
		}
		th.rows = append(th.rows, m)
		th.at = append(th.at, created)
		th.convs = append(th.convs, conv)
		th.seqs = append(th.seqs, 0)
	}
	return out, rows.Err()
}

// threadsOn reports whether the transaction remembers threads: a
// PostgreSQL write transaction (on SQLite a thread costs no round
// trip).
func (t *Tx) threadsOn() bool { return t.pg != nil && !t.read }

func (t *Tx) threadCache() *threadState {
	if t.threads == nil {
		t.threads = &threadState{byTicket: map[int64]*thread{}, convs: map[int64]convFacts{}, added: map[string]addedID{}}
	}
	return t.threads
}

// cachedThread returns a copy of the thread of ticketID remembered,
// if any.
func (t *Tx) cachedThread(ticketID int64) ([]ThreadMessage, bool) {
	if t.threads == nil {
		return nil, false
	}
	c := t.threads.byTicket[ticketID]
	if c == nil {
		return nil, false
	}
	rows := slices.Clone(c.rows)
	if rows == nil {
		rows = []ThreadMessage{}
	}
	return rows, true
}

// rememberThread keeps a thread just read.
func (t *Tx) rememberThread(th *thread) {
	if !t.threadsOn() {
		return
	}
	t.threadCache().byTicket[th.ticket] = &thread{ticket: th.ticket, rows: slices.Clone(th.rows), at: slices.Clone(th.at),
		convs: slices.Clone(th.convs), seqs: slices.Clone(th.seqs)}
}

// threadCreated starts the thread of a ticket just created: empty.
func (t *Tx) threadCreated(ticketID int64) {
	if t.threadsOn() {
		t.threadCache().byTicket[ticketID] = &thread{ticket: ticketID}
	}
}

// forgetThreads drops every thread remembered.
func (t *Tx) forgetThreads() { t.threads = nil }

// dropThread forgets one ticket's thread.
func (t *Tx) dropThread(ticketID int64) {
	if t.threads != nil {
		delete(t.threads.byTicket, ticketID)
	}
}

// threadTables are the tables TicketThread reads.
var threadTables = []string{"message_ids", "outbox", "conversations", "agents"}

// forgetCached drops what the transaction remembers of message_ids,
// threads, mail sent and tickets if query, about to run, may change
// it. Every statement passes here (beforeStatement, insert), and the
// writes that queue no statement of their own (a claim put off or
// patched) call forgetThread's effect themselves.
func (t *Tx) forgetCached(query string) {
	t.forgetMessageIDs(query)
	t.forgetThread(query)
	t.forgetSentTo(query)
	t.forgetTickets(query)
}

// forgetThread drops the threads remembered if query, about to run,
// may change them; EnqueueOutbox's own statements and those that write
// through (see thread) are accounted for where they run.
func (t *Tx) forgetThread(query string) {
	if t.threads == nil || t.enqueuing || t.writingThrough {
		return
	}
	if strings.HasPrefix(strings.TrimSpace(query), "SELECT") {
		return
	}
	for _, name := range threadTables {
		if strings.Contains(query, name) {
			t.threads = nil
			return
		}
	}
}

// conversationAdded notes the facts of a conversation the transaction
// just added, when they are known as the database will store them.
func (t *Tx) conversationAdded(c *Conversation) error {
	if !t.threadsOn() {
		return nil
	}
	delete(t.threadCache().convs, c.ID)
	if !storedAsIs(c.FromEmail) || !storedAsIs(c.MessageID) {
		return nil
	}
	a, ok, err := t.agentFromCache(func(a *Agent) bool { return asciiEqualFold(a.Email, c.FromEmail) }, c.FromEmail)
	if err != nil || !ok {
		return err
	}
	t.threads.convs[c.ID] = convFacts{incoming: c.Incoming, private: c.Private, fromAgent: a != nil, messageID: c.MessageID, fromEmail: c.FromEmail}
	return nil
}

// conversationMessageIDSet applies SetConversationMessageID to the
// facts remembered.
func (t *Tx) conversationMessageIDSet(id int64, messageID string) {
	s := t.threads
	if s == nil {
		return
	}
	if f, ok := s.convs[id]; ok {
		if storedAsIs(messageID) {
			f.messageID = messageID
			s.convs[id] = f
		} else {
			delete(s.convs, id)
		}
	}
	for tk, th := range s.byTicket {
		for i, c := range th.convs {
			if c != id {
				continue
			}
			if !storedAsIs(messageID) {
				delete(s.byTicket, tk)
				break
			}
			th.rows[i].ConversationMessageID = messageID
		}
	}
}

// factsOf fills row with the facts of conversation conv as a thread
// row shows them: from the conversations the transaction added, else
// from a row of th naming it; false when not known.
func (s *threadState) factsOf(th *thread, conv int64, row *ThreadMessage) bool {
	if f, ok := s.convs[conv]; ok {
		row.HasConversation, row.Incoming, row.Private = true, f.incoming, f.private
		row.ConversationMessageID, row.FromEmail, row.FromAgent = f.messageID, f.fromEmail, f.fromAgent
		return true
	}
	i := slices.Index(th.convs, conv)
	if i < 0 {
		return false
	}
	f := th.rows[i]
	row.HasConversation, row.Incoming, row.Private = f.HasConversation, f.Incoming, f.Private
	row.ConversationMessageID, row.FromEmail, row.FromAgent = f.ConversationMessageID, f.FromEmail, f.FromAgent
	return true
}

// messageIDAdded adds to its ticket's thread, if remembered, the row
// AddMessageID just recorded at createdAt; kind is the outbox kind of
// our own mail's row (EnqueueOutbox), "" for others.
func (t *Tx) messageIDAdded(m MessageRef, createdAt, kind string) {
	if !t.threadsOn() {
		return
	}
	s := t.threadCache()
	if !storedAsIs(m.MessageID) {
		if m.TicketID != nil {
			t.dropThread(*m.TicketID)
		}
		return
	}
	s.recorded++
	a := addedID{at: createdAt, direction: m.Direction, seq: s.recorded}
	s.added[m.MessageID] = a
	if m.TicketID == nil {
		return
	}
	var conv int64
	if m.ConversationID != nil {
		conv = *m.ConversationID
	}
	s.insertRow(*m.TicketID, m.MessageID, kind, a, conv)
}

// insertRow puts a row the transaction recorded (a) into the thread of
// ticket, if remembered, in the query's order: after every row stored
// before it, and after the rows of the same created_at read from the
// database or recorded earlier (rowid order); the thread is forgotten
// when the row's facts are not known.
func (s *threadState) insertRow(ticket int64, messageID, kind string, a addedID, conv int64) {
	th := s.byTicket[ticket]
	if th == nil {
		return
	}
	row, ok := s.rowOf(th, messageID, a.direction, kind, conv)
	if !ok {
		delete(s.byTicket, ticket)
		return
	}
	i := len(th.at)
	for i > 0 && (th.at[i-1] > a.at || th.at[i-1] == a.at && th.seqs[i-1] > a.seq) {
		i--
	}
	th.rows = slices.Insert(th.rows, i, row)
	th.at = slices.Insert(th.at, i, a.at)
	th.convs = slices.Insert(th.convs, i, conv)
	th.seqs = slices.Insert(th.seqs, i, a.seq)
}

// rowOf is the thread row of a Message-ID with its conversation's facts
// (see factsOf); false when they are not known, or it is ours and its
// outbox kind (kind) is not.
func (s *threadState) rowOf(th *thread, messageID, direction, kind string, conv int64) (ThreadMessage, bool) {
	row := ThreadMessage{MessageID: messageID, Direction: direction}
	if direction == "out" {
		// Ours: which mail it was, the outbox knows.
		row.OutboxKind = kind
		if kind == "" {
			return row, false
		}
	}
	if conv != 0 && !s.factsOf(th, conv, &row) {
		return row, false
	}
	return row, true
}

// messageIDTargeted applies SetMessageIDTarget to the threads
// remembered: the Message-ID's row changes conversation in place, or
// moves to the thread of its new ticket — known when the transaction
// recorded the id (a row read from the database has a rowid whose
// place among the new thread's rows is not known: that thread is
// forgotten).
func (t *Tx) messageIDTargeted(messageID string, ticketID, conversationID *int64) {
	s := t.threads
	if s == nil {
		return
	}
	var conv int64
	if conversationID != nil {
		conv = *conversationID
	}
	a, known := s.added[messageID]
	for tk, th := range s.byTicket {
		i := slices.IndexFunc(th.rows, func(r ThreadMessage) bool { return r.MessageID == messageID })
		if i < 0 {
			continue
		}
		if ticketID != nil && *ticketID == tk {
			row, ok := s.rowOf(th, messageID, th.rows[i].Direction, th.rows[i].OutboxKind, conv)
			if !ok {
				delete(s.byTicket, tk)
				return
			}
			th.rows[i], th.convs[i] = row, conv
			return
		}
		if th.seqs[i] == 0 {
			known = false
		}
		th.rows = slices.Delete(th.rows, i, i+1)
		th.at = slices.Delete(th.at, i, i+1)
		th.convs = slices.Delete(th.convs, i, i+1)
		th.seqs = slices.Delete(th.seqs, i, i+1)
	}
	if ticketID == nil {
		return
	}
	if !known || !storedAsIs(messageID) {
		t.dropThread(*ticketID)
		return
	}
	// The outbox kind of our own mail is looked up on its new ticket:
	// not known here.
	s.insertRow(*ticketID, messageID, "", a, conv)
}

// verifyThread compares a thread answered from memory with the
// database's (VerifyTicketCache).
func (t *Tx) verifyThread(ticketID int64, cached []ThreadMessage) error {
	db, err := t.readThreads(`m.ticket_id=?`, ticketID)
	if err != nil {
		return fmt.Errorf("store: ticket %d thread: %w", ticketID, err)
	}
	want := []ThreadMessage{}
	if th := db[ticketID]; th != nil {
		want = th.rows
	}
	if !reflect.DeepEqual(cached, want) {
		return fmt.Errorf("store: ticket %d thread remembered differs from the database:\n  memory   %+v\n  database %+v", ticketID, cached, want)
	}
	return nil
}

// threadEnqueued adds to its ticket's thread, if remembered, the row
// that enqueueing m (not suppressed) added to message_ids at createdAt.
func (t *Tx) threadEnqueued(m *OutboxMail, createdAt string) {
	t.messageIDAdded(MessageRef{MessageID: m.MessageID, Direction: "out", TicketID: m.TicketID, ConversationID: m.ConversationID}, createdAt, m.Kind)
}
