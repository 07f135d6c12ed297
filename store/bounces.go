package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Bounce outcomes: what a delivery status report proved.
const (
	// BounceFlagged: a permanent failure of mail we sent to the named
	// recipients; they were flagged.
	BounceFlagged = "flagged"
	// BounceTransient: it answers our mail, but the failure is not
	// permanent (4.x.x, or no status): recorded on the ticket only.
	BounceTransient = "transient"
	// BounceUncorrelated: it answers nothing we can prove we sent to
	// the recipients it names; kept, flags nobody.
	BounceUncorrelated = "uncorrelated"
)

// Bounce is one delivery status report as received and judged.
type Bounce struct {
	ID         int64     `json:"id"`
	RawID      *int64    `json:"raw_id"`
	ReceivedAt time.Time `json:"received_at"`
	// MessageID is the report's own Message-ID.
	MessageID  string   `json:"message_id"`
	FromEmail  string   `json:"from_email"`
	Status     string   `json:"status"`
	Recipients []string `json:"recipients"`
	// OutboxID is the outbound mail the report was proven to answer.
	OutboxID *int64 `json:"outbox_id"`
	TicketID *int64 `json:"ticket_id"`
	Outcome  string `json:"outcome"`
	Note     string `json:"note"`
}

// AddBounce records a delivery status report and sets b.ID.
func (t *Tx) AddBounce(b *Bounce) error {
	if b.ReceivedAt.IsZero() {
		b.ReceivedAt = t.now()
	}
	if b.Recipients == nil {
		b.Recipients = []string{}
	}
	rcpt, err := json.Marshal(b.Recipients)
	if err != nil {
		return fmt.Errorf("store: add bounce: %w", err)
	}
	id, err := t.insert(`INSERT INTO bounces(raw_id, received_at, message_id, from_email, status, recipients, outbox_id, ticket_id, outcome, note)
		VALUES (?,?,?,?,?,?,?,?,?,?)`, b.RawID, ts(b.ReceivedAt), b.MessageID, b.FromEmail, b.Status, string(rcpt), b.OutboxID, b.TicketID, b.Outcome, b.Note)
	if err != nil {
		return fmt.Errorf("store: add bounce: %w", err)
	}
	b.ID = id
	return nil
}

const bounceCols = `id, raw_id, received_at, message_id, from_email, status, recipients, outbox_id, ticket_id, outcome, note`

func scanBounce(sc interface{ Scan(...any) error }) (*Bounce, error) {
	var b Bounce
	var raw, outbox, ticket sql.NullInt64
	var at, rcpt string
	if err := sc.Scan(&b.ID, &raw, &at, &b.MessageID, &b.FromEmail, &b.Status, &rcpt, &outbox, &ticket, &b.Outcome, &b.Note); err != nil {
		return nil, err
	}
	b.RawID, b.OutboxID, b.TicketID, b.ReceivedAt = nint(raw), nint(outbox), nint(ticket), pts(at)
	b.Recipients = []string{}
	_ = json.Unmarshal([]byte(rcpt), &b.Recipients)
	return &b, nil
}

// BounceByID returns one recorded report.
func (t *Tx) BounceByID(id int64) (*Bounce, error) {
	b, err := scanBounce(t.row(`SELECT `+bounceCols+` FROM bounces WHERE id=?`, id))
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("bounce %d", id))
	}
	return b, nil
}

// Bounces lists the newest recorded reports with an outcome ("" for
// all), newest first, at most limit of them.
func (t *Tx) Bounces(outcome string, limit int) ([]Bounce, error) {
	rows, err := t.query(`SELECT `+bounceCols+` FROM bounces WHERE ?='' OR outcome=? ORDER BY id DESC LIMIT ?`, outcome, outcome, limit)
	if err != nil {
		return nil, fmt.Errorf("store: bounces: %w", err)
	}
	defer rows.Close()
	out := []Bounce{}
	for rows.Next() {
		b, err := scanBounce(rows)
		if err != nil {
			return nil, fmt.Errorf("store: bounces: %w", err)
		}
		out = append(out, *b)
	}
	return out, rows.Err()
}

// CountBounces counts recorded reports by outcome.
func (t *Tx) CountBounces(outcome string) (int, error) {
	var n int
	if err := t.row(`SELECT COUNT(*) FROM bounces WHERE outcome=?`, outcome).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count bounces: %w", err)
	}
	return n, nil
}

// OutboxMailByMessageID returns the outbox row (without its raw text)
// that carried a Message-ID (no <>).
func (t *Tx) OutboxMailByMessageID(messageID string) (*OutboxMail, error) {
	m, err := scanOutbox(t.row(`SELECT `+outboxCols+` FROM outbox WHERE message_id=? ORDER BY id LIMIT 1`, messageID), false)
	if err != nil {
		return nil, notFound(err, "outbox mail "+messageID)
	}
	return m, nil
}
