package store

import (
	"database/sql"
	"fmt"
	"time"
)

// Webhook delivery states: written "queued" in the transaction of the
// event, then "sent" on a 2xx answer or "failed" after the last retry.
const (
	WebhookQueued = "queued"
	WebhookSent   = "sent"
	WebhookFailed = "failed"
)

// WebhookDelivery is one event to post to one webhook.
type WebhookDelivery struct {
	ID            int64
	Webhook       string
	URL           string
	Event         string
	TicketID      *int64
	Payload       []byte
	State         string
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	CreatedAt     time.Time
	SentAt        *time.Time
}

// EnqueueWebhook writes a delivery (ID and times filled in).
func (t *Tx) EnqueueWebhook(d *WebhookDelivery) error {
	now := t.now()
	d.CreatedAt, d.NextAttemptAt, d.State = now, now, WebhookQueued
	id, err := t.insert(`INSERT INTO webhook_deliveries(webhook, url, event, ticket_id, payload, state, next_attempt_at, created_at)
		VALUES (?,?,?,?,?,?,?,?)`, d.Webhook, d.URL, d.Event, int64OrNil(d.TicketID), d.Payload, d.State, ts(now), ts(now))
	if err != nil {
		return fmt.Errorf("store: enqueue webhook %s: %w", d.Webhook, err)
	}
	d.ID = id
	return nil
}

const webhookCols = `id, webhook, url, event, ticket_id, payload, state, attempts, next_attempt_at, last_error, created_at, sent_at`

func (t *Tx) webhookRows(query string, args ...any) ([]WebhookDelivery, error) {
	rows, err := t.query(`SELECT `+webhookCols+` FROM webhook_deliveries `+query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: webhook deliveries: %w", err)
	}
	defer rows.Close()
	out := []WebhookDelivery{}
	for rows.Next() {
		var d WebhookDelivery
		var ticket sql.NullInt64
		var next, created string
		var sent sql.NullString
		if err := rows.Scan(&d.ID, &d.Webhook, &d.URL, &d.Event, &ticket, &d.Payload, &d.State, &d.Attempts, &next, &d.LastError, &created, &sent); err != nil {
			return nil, fmt.Errorf("store: webhook deliveries: %w", err)
		}
		d.TicketID, d.NextAttemptAt, d.CreatedAt, d.SentAt = nint(ticket), pts(next), pts(created), pnts(sent)
		out = append(out, d)
	}
	return out, rows.Err()
}

// DueWebhooks lists up to limit queued deliveries due at now, oldest
// first.
func (t *Tx) DueWebhooks(now time.Time, limit int) ([]WebhookDelivery, error) {
	return t.webhookRows(`WHERE state='queued' AND next_attempt_at<=? ORDER BY next_attempt_at, id LIMIT ?`+t.lockRows(), ts(now), limit)
}

// WebhookDeliveries lists the newest deliveries (for status and tests).
func (t *Tx) WebhookDeliveries(limit int) ([]WebhookDelivery, error) {
	return t.webhookRows(`ORDER BY id DESC LIMIT ?`, limit)
}

// NextWebhookAttempt is the earliest queued attempt (nil: none).
func (t *Tx) NextWebhookAttempt() (*time.Time, error) {
	var next sql.NullString
	if err := t.row(`SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state='queued'`).Scan(&next); err != nil {
		return nil, fmt.Errorf("store: next webhook attempt: %w", err)
	}
	return pnts(next), nil
}

// ScheduleWebhookAttempt records an attempt before it is made: attempts
// goes up and the next attempt is set, so a crash mid-attempt retries
// later instead of at once in a loop.
func (t *Tx) ScheduleWebhookAttempt(id int64, next time.Time) error {
	if _, err := t.exec(`UPDATE webhook_deliveries SET attempts=attempts+1, next_attempt_at=? WHERE id=? AND state='queued'`, ts(next), id); err != nil {
		return fmt.Errorf("store: webhook %d: %w", id, err)
	}
	return nil
}

// FinishWebhook records an attempt's outcome: state sent or failed, or
// queued with the error (the next attempt was scheduled before).
func (t *Tx) FinishWebhook(id int64, state, lastError string) error {
	var sent any
	if state == WebhookSent {
		sent = ts(t.now())
	}
	if _, err := t.exec(`UPDATE webhook_deliveries SET state=?, last_error=?, sent_at=COALESCE(?, sent_at) WHERE id=?`, state, lastError, sent, id); err != nil {
		return fmt.Errorf("store: webhook %d: %w", id, err)
	}
	return nil
}

// WebhookStats counts deliveries by state, for deskmail status.
type WebhookStats struct {
	Queued, Sent, Failed int
	// Retrying counts queued deliveries that failed at least once.
	Retrying int
	// LastError is the newest error of a queued or failed delivery.
	LastError string
}

// WebhookStats reads the delivery queue's health.
func (t *Tx) WebhookStats() (WebhookStats, error) {
	var s WebhookStats
	err := t.row(`SELECT COALESCE(SUM(CASE WHEN state='queued' THEN 1 ELSE 0 END),0), COALESCE(SUM(CASE WHEN state='sent' THEN 1 ELSE 0 END),0), COALESCE(SUM(CASE WHEN state='failed' THEN 1 ELSE 0 END),0),
		COALESCE(SUM(CASE WHEN state='queued' AND attempts>0 THEN 1 ELSE 0 END),0),
		COALESCE((SELECT last_error FROM webhook_deliveries WHERE state<>'sent' AND last_error<>'' ORDER BY id DESC LIMIT 1),'')
		FROM webhook_deliveries`).Scan(&s.Queued, &s.Sent, &s.Failed, &s.Retrying, &s.LastError)
	if err != nil {
		return s, fmt.Errorf("store: webhook stats: %w", err)
	}
	return s, nil
}
