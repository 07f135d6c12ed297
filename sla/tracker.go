package sla

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/deskmail/deskmail/calendar"
	"github.com/deskmail/deskmail/store"
)

// Status categories the clock knows (see threading).
const (
	catOpen     = "open"
	catPending  = "pending"
	catResolved = "resolved"
	catClosed   = "closed"
)

// Tracker recomputes a ticket's clock whenever the ticket is written.
// It is read-only after NewTracker and safe for concurrent use; its
// Hook is installed with store.Store.SetTicketHook.
type Tracker struct {
	policies []policy
	// channels maps channel ids to names (policies select by name).
	channels map[int64]string
	// closeAfter is close_resolved_after by pipeline id; defaultClose
	// applies to tickets without a pipeline (the first pipeline's).
	closeAfter   map[int64]time.Duration
	defaultClose time.Duration
	empty        bool
}

// NewTracker builds a tracker for spec, reading the channel and
// pipeline ids it refers to from the store.
func NewTracker(ctx context.Context, st *store.Store, spec Spec) (*Tracker, error) {
	t := &Tracker{channels: map[int64]string{}, closeAfter: map[int64]time.Duration{}, empty: spec.Empty()}
	cals := map[string]*calendar.Calendar{}
	for _, p := range spec.Policies {
		pol := policy{PolicySpec: p}
		if h := p.Hours; h != nil {
			if c, ok := cals[h.Name]; ok && h.Name != "" {
				pol.cal = c
			} else {
				c, err := calendar.New(h.TimeZone, h.Hours, h.Holidays)
				if err != nil {
					return nil, fmt.Errorf("sla: policy %s: business hours %s: %w", p.Name, h.Name, err)
				}
				cals[h.Name], pol.cal = c, c
			}
		}
		t.policies = append(t.policies, pol)
	}
	err := st.Read(ctx, func(tx *store.Tx) error {
		chans, err := tx.Channels()
		if err != nil {
			return err
		}
		for _, c := range chans {
			t.channels[c.ID] = c.Name
		}
		pipes, err := tx.Pipelines()
		if err != nil {
			return err
		}
		for i, p := range pipes {
			d := spec.CloseResolvedAfter[p.Name]
			t.closeAfter[p.ID] = d
			if i == 0 {
				t.defaultClose = d
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sla: %w", err)
	}
	return t, nil
}

// policyFor returns the first policy matching the ticket (nil: none).
func (t *Tracker) policyFor(tk *store.Ticket) *policy {
	ch := ""
	if tk.ChannelID != nil {
		ch = t.channels[*tk.ChannelID]
	}
	for i := range t.policies {
		if t.policies[i].matches(tk.Priority, ch) {
			return &t.policies[i]
		}
	}
	return nil
}

func (t *Tracker) closeFor(tk *store.Ticket) time.Duration {
	if tk.PipelineID != nil {
		if d, ok := t.closeAfter[*tk.PipelineID]; ok {
			return d
		}
	}
	return t.defaultClose
}

// Hook is the store.TicketHook: it recomputes tk's clock at the
// transaction's time and writes it when it changed.
func (t *Tracker) Hook(tx *store.Tx, tk *store.Ticket) error {
	if t.empty {
		return nil
	}
	return t.update(tx, tk, tx.Now(), false)
}

// update recomputes tk's clock; renewed says the policies themselves
// changed (Recompute), so missed targets whose new due time is ahead
// are no longer escalated.
func (t *Tracker) update(tx *store.Tx, tk *store.Ticket, now time.Time, renewed bool) error {
	cat, err := tx.StatusCategory(tk.Status)
	if err != nil {
		return err
	}
	if cat == "" {
		cat = catOpen
	}
	old, err := tx.TicketSLA(tk.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	pol := t.policyFor(tk)
	closeAfter := t.closeFor(tk)
	if old == nil && pol == nil && closeAfter <= 0 {
		return nil
	}
	s := next(old, tk, cat, pol, closeAfter, now, renewed)
	if old != nil && same(old, s) {
		return nil
	}
	return tx.PutTicketSLA(s)
}

// Recompute brings the clock of every ticket that has one and is not
// closed up to the tracker's policies, at now: after the SLA policies
// changed (a reload, a restart on a new configuration) a support team
// expects the new targets to apply to the tickets already open, not
// only from their next change. A target whose new due time is still
// ahead is no longer escalated; time already counted stays counted.
// Tickets without a clock (imported history) are left alone. It works
// in batches, one transaction each, so mail keeps flowing meanwhile;
// it returns how many clocks changed.
func (t *Tracker) Recompute(ctx context.Context, st *store.Store, now time.Time) (int, error) {
	if t.empty {
		return 0, nil
	}
	changed := 0
	var after int64
	for {
		var ids []int64
		err := st.Write(ctx, func(tx *store.Tx) error {
			var err error
			if ids, err = tx.ClockedTickets(after, 500); err != nil {
				return err
			}
			for _, id := range ids {
				tk, err := tx.Ticket(id)
				if err != nil {
					return err
				}
				old, err := tx.TicketSLA(id)
				if err != nil {
					return err
				}
				if err := t.update(tx, tk, now, true); err != nil {
					return err
				}
				cur, err := tx.TicketSLA(id)
				if err != nil {
					return err
				}
				if !same(old, cur) {
					changed++
				}
			}
			return nil
		})
		if err != nil {
			return changed, fmt.Errorf("sla: recompute clocks: %w", err)
		}
		if len(ids) < 500 {
			return changed, nil
		}
		after = ids[len(ids)-1]
	}
}

// next computes the clock state after a write of tk at now; old is the
// state before it (nil the first time).
func next(old *store.TicketSLA, tk *store.Ticket, cat string, pol *policy, closeAfter time.Duration, now time.Time, renewed bool) *store.TicketSLA {
	var cal *calendar.Calendar
	name := ""
	if pol != nil {
		cal, name = pol.cal, pol.Name
	}
	var s store.TicketSLA
	if old == nil {
		// A new ticket's clock starts when it was created; a ticket that
		// was there before the policy existed starts now.
		start := now
		if !tk.UpdatedAt.After(tk.CreatedAt) {
			start = tk.CreatedAt
		}
		s = store.TicketSLA{TicketID: tk.ID, Policy: name, Priority: tk.Priority, Category: cat}
		if cat == catOpen {
			s.RunningSince = &start
		}
		if cat == catPending {
			s.PausedAt = &start
		}
	} else {
		s = *old
		// The clock runs in open-category statuses only: pending pauses
		// it, resolved and closed stop it (a reopened ticket resumes).
		if s.RunningSince != nil && cat != catOpen {
			s.Consumed += cal.Between(*s.RunningSince, now)
			s.RunningSince = nil
		}
		if s.RunningSince == nil && cat == catOpen {
			s.RunningSince = &now
		}
		if old.Category != catPending && cat == catPending {
			s.PausedAt = &now
		}
		if old.Category == catPending && cat != catPending && s.PausedAt != nil {
			s.Paused += max(0, now.Sub(*s.PausedAt))
			s.PausedAt = nil
		}
		s.Category = cat
	}
	retarget := old != nil && (old.Policy != name || old.Priority != tk.Priority)
	s.Policy, s.Priority = name, tk.Priority

	// Due times: the target minus the business time already counted,
	// from when the clock last started. While the clock is stopped the
	// last due time stays shown; a met target keeps the due time it was
	// met against.
	due := func(target time.Duration, cur *time.Time, met bool) *time.Time {
		switch {
		case target <= 0:
			return nil
		case met && cur != nil && !retarget:
			return cur
		case s.RunningSince == nil:
			if cur == nil || retarget {
				// Stopped from the start (created pending) or retargeted
				// while stopped: the due time if it started now.
				d := cal.Add(now, max(0, target-s.Consumed))
				return &d
			}
			return cur
		}
		d := cal.Add(*s.RunningSince, max(0, target-s.Consumed))
		return &d
	}
	var frTarget, resTarget time.Duration
	if pol != nil {
		frTarget, resTarget = pol.FirstResponse, pol.Resolution
	}
	frMet := tk.FirstRespondedAt != nil
	resMet := cat == catResolved || cat == catClosed
	s.FrDueAt = due(frTarget, s.FrDueAt, frMet)
	s.DueAt = due(resTarget, s.DueAt, resMet)
	if retarget || renewed {
		// New targets are new promises: a breach of the old one does not
		// count against a due time still ahead.
		if s.FrDueAt != nil && s.FrDueAt.After(now) {
			s.FrEscalatedAt = nil
		}
		if s.DueAt != nil && s.DueAt.After(now) {
			s.EscalatedAt = nil
		}
	}

	// Auto-close: from when the ticket was resolved.
	switch {
	case cat == catResolved && closeAfter > 0:
		if old == nil || old.Category != catResolved || s.CloseAt == nil {
			from := now
			if tk.ResolvedAt != nil && tk.ResolvedAt.After(now.Add(-closeAfter)) && !tk.ResolvedAt.After(now) {
				from = *tk.ResolvedAt
			}
			c := from.Add(closeAfter)
			s.CloseAt = &c
		}
	default:
		s.CloseAt = nil
	}

	// next_at: the earliest timer still to fire.
	s.NextAt = nil
	consider := func(at *time.Time) {
		if at != nil && (s.NextAt == nil || at.Before(*s.NextAt)) {
			v := *at
			s.NextAt = &v
		}
	}
	if s.RunningSince != nil {
		if frTarget > 0 && !frMet && s.FrEscalatedAt == nil {
			consider(s.FrDueAt)
		}
		if resTarget > 0 && s.EscalatedAt == nil {
			consider(s.DueAt)
		}
	}
	consider(s.CloseAt)
	return &s
}

// same reports whether two states are equal to the microsecond (what
// the store keeps).
func same(a, b *store.TicketSLA) bool {
	t := func(p *time.Time) string {
		if p == nil {
			return ""
		}
		return p.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
	}
	return a.Policy == b.Policy && a.Priority == b.Priority && a.Category == b.Category &&
		t(a.RunningSince) == t(b.RunningSince) && a.Consumed.Truncate(time.Microsecond) == b.Consumed.Truncate(time.Microsecond) &&
		t(a.PausedAt) == t(b.PausedAt) && a.Paused.Truncate(time.Microsecond) == b.Paused.Truncate(time.Microsecond) &&
		t(a.FrDueAt) == t(b.FrDueAt) && t(a.DueAt) == t(b.DueAt) && t(a.FrEscalatedAt) == t(b.FrEscalatedAt) &&
		t(a.EscalatedAt) == t(b.EscalatedAt) && t(a.CloseAt) == t(b.CloseAt) && t(a.NextAt) == t(b.NextAt)
}
