package sla

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/deskmail/deskmail/store"
)

// Clock is the scheduler's time: Now, and a channel that receives
// after d. Tests pass a fake one and advance it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// WallClock is the real time.
func WallClock() Clock { return wallClock{} }

// Target names an SLA target.
type Target string

// The two targets of a policy.
const (
	FirstResponse Target = "first_response"
	Resolution    Target = "resolution"
)

// Breach is a missed target, handed to Actions.Escalate once.
type Breach struct {
	Target Target
	Policy string
	DueAt  time.Time
	At     time.Time
}

// Actions are what the scheduler does when a timer fires, inside the
// transaction that records it (so the mail, webhook or status change
// commits with the mark, or not at all).
type Actions interface {
	// Escalate tells whoever must know that tk missed a target.
	Escalate(tx *store.Tx, tk *store.Ticket, b Breach) error
	// Close closes a resolved ticket automatically (a lifecycle change
	// with its history and mail, like any other).
	Close(tx *store.Tx, tk *store.Ticket, at time.Time) error
}

// Scheduler fires SLA timers. Run it once per process; several
// processes on one database are safe (each timer's effect is decided
// inside one write transaction).
type Scheduler struct {
	Store   *store.Store
	Tracker *Tracker
	Actions Actions
	Clock   Clock
	Logger  *slog.Logger
	// MaxWait bounds a sleep (default 1s): timers another process
	// wrote are found within it.
	MaxWait time.Duration
	// Batch is how many due tickets one transaction handles (default
	// 100).
	Batch int
	// AfterCommit, when set, is called after a transaction that fired
	// timers commits (the daemon kicks the outbox worker with it).
	AfterCommit func()
}

// Run fires timers until ctx ends. It owns no goroutine besides the
// caller's and returns nil when ctx is done.
func (s *Scheduler) Run(ctx context.Context) error {
	s = s.opts()
	for {
		wait := s.MaxWait
		next, err := s.RunDue(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.Logger.Error("sla scheduler", "err", err)
		case next != nil:
			if d := next.Sub(s.Clock.Now()); d < wait {
				wait = max(d, 0)
			}
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-s.Clock.After(wait):
			}
		}
	}
}

// opts returns s with defaults filled in (s itself is not changed, so
// one Scheduler value may serve concurrent calls).
func (s *Scheduler) opts() *Scheduler {
	o := *s
	if o.Clock == nil {
		o.Clock = WallClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxWait <= 0 {
		o.MaxWait = time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	return &o
}

// nextTimer reads the earliest timer (one index entry, no write).
func (s *Scheduler) nextTimer(ctx context.Context) (next *time.Time, err error) {
	err = s.Store.Read(ctx, func(tx *store.Tx) error {
		next, err = tx.NextSLATimer()
		return err
	})
	return next, err
}

// RunDue fires every timer due now and returns the next one still
// ahead (nil when none). With nothing due it only reads.
func (s *Scheduler) RunDue(ctx context.Context) (next *time.Time, err error) {
	s = s.opts()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sla: panic: %v", p)
		}
	}()
	for {
		now := s.Clock.Now()
		if next, err = s.nextTimer(ctx); err != nil || next == nil || next.After(now) {
			return next, err
		}
		n := 0
		err := s.Store.Write(ctx, func(tx *store.Tx) error {
			ids, err := tx.DueSLATimers(now, s.Batch)
			if err != nil {
				return err
			}
			n = len(ids)
			for _, id := range ids {
				if err := tx.Savepoint(func() error { return s.fire(tx, id, now) }); err != nil {
					// One broken ticket must not hold up the others:
					// its timer moves a minute on and the error is logged.
					s.Logger.Error("sla timer", "ticket", id, "err", err)
					if err := s.postpone(tx, id, now.Add(time.Minute)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n > 0 && s.AfterCommit != nil {
			s.AfterCommit()
		}
		if n < s.Batch {
			return s.nextTimer(ctx)
		}
	}
}

func (s *Scheduler) postpone(tx *store.Tx, id int64, at time.Time) error {
	st, err := tx.TicketSLA(id)
	if err != nil {
		return err
	}
	st.NextAt = &at
	return tx.PutTicketSLA(st)
}

// fire handles one ticket whose timer is due: each missed target is
// marked and escalated once, a resolved ticket past its close time is
// closed, and the clock is recomputed.
func (s *Scheduler) fire(tx *store.Tx, id int64, now time.Time) error {
	tx.SetNow(now)
	defer tx.SetNow(time.Time{})
	st, err := tx.TicketSLA(id)
	if err != nil {
		return err
	}
	tk, err := tx.Ticket(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	running := st.RunningSince != nil && !tk.Deleted
	var breaches []Breach
	if running && st.FrDueAt != nil && !st.FrDueAt.After(now) && st.FrEscalatedAt == nil && tk.FirstRespondedAt == nil {
		st.FrEscalatedAt = &now
		breaches = append(breaches, Breach{Target: FirstResponse, Policy: st.Policy, DueAt: *st.FrDueAt, At: now})
	}
	if running && st.DueAt != nil && !st.DueAt.After(now) && st.EscalatedAt == nil {
		st.EscalatedAt = &now
		breaches = append(breaches, Breach{Target: Resolution, Policy: st.Policy, DueAt: *st.DueAt, At: now})
	}
	if len(breaches) > 0 {
		if err := tx.PutTicketSLA(st); err != nil {
			return err
		}
		if tk, err = tx.Ticket(id); err != nil {
			return err
		}
		for _, b := range breaches {
			note := fmt.Sprintf("%s target of SLA policy %s missed (due %s)", b.Target, b.Policy, b.DueAt.UTC().Format(time.RFC3339))
			field := "fr_escalated"
			if b.Target == Resolution {
				field = "is_escalated"
			}
			old, nw := "false", "true"
			if err := tx.AddHistory(store.History{TicketID: id, At: now, ActorType: "system", Actor: "sla", Action: "sla_escalated",
				Field: field, OldValue: &old, NewValue: &nw, Note: note}); err != nil {
				return err
			}
			if s.Actions != nil {
				if err := s.Actions.Escalate(tx, tk, b); err != nil {
					return err
				}
				// Rules on sla_breached may have changed the ticket.
				if tk, err = tx.Ticket(id); err != nil {
					return err
				}
			}
		}
	}
	if st.CloseAt != nil && !st.CloseAt.After(now) && !tk.Deleted {
		cat, err := tx.StatusCategory(tk.Status)
		if err != nil {
			return err
		}
		if cat == catResolved && s.Actions != nil {
			if err := s.Actions.Close(tx, tk, now); err != nil {
				return err
			}
			if tk, err = tx.Ticket(id); err != nil {
				return err
			}
		}
	}
	// Recompute next_at from what is left (the close above saved the
	// ticket and recomputed already; this covers escalation alone).
	if s.Tracker != nil {
		if err := s.Tracker.update(tx, tk, now, false); err != nil {
			return err
		}
	}
	if st, err = tx.TicketSLA(id); err != nil {
		return err
	}
	if st.NextAt != nil && !st.NextAt.After(now) {
		// Nothing could be done (no tracker, or a close the actions
		// refused): do not spin on it.
		return s.postpone(tx, id, now.Add(time.Minute))
	}
	return nil
}
