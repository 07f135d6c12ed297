package main

import (
	"context"
	"fmt"
	"time"

	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/outbound"
	"github.com/deskmail/deskmail/sla"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
	"github.com/deskmail/deskmail/webhook"
)

// slaActions is what the SLA scheduler does, with the current
// generation's outbox and pipeline (so a reload's templates and
// switches apply to the next escalation).
type slaActions struct {
	d *daemon
}

// Escalate queues the escalation mail (the mark and its history are
// the scheduler's, in the same transaction).
func (a slaActions) Escalate(tx *store.Tx, tk *store.Ticket, b sla.Breach) error {
	g := a.d.gen.Load()
	err := g.outbox.Enqueue(tx, outbound.Event{Kind: outbound.SLABreached, Ticket: tk,
		Breach: &outbound.Breach{Target: string(b.Target), Policy: b.Policy, DueAt: b.DueAt}})
	if err != nil {
		return err
	}
	breach := webhookBreach(string(b.Target), b.Policy, b.DueAt)
	if err := g.hooks.Enqueue(tx, "sla_breached", tk, breach); err != nil {
		return err
	}
	// Rules on sla_breached act in the same transaction as the mark.
	return g.pipeline.RunRules(tx, ingest.Notice{Event: threading.EventSLABreached, Ticket: tk, Breach: breach})
}

// Close closes a ticket that stayed resolved: a lifecycle change like
// an admin's, by "auto-close", so the closing-mail rule applies (a
// ticket closed from resolved gets no second closing mail).
func (a slaActions) Close(tx *store.Tx, tk *store.Ticket, at time.Time) error {
	g := a.d.gen.Load()
	code := g.pipeline.ClosedStatus(tk)
	by := threading.Actor{Type: "system", Name: "auto-close"}
	since := ""
	if tk.ResolvedAt != nil {
		since = fmt.Sprintf(" since %s", tk.ResolvedAt.UTC().Format(time.RFC3339))
	}
	if err := threading.Record(tx, tk.ID, by, "auto_closed", "", "", "", "closed automatically: resolved"+since+" without a customer reply (pipelines[].close_resolved_after)", at); err != nil {
		return err
	}
	// The lifecycle sends no second closing mail for a resolved ticket;
	// webhooks and rules still hear ticket_closed (ingest.ApplyIn).
	return g.pipeline.ApplyIn(tx, tk, threading.Changes{Status: &code}, by, at)
}

// startWebhooks runs a webhook worker with g's hooks until the next
// stopWebhooks.
func (d *daemon) startWebhooks(g *generation) {
	ctx, cancel := context.WithCancel(d.workerCtx)
	done := make(chan struct{})
	d.hookStop, d.hookDone = cancel, done
	w := webhook.NewWorker(d.st, g.hooks, d.log)
	d.hookWorker.Store(w)
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			d.log.Error("webhook worker stopped", "err", err)
		}
	}()
}

// stopWebhooks stops the webhook worker and waits for it; deliveries
// it did not make stay queued.
func (d *daemon) stopWebhooks() {
	if d.hookStop != nil {
		d.hookStop()
		<-d.hookDone
	}
}

// startScheduler runs the SLA scheduler with g's tracker until the
// next stopScheduler.
func (d *daemon) startScheduler(g *generation) {
	ctx, cancel := context.WithCancel(d.workerCtx)
	done := make(chan struct{})
	d.schedStop, d.schedDone = cancel, done
	s := &sla.Scheduler{Store: d.st, Tracker: g.tracker, Actions: slaActions{d: d}, Logger: d.log, AfterCommit: d.kick}
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			d.log.Error("sla scheduler stopped", "err", err)
		}
	}()
}

// stopScheduler stops the SLA scheduler and waits for it; a timer it
// did not fire stays in the database and fires on the next start.
func (d *daemon) stopScheduler() {
	if d.schedStop != nil {
		d.schedStop()
		<-d.schedDone
	}
}
