package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// tickets remembers, for one write transaction, the tickets it has
// read or written, as Ticket would read them now. An ingested mail
// reads its ticket back after creating it (CreateTicket, the SLA hook,
// then Ticket for the joined names and due times), and a reply reads
// its ticket, updates it and reads it again: on PostgreSQL each read a
// round trip, 1.3 per mail on the generated workload, that the rest of
// the message's statements waited behind.
//
// CreateTicket, UpdateTicket and PutTicketSLA write through: the entry
// becomes what the row now holds, its joined names (status, category,
// assignee, requester, channel) looked up in what the transaction
// knows (the statuses and channels, read once; its agents and
// contacts, see people) — where one is not known, the entry is
// dropped instead. A new ticket with tags or cc addresses is not
// remembered (their order and case are the database's). Any other
// statement that writes tickets, their SLA, tags, cc addresses or
// custom fields, statuses, channels, agents or (beyond adding one)
// contacts, and any rollback to a savepoint, forgets everything.
//
// With Options.VerifyTicketCache every answer from memory is checked
// against the database, and a difference fails the statement: the test
// suite runs so in CI.
type tickets struct {
	byID     map[int64]*cachedTicket
	statuses map[int]Status // nil until read
	channels map[int64]string
}

// cachedTicket is a ticket as stored; pausedAt is the start of its
// current pending spell, counted into SLAPausedSeconds when answered.
type cachedTicket struct {
	tk       Ticket
	pausedAt *time.Time
}

// ticketTables are the tables whose rows a Ticket is read from.
var ticketTables = []string{"tickets", "ticket_sla", "ticket_tags", "ticket_cc", "ticket_custom_fields", "statuses", "channels", "agents"}

// The writes of CreateTicket, UpdateTicket and PutTicketSLA, which write
// through (see throughCaches).
const (
	createTicketSQL = `INSERT INTO tickets(channel_id, pipeline_id, subject, status, priority, type, group_name, responder_id,
		requester_id, parent_id, source, created_at, updated_at, status_updated_at, requester_responded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`
	updateTicketSQL = `UPDATE tickets SET subject=?, status=?, priority=?, type=?, group_name=?, responder_id=?, parent_id=?,
		deleted=?, updated_at=?, first_responded_at=?, agent_responded_at=?, requester_responded_at=?, status_updated_at=?,
		resolved_at=?, closed_at=? WHERE id=?`
	putTicketSLASQL = `INSERT INTO ticket_sla(ticket_id, policy, priority, category, running_since, consumed_seconds, paused_at,
		paused_seconds, fr_due_at, due_at, fr_escalated_at, escalated_at, close_at, next_at, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(ticket_id) DO UPDATE SET policy=excluded.policy, priority=excluded.priority, category=excluded.category,
			running_since=excluded.running_since, consumed_seconds=excluded.consumed_seconds, paused_at=excluded.paused_at,
			paused_seconds=excluded.paused_seconds, fr_due_at=excluded.fr_due_at, due_at=excluded.due_at,
			fr_escalated_at=excluded.fr_escalated_at, escalated_at=excluded.escalated_at, close_at=excluded.close_at,
			next_at=excluded.next_at, updated_at=excluded.updated_at`
)

// forgetTickets drops what the transaction remembers of tickets if
// query, about to run, may change it (see tickets). The statuses and
// channels go only with a statement that names them.
func (t *Tx) forgetTickets(query string) {
	c := t.tickets
	if c == nil || t.writingThrough || strings.HasPrefix(strings.TrimSpace(query), "SELECT") {
		return
	}
	if strings.Contains(query, "statuses") || strings.Contains(query, "channels") {
		t.tickets = nil
		return
	}
	for _, name := range ticketTables {
		if strings.Contains(query, name) {
			c.byID = nil
			return
		}
	}
	// Adding a contact changes none that a ticket names.
	if strings.Contains(query, "contacts") && (!strings.HasPrefix(query, "INSERT INTO contacts(") || strings.Contains(query, "DO UPDATE")) {
		c.byID = nil
	}
}

func (t *Tx) ticketCache() *tickets {
	if t.tickets == nil {
		t.tickets = &tickets{}
	}
	return t.tickets
}

// cachedTicket answers Ticket from memory, if it can (write
// transactions only: a read transaction on PostgreSQL may see later
// commits).
func (t *Tx) cachedTicket(id int64) (*Ticket, bool) {
	if t.read || t.tickets == nil {
		return nil, false
	}
	e := t.tickets.byID[id]
	if e == nil {
		return nil, false
	}
	tk := copyTicket(&e.tk)
	if e.pausedAt != nil {
		tk.SLAPausedSeconds += max(0, time.Since(*e.pausedAt).Seconds())
	}
	return tk, true
}

// remembersTicket reports whether cachedTicket would answer for id
// (without the copy it makes).
func (t *Tx) remembersTicket(id int64) bool {
	return !t.read && t.tickets != nil && t.tickets.byID[id] != nil
}

// rememberTicket keeps tk, just read, with the start of its pending
// spell (nil: none).
func (t *Tx) rememberTicket(tk *Ticket, pausedAt *time.Time) {
	if t.read {
		return
	}
	c := t.ticketCache()
	if c.byID == nil {
		c.byID = map[int64]*cachedTicket{}
	}
	e := &cachedTicket{tk: *copyTicket(tk), pausedAt: copyTime(pausedAt)}
	if pausedAt != nil {
		// As stored, before the time since was counted in.
		e.tk.SLAPausedSeconds -= max(0, time.Since(*pausedAt).Seconds())
	}
	c.byID[tk.ID] = e
}

// ticketCreated remembers the ticket CreateTicket just inserted, as a
// read would return it: no SLA row yet, the joined names from what the
// transaction knows.
func (t *Tx) ticketCreated(tk *Ticket) error {
	if t.read {
		return nil
	}
	if len(tk.Tags) > 0 || len(tk.CcEmails) > 0 || len(tk.CustomFields) > 0 {
		t.forgetTicket(tk.ID)
		return nil
	}
	e := &cachedTicket{tk: Ticket{
		ID: tk.ID, Subject: tk.Subject, Status: tk.Status, Priority: tk.Priority,
		Type: copyStr(tk.Type), Group: copyStr(tk.Group), ResponderID: copyInt(tk.ResponderID), RequesterID: tk.RequesterID,
		ChannelID: copyInt(tk.ChannelID), PipelineID: copyInt(tk.PipelineID), ParentID: copyInt(tk.ParentID), Source: tk.Source,
		CreatedAt: stored(tk.CreatedAt), UpdatedAt: stored(tk.UpdatedAt), StatusUpdatedAt: storedPtr(&tk.CreatedAt),
		RequesterRespondedAt: storedPtr(tk.RequesterRespondedAt),
		Tags:                 []string{}, CcEmails: []string{}, CustomFields: map[string]string{},
	}}
	ok, err := t.fillTicketNames(&e.tk)
	if err != nil || !ok {
		t.forgetTicket(tk.ID)
		return err
	}
	c := t.ticketCache()
	if c.byID == nil {
		c.byID = map[int64]*cachedTicket{}
	}
	c.byID[tk.ID] = e
	return nil
}

// ticketUpdated applies what UpdateTicket wrote to the ticket
// remembered, if any.
func (t *Tx) ticketUpdated(tk *Ticket) error {
	if t.tickets == nil || t.tickets.byID[tk.ID] == nil {
		return nil
	}
	e := t.tickets.byID[tk.ID]
	n := &e.tk
	n.Subject, n.Status, n.Priority = tk.Subject, tk.Status, tk.Priority
	n.Type, n.Group, n.ResponderID, n.ParentID = copyStr(tk.Type), copyStr(tk.Group), copyInt(tk.ResponderID), copyInt(tk.ParentID)
	n.Deleted, n.UpdatedAt = tk.Deleted, stored(tk.UpdatedAt)
	n.FirstRespondedAt, n.AgentRespondedAt = storedPtr(tk.FirstRespondedAt), storedPtr(tk.AgentRespondedAt)
	n.RequesterRespondedAt, n.StatusUpdatedAt = storedPtr(tk.RequesterRespondedAt), storedPtr(tk.StatusUpdatedAt)
	n.ResolvedAt, n.ClosedAt = storedPtr(tk.ResolvedAt), storedPtr(tk.ClosedAt)
	ok, err := t.fillTicketNames(n)
	if err != nil || !ok {
		t.forgetTicket(tk.ID)
	}
	return err
}

// slaWritten applies what PutTicketSLA wrote to the ticket remembered,
// if any.
func (t *Tx) slaWritten(s *TicketSLA) {
	if t.tickets == nil || t.tickets.byID[s.TicketID] == nil {
		return
	}
	e := t.tickets.byID[s.TicketID]
	e.tk.FrDueBy, e.tk.DueBy = storedPtr(s.FrDueAt), storedPtr(s.DueAt)
	e.tk.FrEscalated, e.tk.IsEscalated = storedPtr(s.FrEscalatedAt) != nil, storedPtr(s.EscalatedAt) != nil
	e.tk.SLAPolicy = nil
	if s.Policy != "" {
		p := s.Policy
		e.tk.SLAPolicy = &p
	}
	e.tk.SLAPausedSeconds = s.Paused.Seconds()
	e.pausedAt = storedPtr(s.PausedAt)
}

func (t *Tx) forgetTicket(id int64) {
	if t.tickets != nil {
		delete(t.tickets.byID, id)
	}
}

// fillTicketNames sets tk's joined names from what the transaction
// knows; false when one is not known.
func (t *Tx) fillTicketNames(tk *Ticket) (bool, error) {
	c := t.ticketCache()
	if c.statuses == nil {
		if err := t.loadTicketNames(); err != nil {
			return false, err
		}
	}
	s := c.statuses[tk.Status]
	tk.StatusName, tk.Category = s.Name, s.Category
	tk.Channel = nil
	if tk.ChannelID != nil {
		if name, ok := c.channels[*tk.ChannelID]; ok {
			tk.Channel = &name
		}
	}
	tk.Responder = nil
	if tk.ResponderID != nil {
		agents, err := t.cachedAgents()
		if err != nil {
			return false, err
		}
		for _, a := range agents {
			if a.ID == *tk.ResponderID {
				email := a.Email
				tk.Responder = &email
			}
		}
	}
	r := t.contactFromCache("", tk.RequesterID)
	if r == nil {
		return false, nil
	}
	tk.Requester = Person{Name: r.Name, Email: r.Email}
	return true, nil
}

// loadTicketNames reads every status and channel, once per transaction
// (a few rows each).
func (t *Tx) loadTicketNames() error {
	statuses, err := t.Statuses()
	if err != nil {
		return err
	}
	rows, err := t.query(`SELECT id, name FROM channels`)
	if err != nil {
		return fmt.Errorf("store: channels: %w", err)
	}
	defer rows.Close()
	channels := map[int64]string{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return fmt.Errorf("store: channels: %w", err)
		}
		channels[id] = name
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: channels: %w", err)
	}
	c := t.ticketCache()
	c.statuses, c.channels = make(map[int]Status, len(statuses)), channels
	for _, s := range statuses {
		c.statuses[s.Code] = s
	}
	return nil
}

// verifyCachedTicket compares the ticket answered from memory with the
// database's (Options.VerifyTicketCache).
func (t *Tx) verifyCachedTicket(cached *Ticket) error {
	db, err := t.readTicket(cached.ID)
	if err != nil {
		return err
	}
	a, b := *cached, *db
	// Counted up to two different moments.
	if math.Abs(a.SLAPausedSeconds-b.SLAPausedSeconds) < 1 {
		a.SLAPausedSeconds = b.SLAPausedSeconds
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	if string(x) != string(y) {
		return fmt.Errorf("store: ticket %d remembered differs from the database:\n  memory   %s\n  database %s", cached.ID, x, y)
	}
	return nil
}

// stored is t as the database gives it back (microseconds, UTC).
func stored(t time.Time) time.Time { return pts(ts(t)) }

// storedPtr is stored for an optional time (the zero time is stored as
// none, see nts).
func storedPtr(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	v := stored(*t)
	return &v
}

func copyStr(s *string) *string {
	if s == nil {
		return nil
	}
	v := *s
	return &v
}

func copyInt(i *int64) *int64 {
	if i == nil {
		return nil
	}
	v := *i
	return &v
}

// copyTicket is a deep copy: callers change the tickets they are given.
func copyTicket(tk *Ticket) *Ticket {
	c := *tk
	c.Type, c.Group, c.Responder, c.Channel, c.SLAPolicy = copyStr(tk.Type), copyStr(tk.Group), copyStr(tk.Responder), copyStr(tk.Channel), copyStr(tk.SLAPolicy)
	c.ResponderID, c.ChannelID, c.PipelineID, c.ParentID = copyInt(tk.ResponderID), copyInt(tk.ChannelID), copyInt(tk.PipelineID), copyInt(tk.ParentID)
	c.Tags, c.CcEmails, c.CustomFields = slices.Clone(tk.Tags), slices.Clone(tk.CcEmails), maps.Clone(tk.CustomFields)
	c.FirstRespondedAt, c.AgentRespondedAt, c.RequesterRespondedAt = copyTime(tk.FirstRespondedAt), copyTime(tk.AgentRespondedAt), copyTime(tk.RequesterRespondedAt)
	c.StatusUpdatedAt, c.ResolvedAt, c.ClosedAt = copyTime(tk.StatusUpdatedAt), copyTime(tk.ResolvedAt), copyTime(tk.ClosedAt)
	c.FrDueBy, c.DueBy = copyTime(tk.FrDueBy), copyTime(tk.DueBy)
	return &c
}

// maxPrefetchTickets bounds PrefetchTickets: hostile mail can name a
// hundred tickets a message.
const maxPrefetchTickets = 512

// PrefetchTickets reads, in one query, the tickets that the Message-IDs
// PrefetchMessageIDs found name, so that the transaction's Ticket of
// any of them answers from memory (see tickets): a reply reads its
// ticket before it changes it. Called after LockAhead, it reads them
// under the batch's locks, and locks their rows until the batch
// commits (FOR UPDATE): another transaction's change to one of them
// waits instead of being overwritten by the batch's copy. It does nothing on SQLite (whose reads cost
// no round trip) or when no Message-ID named a ticket; past
// maxPrefetchTickets the rest are read when asked for.
func (t *Tx) PrefetchTickets() error {
	if t.pg == nil || t.msgIDs == nil {
		return nil
	}
	seen := map[int64]bool{}
	var ids []int64
	for _, m := range t.msgIDs.rows {
		if m.TicketID != nil && !seen[*m.TicketID] && len(ids) < maxPrefetchTickets {
			if !t.remembersTicket(*m.TicketID) {
				seen[*m.TicketID] = true
				ids = append(ids, *m.TicketID)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// Locked, in order, until the batch commits: the batch changes them
	// from its copies, which another transaction's change meanwhile
	// would make stale (its UPDATE would be overwritten). Another batch
	// with the same tickets waits in LockAhead first, in the same order.
	rows, err := t.query(`SELECT `+ticketCols+pgTicketLists+ticketFrom+` WHERE t.id = ANY(CAST(? AS BIGINT[])) ORDER BY t.id FOR UPDATE OF t`, ids)
	if err != nil {
		return fmt.Errorf("store: prefetch tickets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var tags, cc, fields []byte
		tk, paused, err := scanTicketPaused(scanMore{rows, []any{&tags, &cc, &fields}})
		if err != nil {
			return fmt.Errorf("store: prefetch tickets: %w", err)
		}
		if err := errors.Join(unmarshalList(tags, &tk.Tags), unmarshalList(cc, &tk.CcEmails), unmarshalList(fields, &tk.CustomFields)); err != nil {
			return fmt.Errorf("store: prefetch ticket %d lists: %w", tk.ID, err)
		}
		t.rememberTicket(tk, paused)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: prefetch tickets: %w", err)
	}
	rows.Close()
	// Their threads, which the mail to their agents is threaded with.
	threads, err := t.readThreads(`m.ticket_id = ANY(CAST(? AS BIGINT[]))`, ids)
	if err != nil {
		return fmt.Errorf("store: prefetch threads: %w", err)
	}
	for _, id := range ids {
		if !t.remembersTicket(id) {
			continue // no such ticket
		}
		th := threads[id]
		if th == nil {
			th = &thread{ticket: id}
		}
		t.rememberThread(th)
	}
	return nil
}

// cachedParticipant answers IsParticipant from the ticket remembered:
// ok is false when it cannot (not remembered, or an address beyond
// ASCII, whose case folding is the database's to decide).
func (t *Tx) cachedParticipant(ticketID int64, email string) (is, ok bool) {
	if t.read || t.tickets == nil || email == "" || !asciiOnly(email) {
		return false, false
	}
	e := t.tickets.byID[ticketID]
	if e == nil {
		return false, false
	}
	addrs := append([]string{e.tk.Requester.Email}, e.tk.CcEmails...)
	for _, a := range addrs {
		if a == "" || !asciiOnly(a) {
			return false, false
		}
	}
	return slices.ContainsFunc(addrs, func(a string) bool { return asciiEqualFold(a, email) }), true
}
