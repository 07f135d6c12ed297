// Package webhook tells HTTP endpoints about ticket events. An event
// is written to a durable queue (the store's webhook_deliveries) in
// the transaction of the change it reports, so it is queued if and
// only if the change commits; a Worker posts it as JSON, signed with
// HMAC-SHA256, and retries with jittered exponential backoff until the
// endpoint answers 2xx or the attempts run out. A receiver that is down
// loses nothing: its events wait in the queue.
//
// Delivery is at least once: a crash after the endpoint answered and
// before the answer was recorded posts the event again. Each payload
// carries a delivery_id (also in the X-Deskmail-Delivery header) for
// the receiver to drop a repeat.
//
// The signature is X-Deskmail-Signature: sha256=HEX, the HMAC-SHA256 of
// the request body keyed with the webhook's secret (GitHub's scheme).
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/deskmail/deskmail/store"
)

// Hook is one configured endpoint.
type Hook struct {
	Name   string
	URL    string
	Secret []byte
	// Events it receives (empty: all).
	Events      []string
	Timeout     time.Duration
	MaxAttempts int
}

// Hooks is the configured endpoints. It is read-only after New and
// safe for concurrent use.
type Hooks struct {
	hooks  []Hook
	byName map[string]Hook
	// base is the API's public URL ("http://127.0.0.1:8080").
	base string
}

// New builds the hooks; base is the public base URL of the API (ticket
// URLs in payloads are base + /api/v2/tickets/ID).
func New(hooks []Hook, base string) *Hooks {
	h := &Hooks{hooks: hooks, byName: map[string]Hook{}, base: strings.TrimRight(base, "/")}
	for i := range h.hooks {
		if h.hooks[i].Timeout <= 0 {
			h.hooks[i].Timeout = 10 * time.Second
		}
		if h.hooks[i].MaxAttempts <= 0 {
			h.hooks[i].MaxAttempts = 20
		}
		h.byName[h.hooks[i].Name] = h.hooks[i]
	}
	return h
}

// Empty reports whether no hook is configured (true for nil).
func (h *Hooks) Empty() bool {
	return h == nil || len(h.hooks) == 0
}

// Payload is the JSON body posted for an event.
type Payload struct {
	DeliveryID string    `json:"delivery_id"`
	Event      string    `json:"event"`
	OccurredAt time.Time `json:"occurred_at"`
	Ticket     Ticket    `json:"ticket"`
	// Breach is, for sla_breached, the missed target.
	Breach *Breach `json:"breach"`
	// Rule names the automation rule whose webhook action sent the
	// event (null for a webhook's own subscription).
	Rule *string `json:"rule"`
}

// Ticket is the ticket as a webhook sees it.
type Ticket struct {
	ID         int64   `json:"id"`
	Subject    string  `json:"subject"`
	Status     int     `json:"status"`
	StatusName string  `json:"status_name"`
	Priority   int     `json:"priority"`
	Requester  Person  `json:"requester"`
	Channel    *string `json:"channel"`
	Responder  *string `json:"responder"`
	// URL is the ticket's API resource.
	URL string `json:"url"`
}

// Person is a name and address.
type Person struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Breach is a missed SLA target.
type Breach struct {
	Target string    `json:"target"`
	Policy string    `json:"policy"`
	DueAt  time.Time `json:"due_at"`
}

// Enqueue queues the event for every hook subscribed to it, inside the
// transaction of the change (the caller commits).
func (h *Hooks) Enqueue(tx *store.Tx, event string, tk *store.Ticket, breach *Breach) error {
	if h == nil || tk == nil {
		return nil
	}
	for _, hk := range h.hooks {
		if len(hk.Events) > 0 && !slices.Contains(hk.Events, event) {
			continue
		}
		if err := h.enqueue(tx, hk, event, tk, breach, nil); err != nil {
			return err
		}
	}
	return nil
}

// EnqueueFor queues the event for the hook named, whatever its events
// list: an automation rule's webhook action, named in the payload's
// rule field. It runs inside the transaction of the change.
func (h *Hooks) EnqueueFor(tx *store.Tx, hook, event string, tk *store.Ticket, breach *Breach, rule string) error {
	if tk == nil {
		return nil
	}
	var hk Hook
	ok := false
	if h != nil {
		hk, ok = h.byName[hook]
	}
	if !ok {
		return fmt.Errorf("webhook %q is not configured", hook)
	}
	return h.enqueue(tx, hk, event, tk, breach, &rule)
}

func (h *Hooks) enqueue(tx *store.Tx, hk Hook, event string, tk *store.Ticket, breach *Breach, rule *string) error {
	id, err := newID()
	if err != nil {
		return err
	}
	p := Payload{DeliveryID: id, Event: event, OccurredAt: tx.Now().UTC(), Breach: breach, Rule: rule, Ticket: Ticket{
		ID: tk.ID, Subject: tk.Subject, Status: tk.Status, StatusName: tk.StatusName, Priority: tk.Priority,
		Requester: Person{Name: tk.Requester.Name, Email: tk.Requester.Email}, Channel: tk.Channel, Responder: tk.Responder,
		URL: fmt.Sprintf("%s/api/v2/tickets/%d", h.base, tk.ID),
	}}
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", hk.Name, err)
	}
	tid := tk.ID
	return tx.EnqueueWebhook(&store.WebhookDelivery{Webhook: hk.Name, URL: hk.URL, Event: event, TicketID: &tid, Payload: body})
}

func newID() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhook: delivery id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Sign returns the X-Deskmail-Signature value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is body's signature under secret
// (compared in constant time): what a receiver checks.
func Verify(secret, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}

// Worker delivers queued events. One runs per daemon; several on one
// database are safe (an attempt is claimed in a write transaction
// before it is made).
type Worker struct {
	Store  *store.Store
	Hooks  *Hooks
	Client *http.Client
	Logger *slog.Logger
	// MinBackoff is the first retry delay (default 1s), doubled per
	// attempt up to MaxBackoff (default 1h), ±25% jitter.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxWait bounds a sleep (default 1s): deliveries another process
	// queued are found within it.
	MaxWait time.Duration
	Now     func() time.Time
	kick    chan struct{}
}

// Kick wakes the worker (after a commit that queued events). Without
// hooks it does nothing: no commit of this process can have queued a
// delivery, and what another process or an earlier configuration left
// queued is found within MaxWait. (deskmail serve kicks after every
// commit; each wake-up is a write transaction that looks for due
// deliveries, 5% of the daemon's CPU under SMTP load with no webhook
// configured.)
func (w *Worker) Kick() {
	if w.kick == nil || w.Hooks.Empty() {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Worker) defaults() {
	if w.Client == nil {
		w.Client = &http.Client{}
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.MinBackoff <= 0 {
		w.MinBackoff = time.Second
	}
	if w.MaxBackoff <= 0 {
		w.MaxBackoff = time.Hour
	}
	if w.MaxWait <= 0 {
		w.MaxWait = time.Second
	}
	if w.Now == nil {
		w.Now = time.Now
	}
}

// NewWorker returns a worker; set its fields before Run.
func NewWorker(st *store.Store, hooks *Hooks, logger *slog.Logger) *Worker {
	return &Worker{Store: st, Hooks: hooks, Logger: logger, kick: make(chan struct{}, 1)}
}

// Run delivers until ctx ends; it returns nil then. An attempt in
// flight when ctx ends is retried later (its next attempt was written
// before it began).
func (w *Worker) Run(ctx context.Context) error {
	w.defaults()
	if w.kick == nil {
		w.kick = make(chan struct{}, 1)
	}
	for {
		wait := w.MaxWait
		next, err := w.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.Logger.Error("webhooks", "err", err)
		} else if next != nil {
			if d := next.Sub(w.Now()); d < wait {
				wait = max(d, 0)
			}
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-w.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// RunOnce makes every attempt due now and returns the next attempt's
// time (nil: none queued).
func (w *Worker) RunOnce(ctx context.Context) (*time.Time, error) {
	w.defaults()
	for {
		var due []store.WebhookDelivery
		now := w.Now()
		err := w.Store.Write(ctx, func(tx *store.Tx) error {
			var err error
			if due, err = tx.DueWebhooks(now, 32); err != nil {
				return err
			}
			// Claim each attempt before making it.
			for _, d := range due {
				if err := tx.ScheduleWebhookAttempt(d.ID, now.Add(w.backoff(d.Attempts))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, d := range due {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			w.attempt(ctx, d)
		}
		if len(due) < 32 {
			break
		}
	}
	var next *time.Time
	err := w.Store.Read(ctx, func(tx *store.Tx) error {
		var err error
		next, err = tx.NextWebhookAttempt()
		return err
	})
	return next, err
}

// backoff is the delay after attempt n (0-based) fails.
func (w *Worker) backoff(n int) time.Duration {
	d := float64(w.MinBackoff) * math.Pow(2, float64(min(n, 30)))
	d = min(d, float64(w.MaxBackoff))
	j, err := rand.Int(rand.Reader, big.NewInt(1000))
	if err == nil {
		d *= 0.75 + 0.5*float64(j.Int64())/1000
	}
	return time.Duration(d)
}

// attempt posts one delivery and records the outcome.
func (w *Worker) attempt(ctx context.Context, d store.WebhookDelivery) {
	hk, ok := w.Hooks.byName[d.Webhook]
	state, msg := store.WebhookQueued, ""
	switch {
	case !ok:
		state, msg = store.WebhookFailed, "webhook "+d.Webhook+" is no longer configured"
	default:
		msg = w.post(ctx, hk, d)
		switch {
		case msg == "":
			state = store.WebhookSent
		case d.Attempts+1 >= hk.MaxAttempts:
			state = store.WebhookFailed
			msg = fmt.Sprintf("gave up after %d attempts: %s", d.Attempts+1, msg)
		}
	}
	if ctx.Err() != nil && state != store.WebhookSent {
		return // shutting down: the scheduled retry stands
	}
	err := w.Store.Write(context.WithoutCancel(ctx), func(tx *store.Tx) error { return tx.FinishWebhook(d.ID, state, msg) })
	if err != nil {
		w.Logger.Error("webhook: recording an attempt", "webhook", d.Webhook, "delivery", d.ID, "err", err)
		return
	}
	switch state {
	case store.WebhookSent:
		w.Logger.Info("webhook delivered", "webhook", d.Webhook, "event", d.Event, "delivery", d.ID, "attempts", d.Attempts+1)
	case store.WebhookFailed:
		w.Logger.Warn("webhook failed", "webhook", d.Webhook, "event", d.Event, "delivery", d.ID, "err", msg)
	default:
		w.Logger.Info("webhook will be retried", "webhook", d.Webhook, "event", d.Event, "delivery", d.ID, "err", msg)
	}
}

// post sends one delivery; "" means the endpoint took it (2xx).
func (w *Worker) post(ctx context.Context, hk Hook, d store.WebhookDelivery) string {
	ctx, cancel := context.WithTimeout(ctx, hk.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hk.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return err.Error()
	}
	var p struct {
		DeliveryID string `json:"delivery_id"`
	}
	_ = json.Unmarshal(d.Payload, &p)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "deskmail-webhook")
	req.Header.Set("X-Deskmail-Event", d.Event)
	req.Header.Set("X-Deskmail-Delivery", p.DeliveryID)
	req.Header.Set("X-Deskmail-Signature", Sign(hk.Secret, d.Payload))
	resp, err := w.Client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return "HTTP " + resp.Status
	}
	return ""
}
