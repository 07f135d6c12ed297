package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Ticket is a support ticket. Its JSON is what `deskmail tickets
// list/show --json` prints (snake_case; absent values are null or []).
type Ticket struct {
	ID          int64   `json:"id"`
	Subject     string  `json:"subject"`
	Status      int     `json:"status"`
	StatusName  string  `json:"status_name"`
	Category    string  `json:"status_category"`
	Priority    int     `json:"priority"`
	Type        *string `json:"type"`
	Group       *string `json:"group"`
	ResponderID *int64  `json:"responder_id"`
	// Responder is the assigned agent's address.
	Responder   *string  `json:"responder"`
	RequesterID int64    `json:"requester_id"`
	Requester   Person   `json:"requester"`
	Tags        []string `json:"tags"`
	CcEmails    []string `json:"cc_emails"`
	// CustomFields are the configured extra fields that are set.
	CustomFields map[string]string `json:"custom_fields"`
	ChannelID    *int64            `json:"channel_id"`
	Channel      *string           `json:"channel"`
	PipelineID   *int64            `json:"pipeline_id"`
	ParentID     *int64            `json:"parent_ticket_id"`
	Source       int               `json:"source"`
	Deleted      bool              `json:"deleted"`

	CreatedAt            time.Time  `json:"created_at"`
	UpdatedAt            time.Time  `json:"updated_at"`
	FirstRespondedAt     *time.Time `json:"first_responded_at"`
	AgentRespondedAt     *time.Time `json:"agent_responded_at"`
	RequesterRespondedAt *time.Time `json:"requester_responded_at"`
	StatusUpdatedAt      *time.Time `json:"status_updated_at"`
	ResolvedAt           *time.Time `json:"resolved_at"`
	ClosedAt             *time.Time `json:"closed_at"`

	// The SLA clock (see the sla package): the first-response and
	// resolution due times, whether each was missed and escalated, the
	// policy that set them, and the time the ticket spent in
	// pending-category statuses (the clock paused), in seconds.
	FrDueBy          *time.Time `json:"fr_due_by"`
	DueBy            *time.Time `json:"due_by"`
	FrEscalated      bool       `json:"fr_escalated"`
	IsEscalated      bool       `json:"is_escalated"`
	SLAPolicy        *string    `json:"sla_policy"`
	SLAPausedSeconds float64    `json:"sla_paused_seconds"`
}

// Person is a name and address, as shown on a ticket.
type Person struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

const ticketCols = `t.id, t.subject, t.status, COALESCE(s.name,''), COALESCE(s.category,''), t.priority, t.type, t.group_name,
	t.responder_id, a.email, t.requester_id, COALESCE(c.name,''), COALESCE(c.email,''), t.channel_id, ch.name, t.pipeline_id, t.parent_id, t.source, t.deleted,
	t.created_at, t.updated_at, t.first_responded_at, t.agent_responded_at, t.requester_responded_at,
	t.status_updated_at, t.resolved_at, t.closed_at,
	sl.fr_due_at, sl.due_at, sl.fr_escalated_at IS NOT NULL, sl.escalated_at IS NOT NULL, NULLIF(sl.policy,''),
	COALESCE(sl.paused_seconds,0), sl.paused_at`

const ticketFrom = ` FROM tickets t
	LEFT JOIN statuses s ON s.code=t.status
	LEFT JOIN agents a ON a.id=t.responder_id
	LEFT JOIN contacts c ON c.id=t.requester_id
	LEFT JOIN channels ch ON ch.id=t.channel_id
	LEFT JOIN ticket_sla sl ON sl.ticket_id=t.id`

func scanTicket(sc interface{ Scan(...any) error }) (*Ticket, error) {
	tk, _, err := scanTicketPaused(sc)
	return tk, err
}

// scanTicketPaused is scanTicket that also returns the start of the
// ticket's current pending spell (nil: none).
func scanTicketPaused(sc interface{ Scan(...any) error }) (*Ticket, *time.Time, error) {
	var tk Ticket
	var typ, group, responder, channel sql.NullString
	var responderID, channelID, pipelineID, parentID sql.NullInt64
	var created, updated string
	var first, agentR, reqR, statusU, resolved, closed sql.NullString
	var frDue, due, policy, pausedAt sql.NullString
	err := sc.Scan(&tk.ID, &tk.Subject, &tk.Status, &tk.StatusName, &tk.Category, &tk.Priority, &typ, &group,
		&responderID, &responder, &tk.RequesterID, &tk.Requester.Name, &tk.Requester.Email, &channelID, &channel, &pipelineID, &parentID, &tk.Source, &tk.Deleted,
		&created, &updated, &first, &agentR, &reqR, &statusU, &resolved, &closed,
		&frDue, &due, &tk.FrEscalated, &tk.IsEscalated, &policy, &tk.SLAPausedSeconds, &pausedAt)
	if err != nil {
		return nil, nil, err
	}
	tk.FrDueBy, tk.DueBy, tk.SLAPolicy = pnts(frDue), pnts(due), nstr(policy)
	paused := pnts(pausedAt)
	if p := paused; p != nil {
		// The current pending spell counts too, up to now.
		tk.SLAPausedSeconds += max(0, time.Since(*p).Seconds())
	}
	tk.Type, tk.Group, tk.Responder, tk.Channel = nstr(typ), nstr(group), nstr(responder), nstr(channel)
	tk.ResponderID, tk.ChannelID, tk.PipelineID, tk.ParentID = nint(responderID), nint(channelID), nint(pipelineID), nint(parentID)
	tk.CreatedAt, tk.UpdatedAt = pts(created), pts(updated)
	tk.FirstRespondedAt, tk.AgentRespondedAt, tk.RequesterRespondedAt = pnts(first), pnts(agentR), pnts(reqR)
	tk.StatusUpdatedAt, tk.ResolvedAt, tk.ClosedAt = pnts(statusU), pnts(resolved), pnts(closed)
	tk.Tags, tk.CcEmails, tk.CustomFields = []string{}, []string{}, map[string]string{}
	return &tk, paused, nil
}

// pgTicketLists reads a ticket's tags, cc addresses and custom fields
// as JSON beside its row on PostgreSQL, in the orders fillTicketLists
// reads them: one round trip rather than four (a ticket is read about
// 1.3 times per ingested message).
const pgTicketLists = `,
	COALESCE((SELECT json_agg(tag ORDER BY tag) FROM ticket_tags WHERE ticket_id=t.id), '[]'),
	COALESCE((SELECT json_agg(email ORDER BY added_at, email) FROM ticket_cc WHERE ticket_id=t.id), '[]'),
	COALESCE((SELECT json_object_agg(name, value) FROM ticket_custom_fields WHERE ticket_id=t.id), '{}')`

// sqliteTicketLists is pgTicketLists in SQLite's JSON functions: a
// ticket and its lists in one statement rather than three (measured:
// the two list queries were 2 of the 23 statements of an ingested
// message, and as costly as reading the ticket itself).
const sqliteTicketLists = `,
	(SELECT json_group_array(tag ORDER BY tag) FROM ticket_tags WHERE ticket_id=t.id),
	(SELECT json_group_array(email ORDER BY added_at, email) FROM ticket_cc WHERE ticket_id=t.id),
	(SELECT json_group_object(name, value) FROM ticket_custom_fields WHERE ticket_id=t.id)`

// scanMore scans a row's first columns as its caller asks and the rest
// into more.
type scanMore struct {
	sc   interface{ Scan(...any) error }
	more []any
}

func (s scanMore) Scan(dest ...any) error { return s.sc.Scan(append(dest, s.more...)...) }

// Ticket returns a ticket with its tags and cc addresses.
func (t *Tx) Ticket(id int64) (*Ticket, error) {
	if tk, ok := t.cachedTicket(id); ok {
		if t.verifyTickets {
			if err := t.verifyCachedTicket(tk); err != nil {
				return nil, err
			}
		}
		return tk, nil
	}
	tk, paused, err := t.readTicketPaused(id)
	if err != nil {
		return nil, err
	}
	t.rememberTicket(tk, paused)
	return tk, nil
}

// readTicket reads a ticket from the database, never from memory.
func (t *Tx) readTicket(id int64) (*Ticket, error) {
	tk, _, err := t.readTicketPaused(id)
	return tk, err
}

func (t *Tx) readTicketPaused(id int64) (*Ticket, *time.Time, error) {
	lists := sqliteTicketLists
	if t.d.pg {
		lists = pgTicketLists
	}
	lock := ""
	if t.pg != nil {
		// A write transaction on PostgreSQL reads a ticket to change it:
		// the row stays locked until it commits, so that two
		// transactions changing one ticket (a reply by mail, an agent's
		// change through the API on another instance) take turns
		// instead of the later one writing back a copy that misses the
		// other's change (READ COMMITTED would let both read it first).
		lock = " FOR UPDATE OF t"
	}
	var tags, cc, fields []byte
	tk, paused, err := scanTicketPaused(scanMore{t.row(`SELECT `+ticketCols+lists+ticketFrom+` WHERE t.id=?`+lock, id), []any{&tags, &cc, &fields}})
	if err != nil {
		return nil, nil, notFound(err, fmt.Sprintf("ticket %d", id))
	}
	if err := errors.Join(unmarshalList(tags, &tk.Tags), unmarshalList(cc, &tk.CcEmails), unmarshalList(fields, &tk.CustomFields)); err != nil {
		return nil, nil, fmt.Errorf("store: ticket %d lists: %w", id, err)
	}
	return tk, paused, nil
}

// unmarshalList decodes a JSON list read by ticketLists into v, which
// keeps its empty value for an empty list (most tickets have no tags,
// cc addresses or custom fields).
func unmarshalList(data []byte, v any) error {
	if s := string(data); s == "[]" || s == "{}" {
		return nil
	}
	return json.Unmarshal(data, v)
}

// fillTicketLists loads the tags, cc addresses and custom fields of
// several tickets with two queries: tags and cc addresses in one (both
// case-insensitive text, tags first, each kind in its order), custom
// fields in the other. Loading one ticket is frequent (a few times per
// mail), and each query costs as much as reading the ticket itself.
func (t *Tx) fillTicketLists(tks []*Ticket) error {
	if len(tks) == 0 {
		return nil
	}
	byID := make(map[int64]*Ticket, len(tks))
	args := make([]any, len(tks))
	for i, tk := range tks {
		byID[tk.ID] = tk
		args[i] = tk.ID
	}
	in := placeholders(len(tks))
	for _, q := range []struct {
		sql  string
		args []any
		add  func(tk *Ticket, kind int, v, w string)
	}{
		{`SELECT 0, ticket_id, tag, '' FROM ticket_tags WHERE ticket_id IN (` + in + `)
			UNION ALL SELECT 1, ticket_id, email, added_at FROM ticket_cc WHERE ticket_id IN (` + in + `)
			ORDER BY 1, 2, 4, 3`, append(append([]any{}, args...), args...), func(tk *Ticket, kind int, v, _ string) {
			if kind == 0 {
				tk.Tags = append(tk.Tags, v)
			} else {
				tk.CcEmails = append(tk.CcEmails, v)
			}
		}},
		{`SELECT 2, ticket_id, name, value FROM ticket_custom_fields WHERE ticket_id IN (` + in + `)`, args, func(tk *Ticket, _ int, name, value string) {
			tk.CustomFields[name] = value
		}},
	} {
		rows, err := t.query(q.sql, q.args...)
		if err != nil {
			return fmt.Errorf("store: ticket lists: %w", err)
		}
		for rows.Next() {
			var kind int
			var id int64
			var v, w string
			if err := rows.Scan(&kind, &id, &v, &w); err != nil {
				rows.Close()
				return fmt.Errorf("store: ticket lists: %w", err)
			}
			q.add(byID[id], kind, v, w)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: ticket lists: %w", err)
		}
	}
	return nil
}

// TicketFilter selects tickets for ListTickets. Zero values select all.
type TicketFilter struct {
	Status         []int
	Priority       int
	RequesterEmail string
	ChannelID      int64
	UpdatedSince   time.Time
	// CreatedSince keeps tickets created at or after it.
	CreatedSince time.Time
	// ResponderID selects the tickets assigned to that agent;
	// Unassigned those assigned to nobody.
	ResponderID int64
	Unassigned  bool
	// Search selects tickets whose subject, requester address or
	// requester name contains it (case-insensitive for ASCII).
	Search string
	// Escalated selects tickets whose first-response or resolution
	// target was missed (the SLA scheduler escalated them).
	Escalated      bool
	IncludeDeleted bool
	// OnlyDeleted keeps only the tickets in the trash.
	OnlyDeleted bool
	// OpenFor, when set, keeps the tickets in an open-category status
	// that are unassigned or assigned to this agent id (Freshdesk's
	// new_and_my_open).
	OpenFor int64
	// OrderBy is created_at, updated_at, due_by (the resolution due
	// time; tickets without one last), status or priority (default
	// created_at); Desc orders newest first.
	OrderBy string
	Desc    bool
	Offset  int
	Limit   int
}

// likeEscaper escapes LIKE's wildcards (with ESCAPE '\').
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// ListTickets returns the tickets matching f.
func (t *Tx) ListTickets(f TicketFilter) ([]Ticket, error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	switch {
	case f.OnlyDeleted:
		add("t.deleted=1")
	case !f.IncludeDeleted:
		add("t.deleted=0")
	}
	if f.OpenFor > 0 {
		add("s.category='open' AND (t.responder_id IS NULL OR t.responder_id=?)", f.OpenFor)
	}
	if !f.CreatedSince.IsZero() {
		add("t.created_at>=?", ts(f.CreatedSince))
	}
	if len(f.Status) > 0 {
		codes := make([]any, len(f.Status))
		for i, s := range f.Status {
			codes[i] = s
		}
		add("t.status IN ("+placeholders(len(f.Status))+")", codes...)
	}
	if f.Priority > 0 {
		add("t.priority=?", f.Priority)
	}
	if f.RequesterEmail != "" {
		add("c.email=?", f.RequesterEmail)
	}
	if f.ChannelID > 0 {
		add("t.channel_id=?", f.ChannelID)
	}
	if f.ResponderID > 0 {
		where = append(where, "t.responder_id=?")
		args = append(args, f.ResponderID)
	}
	if f.Unassigned {
		where = append(where, "t.responder_id IS NULL")
	}
	if f.Escalated {
		where = append(where, "(sl.escalated_at IS NOT NULL OR sl.fr_escalated_at IS NOT NULL)")
	}
	if q := strings.TrimSpace(f.Search); q != "" {
		like := "%" + likeEscaper.Replace(strings.ToLower(q)) + "%"
		where = append(where, `(LOWER(t.subject) LIKE ? ESCAPE '\' OR LOWER(c.email) LIKE ? ESCAPE '\' OR LOWER(c.name) LIKE ? ESCAPE '\')`)
		args = append(args, like, like, like)
	}
	if !f.UpdatedSince.IsZero() {
		add("t.updated_at>=?", ts(f.UpdatedSince))
	}
	q := `SELECT ` + ticketCols + ticketFrom
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	order := map[string]string{"": "t.created_at", "created_at": "t.created_at", "updated_at": "t.updated_at", "status": "t.status", "priority": "t.priority", "due_by": "sl.due_at"}[f.OrderBy]
	if order == "" {
		return nil, fmt.Errorf("store: list tickets: cannot order by %q", f.OrderBy)
	}
	dir := "ASC"
	if f.Desc {
		dir = "DESC"
	}
	q += " ORDER BY "
	if f.OrderBy == "due_by" {
		// NULLs sort first in SQLite and last in PostgreSQL: say it.
		q += "CASE WHEN sl.due_at IS NULL THEN 1 ELSE 0 END, "
	}
	q += fmt.Sprintf("%s %s, t.id %s", order, dir, dir)
	if f.Limit > 0 {
		q += " LIMIT ? OFFSET ?"
		args = append(args, f.Limit, f.Offset)
	}
	out, err := t.queryTickets(q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list tickets: %w", err)
	}
	return out, nil
}

// queryTickets runs a SELECT of ticketCols and fills in each ticket's
// tags, cc addresses and custom fields.
func (t *Tx) queryTickets(q string, args ...any) ([]Ticket, error) {
	rows, err := t.scanQuery(q, args...)
	if err != nil {
		return nil, err
	}
	var ptrs []*Ticket
	for rows.Next() {
		tk, err := scanTicket(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		ptrs = append(ptrs, tk)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := t.fillTicketLists(ptrs); err != nil {
		return nil, err
	}
	out := make([]Ticket, len(ptrs))
	for i, p := range ptrs {
		out[i] = *p
	}
	return out, nil
}

// CreateTicket inserts a new ticket (ID, CreatedAt and UpdatedAt are
// filled in) with its tags, cc addresses and RequesterRespondedAt.
func (t *Tx) CreateTicket(tk *Ticket) error {
	now := t.now()
	if tk.CreatedAt.IsZero() {
		tk.CreatedAt = now
	}
	tk.UpdatedAt = tk.CreatedAt
	if tk.Source == 0 {
		tk.Source = 1
	}
	if tk.Priority == 0 {
		tk.Priority = 1
	}
	var id int64
	err := t.throughCaches(func() (err error) {
		id, err = t.insert(createTicketSQL,
			int64OrNil(tk.ChannelID), int64OrNil(tk.PipelineID), tk.Subject, tk.Status, tk.Priority, strOrNil(tk.Type), strOrNil(tk.Group),
			int64OrNil(tk.ResponderID), tk.RequesterID, int64OrNil(tk.ParentID), tk.Source, ts(tk.CreatedAt), ts(tk.UpdatedAt), ts(tk.CreatedAt),
			nts(tk.RequesterRespondedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("store: create ticket: %w", err)
	}
	tk.ID = id
	t.threadCreated(id)
	st := tk.CreatedAt
	tk.StatusUpdatedAt = &st
	for _, tag := range tk.Tags {
		if err := t.AddTag(id, tag); err != nil {
			return err
		}
	}
	for _, cc := range tk.CcEmails {
		if _, err := t.AddCC(id, cc); err != nil {
			return err
		}
	}
	if err := t.ticketCreated(tk); err != nil {
		return err
	}
	return t.ticketWritten(tk)
}

// UpdateTicket writes every mutable field of tk (not tags or cc) and
// sets UpdatedAt to now.
func (t *Tx) UpdateTicket(tk *Ticket) error {
	tk.UpdatedAt = t.now()
	err := t.throughCaches(func() error {
		_, err := t.exec(updateTicketSQL,
			tk.Subject, tk.Status, tk.Priority, strOrNil(tk.Type), strOrNil(tk.Group), int64OrNil(tk.ResponderID), int64OrNil(tk.ParentID),
			tk.Deleted, ts(tk.UpdatedAt), nts(tk.FirstRespondedAt), nts(tk.AgentRespondedAt), nts(tk.RequesterRespondedAt), nts(tk.StatusUpdatedAt),
			nts(tk.ResolvedAt), nts(tk.ClosedAt), tk.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: update ticket %d: %w", tk.ID, err)
	}
	if err := t.ticketUpdated(tk); err != nil {
		return err
	}
	return t.ticketWritten(tk)
}

// DeleteTicket removes a ticket and everything that belongs to it.
func (t *Tx) DeleteTicket(id int64) error {
	if _, err := t.exec(`UPDATE tickets SET parent_id=NULL WHERE parent_id=?`, id); err != nil {
		return fmt.Errorf("store: delete ticket %d: %w", id, err)
	}
	res, err := t.exec(`DELETE FROM tickets WHERE id=?`, id)
	if err != nil {
		return fmt.Errorf("store: delete ticket %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: delete ticket %d: %w", id, ErrNotFound)
	}
	return nil
}

// AddTag adds a tag; adding one that exists is not an error.
func (t *Tx) AddTag(ticketID int64, tag string) error {
	if _, err := t.exec(`INSERT INTO ticket_tags(ticket_id, tag) VALUES (?,?) ON CONFLICT DO NOTHING`, ticketID, tag); err != nil {
		return fmt.Errorf("store: ticket %d add tag: %w", ticketID, err)
	}
	return nil
}

// RemoveTag removes a tag.
func (t *Tx) RemoveTag(ticketID int64, tag string) error {
	if _, err := t.exec(`DELETE FROM ticket_tags WHERE ticket_id=? AND tag=?`, ticketID, tag); err != nil {
		return fmt.Errorf("store: ticket %d remove tag: %w", ticketID, err)
	}
	return nil
}

// SetTags replaces a ticket's tags.
func (t *Tx) SetTags(ticketID int64, tags []string) error {
	if _, err := t.exec(`DELETE FROM ticket_tags WHERE ticket_id=?`, ticketID); err != nil {
		return fmt.Errorf("store: ticket %d set tags: %w", ticketID, err)
	}
	for _, tag := range tags {
		if err := t.AddTag(ticketID, tag); err != nil {
			return err
		}
	}
	return nil
}

// AddCC adds a cc address to a ticket and reports whether it is new.
func (t *Tx) AddCC(ticketID int64, email string) (bool, error) {
	res, err := t.exec(`INSERT INTO ticket_cc(ticket_id, email, added_at) VALUES (?,?,?) ON CONFLICT DO NOTHING`, ticketID, email, ts(t.now()))
	if err != nil {
		return false, fmt.Errorf("store: ticket %d add cc: %w", ticketID, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// RemoveCC removes a cc address and reports whether it was there.
func (t *Tx) RemoveCC(ticketID int64, email string) (bool, error) {
	res, err := t.exec(`DELETE FROM ticket_cc WHERE ticket_id=? AND email=?`, ticketID, email)
	if err != nil {
		return false, fmt.Errorf("store: ticket %d remove cc: %w", ticketID, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// IsParticipant reports whether email is the requester or a cc of the
// ticket (agents are checked separately).
func (t *Tx) IsParticipant(ticketID int64, email string) (bool, error) {
	if is, ok := t.cachedParticipant(ticketID, email); ok {
		if t.verifyTickets {
			if db, err := t.readParticipant(ticketID, email); err != nil || db != is {
				return false, fmt.Errorf("store: ticket %d participant %s: remembered %v, database %v (%v)", ticketID, email, is, db, err)
			}
		}
		return is, nil
	}
	return t.readParticipant(ticketID, email)
}

func (t *Tx) readParticipant(ticketID int64, email string) (bool, error) {
	var n int
	err := t.row(`SELECT (SELECT COUNT(*) FROM tickets t JOIN contacts c ON c.id=t.requester_id WHERE t.id=? AND c.email=?)
		+ (SELECT COUNT(*) FROM ticket_cc WHERE ticket_id=? AND email=?)`, ticketID, email, ticketID, email).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: ticket %d participant: %w", ticketID, err)
	}
	return n > 0, nil
}

// SentTo reports whether deskmail sent (or is sending) the outbound
// mail with this Message-ID on this ticket to email as an envelope
// recipient: knowing a Message-ID proves nothing, having received the
// mail does.
func (t *Tx) SentTo(ticketID int64, messageID, email string) (bool, error) {
	var n int
	// outbox_rcpt holds rcpt_to's addresses (kept by triggers), compared
	// without regard to case.
	err := t.row(`SELECT COUNT(*) FROM outbox o JOIN outbox_rcpt r ON r.outbox_id=o.id
		WHERE o.ticket_id=? AND o.message_id=? AND o.state IN ('queued','sent') AND r.address=?`,
		ticketID, messageID, email).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: ticket %d mail %s sent to %s: %w", ticketID, messageID, email, err)
	}
	return n > 0, nil
}

// TicketExists reports whether a ticket with this id exists.
func (t *Tx) TicketExists(id int64) (bool, error) {
	var n int
	if err := t.row(`SELECT COUNT(*) FROM tickets WHERE id=?`, id).Scan(&n); err != nil {
		return false, fmt.Errorf("store: ticket %d: %w", id, err)
	}
	return n > 0, nil
}

// History is one recorded change of a ticket.
type History struct {
	ID             int64     `json:"id"`
	TicketID       int64     `json:"ticket_id"`
	At             time.Time `json:"at"`
	ActorType      string    `json:"actor_type"`
	Actor          string    `json:"actor"`
	ConversationID *int64    `json:"conversation_id"`
	Action         string    `json:"action"`
	Field          string    `json:"field"`
	OldValue       *string   `json:"old_value"`
	NewValue       *string   `json:"new_value"`
	Note           string    `json:"note"`
}

// AddHistory records a change.
func (t *Tx) AddHistory(h History) error {
	if h.At.IsZero() {
		h.At = t.now()
	}
	_, err := t.exec(`INSERT INTO history(ticket_id, at, actor_type, actor, conversation_id, action, field, old_value, new_value, note)
		VALUES (?,?,?,?,?,?,?,?,?,?)`, h.TicketID, ts(h.At), h.ActorType, h.Actor, int64OrNil(h.ConversationID), h.Action, h.Field,
		strOrNil(h.OldValue), strOrNil(h.NewValue), h.Note)
	if err != nil {
		return fmt.Errorf("store: ticket %d history: %w", h.TicketID, err)
	}
	return nil
}

// TicketHistory lists a ticket's history, oldest first.
func (t *Tx) TicketHistory(ticketID int64) ([]History, error) {
	rows, err := t.query(`SELECT id, ticket_id, at, actor_type, actor, conversation_id, action, field, old_value, new_value, note
		FROM history WHERE ticket_id=? ORDER BY id`, ticketID)
	if err != nil {
		return nil, fmt.Errorf("store: ticket %d history: %w", ticketID, err)
	}
	defer rows.Close()
	out := []History{}
	for rows.Next() {
		var h History
		var at string
		var conv sql.NullInt64
		var oldV, newV sql.NullString
		if err := rows.Scan(&h.ID, &h.TicketID, &at, &h.ActorType, &h.Actor, &conv, &h.Action, &h.Field, &oldV, &newV, &h.Note); err != nil {
			return nil, fmt.Errorf("store: ticket %d history: %w", ticketID, err)
		}
		h.At, h.ConversationID, h.OldValue, h.NewValue = pts(at), nint(conv), nstr(oldV), nstr(newV)
		out = append(out, h)
	}
	return out, rows.Err()
}

// SetCustomField sets (or, with value "", clears) a custom field.
func (t *Tx) SetCustomField(ticketID int64, name, value string) error {
	var err error
	if value == "" {
		_, err = t.exec(`DELETE FROM ticket_custom_fields WHERE ticket_id=? AND name=?`, ticketID, name)
	} else {
		_, err = t.exec(`INSERT INTO ticket_custom_fields(ticket_id, name, value) VALUES (?,?,?)
			ON CONFLICT(ticket_id, name) DO UPDATE SET value=excluded.value`, ticketID, name, value)
	}
	if err != nil {
		return fmt.Errorf("store: ticket %d custom field %s: %w", ticketID, name, err)
	}
	return nil
}

// CountTickets returns how many tickets exist (deleted ones included).
func (t *Tx) CountTickets() (int, error) {
	var n int
	if err := t.row(`SELECT COUNT(*) FROM tickets`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count tickets: %w", err)
	}
	return n, nil
}

// CountConversations returns how many conversations all tickets hold.
func (t *Tx) CountConversations() (int, error) {
	var n int
	if err := t.row(`SELECT COUNT(*) FROM conversations`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count conversations: %w", err)
	}
	return n, nil
}
