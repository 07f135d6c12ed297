package store

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// TicketHook is called inside the transaction after every ticket is
// inserted (CreateTicket) or saved (UpdateTicket), with the ticket as
// written. The SLA clock is one: whatever path changes a ticket — mail,
// an email command, the API, the CLI, the scheduler — its due times
// follow in the same transaction. An error rolls the change back.
type TicketHook func(tx *Tx, tk *Ticket) error

// SetTicketHook installs the hook every later transaction calls (nil
// removes it). Transactions already running keep the hook they began
// with.
func (s *Store) SetTicketHook(h TicketHook) {
	if h == nil {
		s.hook.Store(nil)
		return
	}
	s.hook.Store(&h)
}

func (t *Tx) ticketWritten(tk *Ticket) error {
	if t.hook == nil {
		return nil
	}
	return t.hook(t, tk)
}

// TicketSLA is a ticket's clock state: what the sla package computed
// and the scheduler acts on.
type TicketSLA struct {
	TicketID int64
	// Policy is the SLA policy's name ("" when only auto-close applies).
	Policy   string
	Priority int
	// Category is the status category the state was computed for.
	Category string
	// RunningSince is when the clock last started; nil while stopped
	// (pending, resolved or closed).
	RunningSince *time.Time
	// Consumed is the business time counted before RunningSince.
	Consumed time.Duration
	// PausedAt starts the current pending spell; Paused is the wall
	// time of the spells before it.
	PausedAt *time.Time
	Paused   time.Duration
	FrDueAt  *time.Time
	DueAt    *time.Time
	// FrEscalatedAt and EscalatedAt are set once, by the scheduler,
	// when the target was missed.
	FrEscalatedAt *time.Time
	EscalatedAt   *time.Time
	// CloseAt is when a resolved ticket is closed automatically.
	CloseAt *time.Time
	// NextAt is the earliest timer still to fire (nil: none).
	NextAt *time.Time
}

// TicketSLA returns a ticket's clock state, or ErrNotFound.
func (t *Tx) TicketSLA(ticketID int64) (*TicketSLA, error) {
	var s TicketSLA
	var running, paused, fr, due, fre, esc, closeAt, next sql.NullString
	var consumed, pausedSecs float64
	err := t.row(`SELECT ticket_id, policy, priority, category, running_since, consumed_seconds, paused_at, paused_seconds,
		fr_due_at, due_at, fr_escalated_at, escalated_at, close_at, next_at FROM ticket_sla WHERE ticket_id=?`, ticketID).Scan(
		&s.TicketID, &s.Policy, &s.Priority, &s.Category, &running, &consumed, &paused, &pausedSecs, &fr, &due, &fre, &esc, &closeAt, &next)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: sla of ticket %d: %w", ticketID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: sla of ticket %d: %w", ticketID, err)
	}
	s.RunningSince, s.PausedAt = pnts(running), pnts(paused)
	s.Consumed, s.Paused = secs(consumed), secs(pausedSecs)
	s.FrDueAt, s.DueAt, s.FrEscalatedAt, s.EscalatedAt = pnts(fr), pnts(due), pnts(fre), pnts(esc)
	s.CloseAt, s.NextAt = pnts(closeAt), pnts(next)
	return &s, nil
}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// PutTicketSLA writes a ticket's clock state.
func (t *Tx) PutTicketSLA(s *TicketSLA) error {
	err := t.throughCaches(func() error {
		_, err := t.exec(putTicketSLASQL,
			s.TicketID, s.Policy, s.Priority, s.Category, nts(s.RunningSince), s.Consumed.Seconds(), nts(s.PausedAt), s.Paused.Seconds(),
			nts(s.FrDueAt), nts(s.DueAt), nts(s.FrEscalatedAt), nts(s.EscalatedAt), nts(s.CloseAt), nts(s.NextAt), ts(t.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("store: sla of ticket %d: %w", s.TicketID, err)
	}
	t.slaWritten(s)
	return nil
}

// NextSLATimer returns the earliest timer still to fire (nil when
// none). It reads one entry of an index.
func (t *Tx) NextSLATimer() (*time.Time, error) {
	var next sql.NullString
	if err := t.row(`SELECT MIN(next_at) FROM ticket_sla WHERE next_at IS NOT NULL`).Scan(&next); err != nil {
		return nil, fmt.Errorf("store: next sla timer: %w", err)
	}
	return pnts(next), nil
}

// DueSLATimers lists up to limit tickets whose timer is due at now.
func (t *Tx) DueSLATimers(now time.Time, limit int) ([]int64, error) {
	// Locked on PostgreSQL: instances sharing the database each fire
	// a timer once (another instance skips the rows this one fires).
	return t.ints(`SELECT ticket_id FROM ticket_sla WHERE next_at IS NOT NULL AND next_at<=? ORDER BY next_at LIMIT ?`+t.lockRows(), ts(now), limit)
}

// ClockedTickets lists up to limit tickets with an SLA clock that is
// not closed, ids above after in order (for recomputing their clocks
// under new policies, a batch at a time).
func (t *Tx) ClockedTickets(after int64, limit int) ([]int64, error) {
	ids, err := t.ints(`SELECT s.ticket_id FROM ticket_sla s JOIN tickets t ON t.id=s.ticket_id
		WHERE s.category<>'closed' AND t.deleted=0 AND s.ticket_id>? ORDER BY s.ticket_id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: clocked tickets: %w", err)
	}
	return ids, nil
}

// StatusCategory returns a status code's category ("" when unknown).
func (t *Tx) StatusCategory(code int) (string, error) {
	var c string
	err := t.row(`SELECT category FROM statuses WHERE code=?`, code).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: status %d: %w", code, err)
	}
	return c, nil
}

// WithoutTicketHook runs fn with the ticket hook off: the writes of
// mail imported as history get no SLA clock.
func (t *Tx) WithoutTicketHook(fn func() error) error {
	h := t.hook
	t.hook = nil
	defer func() { t.hook = h }()
	return fn()
}
