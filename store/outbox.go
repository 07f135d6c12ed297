package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Outbox states. A row is written "queued" (or "suppressed", when a
// loop or rate rule decided nothing may go out) in the transaction of
// the change that caused it, and ends "sent" or "failed".
const (
	OutboxQueued     = "queued"
	OutboxSent       = "sent"
	OutboxFailed     = "failed"
	OutboxSuppressed = "suppressed"
)

// OutboxMail is one outbound message: its envelope, its raw MIME text
// and its delivery schedule.
type OutboxMail struct {
	ID             int64
	TicketID       *int64
	ConversationID *int64
	ChannelID      *int64
	// Kind is what the mail is: confirmation, agent_reply,
	// notification, closing, command_error.
	Kind     string
	MailFrom string
	RcptTo   []string
	Subject  string
	// MessageID is the mail's Message-ID, without <>.
	MessageID     string
	Raw           []byte
	State         string
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	CreatedAt     time.Time
	SentAt        *time.Time

	// claimedBy is the instance that claimed it ('' for none).
	claimedBy string
}

// EnqueueOutbox writes m to the outbox (ID, CreatedAt and, when zero,
// NextAttemptAt are filled in). A queued mail's Message-ID is recorded
// in the Message-ID index as direction "out" in the same transaction,
// so a reply to it threads onto its ticket and a copy of it coming
// back is recognised as our own. Suppressed mail never leaves, so its
// Message-ID is not indexed.
func (t *Tx) EnqueueOutbox(m *OutboxMail) error {
	return t.enqueueOutbox(m, m.Raw)
}

// enqueueOutbox is EnqueueOutbox with the INSERT's raw argument: m.Raw,
// or a lazyRaw whose bytes are rendered meanwhile.
func (t *Tx) enqueueOutbox(m *OutboxMail, raw any) error {
	if m.MessageID == "" {
		return fmt.Errorf("store: enqueue outbox: mail without Message-ID")
	}
	if m.State == "" {
		m.State = OutboxQueued
	}
	now := t.now()
	if m.CreatedAt.IsZero() {
		m.CreatedAt = now
	}
	if m.NextAttemptAt.IsZero() {
		m.NextAttemptAt = m.CreatedAt
	}
	rcpt, err := json.Marshal(nonNil(m.RcptTo))
	if err != nil {
		return fmt.Errorf("store: enqueue outbox %s: %w", m.MessageID, err)
	}
	// The thread remembered learns of this mail from threadEnqueued,
	// not by forgetting it at the INSERTs below.
	t.enqueuing = true
	defer func() { t.enqueuing = false }()
	id, err := t.insert(`INSERT INTO outbox(ticket_id, conversation_id, channel_id, kind, mail_from, rcpt_to, subject, message_id, raw,
		state, attempts, next_attempt_at, last_error, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		int64OrNil(m.TicketID), int64OrNil(m.ConversationID), int64OrNil(m.ChannelID), m.Kind, m.MailFrom, string(rcpt), m.Subject,
		m.MessageID, raw, m.State, m.Attempts, ts(m.NextAttemptAt), m.LastError, ts(m.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: enqueue outbox %s: %w", m.MessageID, err)
	}
	m.ID = id
	if t.d.pg {
		// SQLite's trigger writes these rows (migration 10); on
		// PostgreSQL they are written here (migration 20).
		for _, a := range m.RcptTo {
			if _, err := t.exec(`INSERT INTO outbox_rcpt(outbox_id, address) VALUES (?, ?)`, id, a); err != nil {
				return fmt.Errorf("store: enqueue outbox %s: recipient: %w", m.MessageID, err)
			}
		}
	}
	t.sentToEnqueued(m)
	if m.State == OutboxSuppressed {
		// No Message-ID row: the thread is as it was.
		return nil
	}
	createdAt := ts(t.now())
	if err := t.addMessageID(MessageRef{MessageID: m.MessageID, Direction: "out", ChannelID: m.ChannelID, TicketID: m.TicketID, ConversationID: m.ConversationID}, createdAt); err != nil {
		t.forgetThreads()
		return err
	}
	t.threadEnqueued(m, createdAt)
	return nil
}

const outboxCols = `id, ticket_id, conversation_id, channel_id, kind, mail_from, rcpt_to, subject, message_id, state, attempts,
	next_attempt_at, last_error, created_at, sent_at, claimed_by`

func scanOutbox(sc interface{ Scan(...any) error }, withRaw bool) (*OutboxMail, error) {
	var m OutboxMail
	var ticket, conv, channel sql.NullInt64
	var rcpt, next, created string
	var sent sql.NullString
	dest := []any{&m.ID, &ticket, &conv, &channel, &m.Kind, &m.MailFrom, &rcpt, &m.Subject, &m.MessageID, &m.State, &m.Attempts,
		&next, &m.LastError, &created, &sent, &m.claimedBy}
	if withRaw {
		dest = append(dest, &m.Raw)
	}
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	m.TicketID, m.ConversationID, m.ChannelID = nint(ticket), nint(conv), nint(channel)
	m.NextAttemptAt, m.CreatedAt, m.SentAt = pts(next), pts(created), pnts(sent)
	m.RcptTo = []string{}
	_ = json.Unmarshal([]byte(rcpt), &m.RcptTo)
	return &m, nil
}

func (t *Tx) outboxRows(withRaw bool, query string, args ...any) ([]OutboxMail, error) {
	cols := outboxCols
	if withRaw {
		cols += ", raw"
	}
	rows, err := t.query(strings.Replace(query, "$COLS", cols, 1), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []OutboxMail{}
	for rows.Next() {
		m, err := scanOutbox(rows, withRaw)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

// InstanceLive is how old an instance's heartbeat may be for it to
// count as running: its IMAP folders and the mail it claimed for
// delivery stay its own.
const InstanceLive = 30 * time.Second

// dueWhere selects queued mail whose time has come and that is the
// oldest queued mail of its ticket: a ticket's message N+1 never
// leaves while message N is still queued (waiting for a retry or in
// flight), so customers read replies in the order they were written.
const dueWhere = ` FROM outbox o WHERE o.state='queued' AND o.next_attempt_at<=?
	AND (o.ticket_id IS NULL OR o.id=(SELECT MIN(o2.id) FROM outbox o2 WHERE o2.ticket_id=o.ticket_id AND o2.state='queued'))`

// DueOutbox lists (without claiming) up to limit queued mails that may
// be delivered at now, oldest schedule first, one per ticket.
func (t *Tx) DueOutbox(now time.Time, limit int) ([]OutboxMail, error) {
	out, err := t.outboxRows(false, `SELECT $COLS`+dueWhere+` ORDER BY o.next_attempt_at, o.id LIMIT ?`, ts(now), limit)
	if err != nil {
		return nil, fmt.Errorf("store: due outbox: %w", err)
	}
	return out, nil
}

// ClaimOutbox takes up to limit due mails (as DueOutbox selects them)
// for delivery by owner and returns them with their raw text. For
// each, it counts the attempt and moves next_attempt_at to
// lease(attempts) — written before anyone dials, so that a worker that
// crashes mid-send leaves the mail to be retried at that time, and so
// that a second worker (another process on the same database) does not
// take it meanwhile: claims run in write transactions, which SQLite
// serializes and PostgreSQL locks (SKIP LOCKED), and each update
// re-checks that the row is still due. The caller must keep each
// delivery attempt shorter than its lease.
//
// owner is the running instance claiming (its id in the instances
// table, kept fresh by its heartbeat; "" for a process without one):
// when it dies, ReleaseDeadClaims hands its mail to the others at once
// instead of at the end of the lease.
func (t *Tx) ClaimOutbox(owner string, now time.Time, limit int, lease func(attempts int) time.Time) ([]OutboxMail, error) {
	if t.read {
		return nil, fmt.Errorf("store: claim outbox: read-only transaction")
	}
	due, err := t.outboxRows(true, `SELECT $COLS`+dueWhere+` ORDER BY o.next_attempt_at, o.id LIMIT ?`+t.lockRows(), ts(now), limit)
	if err != nil {
		return nil, fmt.Errorf("store: claim outbox: %w", err)
	}
	out := due[:0]
	for _, m := range due {
		next := lease(m.Attempts + 1)
		res, err := t.exec(`UPDATE outbox SET attempts=attempts+1, next_attempt_at=?, claimed_by=? WHERE id=? AND state='queued' AND attempts=? AND next_attempt_at<=?`,
			ts(next), owner, m.ID, m.Attempts, ts(now))
		if err != nil {
			return nil, fmt.Errorf("store: claim outbox %d: %w", m.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue
		}
		m.Attempts++
		m.NextAttemptAt = next
		m.claimedBy = owner
		out = append(out, m)
	}
	return out, nil
}

// ReleaseDeadClaims makes the mail claimed by instances that stopped
// running (no heartbeat for InstanceLive: killed mid-delivery) due at
// now, for any running instance to take, and returns how many. The
// dead instance's attempt stays counted; a mail it had handed to the
// relay without recording it is delivered again (SMTP is at least
// once). Claims without an owner wait for their lease.
func (t *Tx) ReleaseDeadClaims(now time.Time) (int, error) {
	res, err := t.exec(`UPDATE outbox SET next_attempt_at=?, claimed_by='' WHERE state='queued' AND claimed_by<>''
		AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id=outbox.claimed_by AND i.heartbeat_at>=?)`, ts(now), ts(now.Add(-InstanceLive)))
	if err != nil {
		return 0, fmt.Errorf("store: release dead claims: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// NextOutboxDue returns when the next mail ClaimOutbox could take is
// scheduled (mail waiting behind an earlier mail of its ticket does not
// count), and false when nothing is queued.
func (t *Tx) NextOutboxDue() (time.Time, bool, error) {
	var next sql.NullString
	if err := t.row(`SELECT MIN(o.next_attempt_at) FROM outbox o WHERE o.state='queued'
		AND (o.ticket_id IS NULL OR o.id=(SELECT MIN(o2.id) FROM outbox o2 WHERE o2.ticket_id=o.ticket_id AND o2.state='queued'))`).Scan(&next); err != nil {
		return time.Time{}, false, fmt.Errorf("store: next outbox due: %w", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return pts(next.String), true, nil
}

// MarkOutboxSent records that the relay accepted a mail. A non-empty
// note (recipients the relay refused) replaces last_error; otherwise
// the error of an earlier attempt stays visible.
func (t *Tx) MarkOutboxSent(id int64, at time.Time, note string) error {
	return t.setOutbox(id, `state='sent', sent_at=?, last_error=CASE WHEN ?='' THEN last_error ELSE ? END`, ts(at), note, note)
}

// MarkOutboxFailed records that a mail will not be delivered.
func (t *Tx) MarkOutboxFailed(id int64, errText string) error {
	return t.setOutbox(id, `state='failed', last_error=?`, errText)
}

// RetryOutbox records a temporary failure and when to try again.
func (t *Tx) RetryOutbox(id int64, next time.Time, errText string) error {
	return t.setOutbox(id, `state='queued', next_attempt_at=?, last_error=?`, ts(next), errText)
}

// ReleaseOutbox gives back a claimed mail that could not be attempted
// (no relay for it): it stays queued until next, and the claim's
// attempt is not counted.
func (t *Tx) ReleaseOutbox(id int64, next time.Time, note string) error {
	return t.setOutbox(id, `state='queued', attempts=CASE WHEN attempts>0 THEN attempts-1 ELSE 0 END, next_attempt_at=?, last_error=?`, ts(next), note)
}

// RequeueOutbox puts a failed (or queued) mail back in the queue for
// delivery now, with a fresh attempt count: `deskmail outbox retry`.
func (t *Tx) RequeueOutbox(id int64) error {
	res, err := t.exec(`UPDATE outbox SET state='queued', attempts=0, next_attempt_at=?, claimed_by='' WHERE id=? AND state IN ('failed','queued')`, ts(t.now()), id)
	if err != nil {
		return fmt.Errorf("store: requeue outbox %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: requeue outbox %d (only failed or queued mail can be retried): %w", id, ErrNotFound)
	}
	return nil
}

// CancelOutbox gives up a queued or failed mail for good: it becomes
// suppressed with note as its last error, and is never sent.
func (t *Tx) CancelOutbox(id int64, note string) error {
	res, err := t.exec(`UPDATE outbox SET state='suppressed', last_error=?, claimed_by='' WHERE id=? AND state IN ('failed','queued')`, note, id)
	if err != nil {
		return fmt.Errorf("store: cancel outbox %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: cancel outbox %d (only failed or queued mail can be cancelled): %w", id, ErrNotFound)
	}
	return nil
}

// setOutbox records the outcome of an attempt (or an operator's
// change): the mail is nobody's claim any more.
func (t *Tx) setOutbox(id int64, set string, args ...any) error {
	res, err := t.exec(`UPDATE outbox SET `+set+`, claimed_by='' WHERE id=?`, append(args, id)...)
	if err != nil {
		return fmt.Errorf("store: outbox %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: outbox %d: %w", id, ErrNotFound)
	}
	return nil
}

// OutboxMailByID returns one outbox row with its raw text.
func (t *Tx) OutboxMailByID(id int64) (*OutboxMail, error) {
	m, err := scanOutbox(t.row(`SELECT `+outboxCols+`, raw FROM outbox WHERE id=?`, id), true)
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("outbox %d", id))
	}
	return m, nil
}

// OutboxFilter selects rows for ListOutbox. Zero values select all.
type OutboxFilter struct {
	State    string
	Kind     string
	TicketID int64
	// WithRaw loads the raw message text too.
	WithRaw bool
	Limit   int
}

// ListOutbox lists outbox rows, oldest first.
func (t *Tx) ListOutbox(f OutboxFilter) ([]OutboxMail, error) {
	var where []string
	var args []any
	if f.State != "" {
		where = append(where, "state=?")
		args = append(args, f.State)
	}
	if f.Kind != "" {
		where = append(where, "kind=?")
		args = append(args, f.Kind)
	}
	if f.TicketID > 0 {
		where = append(where, "ticket_id=?")
		args = append(args, f.TicketID)
	}
	q := `SELECT $COLS FROM outbox`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	out, err := t.outboxRows(f.WithRaw, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list outbox: %w", err)
	}
	return out, nil
}

// OutboxStats is the outbox's health, for metrics and deskmail status.
type OutboxStats struct {
	Queued     int
	Sent       int
	Failed     int
	Suppressed int
	// Retrying counts queued mail that has failed at least once.
	Retrying int
	// OldestQueued is the creation time of the oldest queued mail.
	OldestQueued *time.Time
}

// OutboxStats counts the outbox by state.
func (t *Tx) OutboxStats() (OutboxStats, error) {
	var s OutboxStats
	var oldest sql.NullString
	err := t.row(`SELECT
		COALESCE(SUM(CASE WHEN state='queued' THEN 1 ELSE 0 END),0), COALESCE(SUM(CASE WHEN state='sent' THEN 1 ELSE 0 END),0), COALESCE(SUM(CASE WHEN state='failed' THEN 1 ELSE 0 END),0),
		COALESCE(SUM(CASE WHEN state='suppressed' THEN 1 ELSE 0 END),0), COALESCE(SUM(CASE WHEN state='queued' AND attempts>0 THEN 1 ELSE 0 END),0),
		MIN(CASE WHEN state='queued' THEN created_at END) FROM outbox`).
		Scan(&s.Queued, &s.Sent, &s.Failed, &s.Suppressed, &s.Retrying, &oldest)
	if err != nil {
		return s, fmt.Errorf("store: outbox stats: %w", err)
	}
	s.OldestQueued = pnts(oldest)
	return s, nil
}

// countOutboxToSQL reads the outbox_rcpt index (migration 10): only
// the mail ever sent to that address is examined, however much other
// mail the hour saw (CROSS JOIN keeps SQLite from starting with the
// hour's mail instead). DISTINCT: an address may be listed twice.
const countOutboxToSQL = `SELECT COUNT(DISTINCT o.id) FROM outbox_rcpt r CROSS JOIN outbox o ON o.id = r.outbox_id
	WHERE r.address=? AND o.kind=? AND o.state<>'suppressed' AND o.created_at>=?`

// pgCountOutboxToSQL is countOutboxToSQL for PostgreSQL, whose planner
// has no CROSS JOIN to be told the order with: each mail ever sent to
// the address is looked up by id alone in a scalar subquery, which
// PostgreSQL never turns into a join, and tested there. As a join, or
// with the tests in the subquery's WHERE, a plan made before the tables
// had statistics walked the hour's mail of the kind
// (outbox_kind_created) for every message instead.
const pgCountOutboxToSQL = `SELECT COALESCE(SUM((SELECT CASE WHEN o.kind=? AND o.state<>'suppressed' AND o.created_at>=? THEN 1 ELSE 0 END
	FROM outbox o WHERE o.id = r.outbox_id)), 0)
	FROM (SELECT DISTINCT outbox_id FROM outbox_rcpt WHERE address=?) r`

// CountOutboxTo counts mail of a kind addressed to rcpt (compared
// case-insensitively) created at or after since, in any state but
// suppressed: how confirmations are rate-limited per sender.
func (t *Tx) CountOutboxTo(kind, rcpt string, since time.Time) (int, error) {
	if n, ok := t.cachedCountOutboxTo(kind, rcpt, since); ok {
		return n, nil
	}
	var n int
	var err error
	if t.d.pg {
		err = t.row(pgCountOutboxToSQL, kind, ts(since), rcpt).Scan(&n)
	} else {
		err = t.row(countOutboxToSQL, rcpt, kind, ts(since)).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("store: count outbox to %s: %w", rcpt, err)
	}
	return n, nil
}

// TicketOutboxKinds maps the Message-IDs of a ticket's outbound mail
// to their kind, so that references meant for the customer can leave
// out mail only agents received.
func (t *Tx) TicketOutboxKinds(ticketID int64) (map[string]string, error) {
	rows, err := t.query(`SELECT message_id, kind FROM outbox WHERE ticket_id=?`, ticketID)
	if err != nil {
		return nil, fmt.Errorf("store: ticket %d outbox: %w", ticketID, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, kind string
		if err := rows.Scan(&id, &kind); err != nil {
			return nil, fmt.Errorf("store: ticket %d outbox: %w", ticketID, err)
		}
		out[id] = kind
	}
	return out, rows.Err()
}
