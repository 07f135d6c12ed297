package sla

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/deskmail/deskmail/store"
)

// TestRecomputeAppliesNewTargets: a tracker built on changed policies
// recomputes the clocks of open tickets without a ticket change; a
// missed target whose new due time is ahead is no longer escalated; a
// closed ticket and one without a clock are left alone.
func TestRecomputeAppliesNewTargets(t *testing.T) {
	e := newEnv(t, Spec{Policies: []PolicySpec{{Name: "std", FirstResponse: time.Hour, Resolution: 8 * time.Hour}}})
	open := e.create(1)
	late := e.create(1)
	closed := e.create(1)
	e.write(func(tx *store.Tx) error {
		tk, err := tx.Ticket(closed)
		if err != nil {
			return err
		}
		tk.Status = 5
		return tx.UpdateTicket(tk)
	})
	e.clock.Advance(90 * time.Minute)
	if _, err := e.sched.RunDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !e.ticket(late).FrEscalated {
		t.Fatal("not escalated under the old target")
	}
	// The policy's targets change: 30m to first response (both late
	// now), then 4h (late's first response is ahead again).
	for _, c := range []struct {
		fr       time.Duration
		changed  int
		frDue    time.Time
		escalate bool
	}{
		{30 * time.Minute, 2, t0.Add(30 * time.Minute), true},
		{4 * time.Hour, 2, t0.Add(4 * time.Hour), false},
	} {
		tr, err := NewTracker(context.Background(), e.st, Spec{Policies: []PolicySpec{{Name: "std", FirstResponse: c.fr, Resolution: 8 * time.Hour}}})
		if err != nil {
			t.Fatal(err)
		}
		n, err := tr.Recompute(context.Background(), e.st, e.clock.Now())
		if err != nil || n != c.changed {
			t.Fatalf("target %s: recomputed %d clocks (%v), want %d", c.fr, n, err, c.changed)
		}
		for _, id := range []int64{open, late} {
			if tk := e.ticket(id); tk.FrDueBy == nil || !tk.FrDueBy.Equal(c.frDue) {
				t.Errorf("target %s: ticket %d fr_due_by %v, want %s", c.fr, id, tk.FrDueBy, c.frDue)
			}
		}
		if got := e.ticket(late).FrEscalated; got != c.escalate {
			t.Errorf("target %s: escalated %v, want %v", c.fr, got, c.escalate)
		}
	}
	if tk := e.ticket(closed); tk.FrDueBy == nil || !tk.FrDueBy.Equal(t0.Add(time.Hour)) {
		t.Errorf("the closed ticket's clock moved: %v", tk.FrDueBy)
	}
}

// BenchmarkRecompute measures recomputing the clocks of 10,000 open
// tickets after a policy change (go test -bench Recompute -run X ./sla).
func BenchmarkRecompute(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(b.TempDir(), "sla.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	spec := func(fr time.Duration) Spec {
		return Spec{Policies: []PolicySpec{{Name: "std", FirstResponse: fr, Resolution: 8 * time.Hour}}}
	}
	tr, err := NewTracker(ctx, st, spec(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	st.SetTicketHook(tr.Hook)
	err = st.Write(ctx, func(tx *store.Tx) error {
		c, _, err := tx.EnsureContact("jane@customer.example", "Jane")
		if err != nil {
			return err
		}
		for range 10000 {
			if err := tx.CreateTicket(&store.Ticket{Subject: "help", Status: 2, RequesterID: c.ID}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		tr, err := NewTracker(ctx, st, spec(time.Duration(i+2)*time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		if n, err := tr.Recompute(ctx, st, time.Now()); err != nil || n != 10000 {
			b.Fatalf("recomputed %d: %v", n, err)
		}
	}
}
