package sla

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/store"
)

// fakeClock is a Clock that moves only when the test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

// waitSleepers waits until n goroutines sleep on the clock.
func (c *fakeClock) waitSleepers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		k := len(c.waiters)
		c.mu.Unlock()
		if k >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nobody sleeps on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// recorder records what the scheduler asked for.
type recorder struct {
	mu       sync.Mutex
	breaches []Breach
	closed   []int64
}

func (r *recorder) Escalate(tx *store.Tx, tk *store.Ticket, b Breach) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.breaches = append(r.breaches, b)
	return nil
}

func (r *recorder) Close(tx *store.Tx, tk *store.Ticket, at time.Time) error {
	r.mu.Lock()
	r.closed = append(r.closed, tk.ID)
	r.mu.Unlock()
	tk.Status = 5
	tk.ClosedAt = &at
	return tx.UpdateTicket(tk)
}

type env struct {
	t     *testing.T
	st    *store.Store
	clock *fakeClock
	tr    *Tracker
	rec   *recorder
	sched *Scheduler
}

var t0 = time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC) // a Monday

func newEnv(t *testing.T, spec Spec) *env {
	t.Helper()
	return newEnvAt(t, spec, filepath.Join(t.TempDir(), "sla.db"))
}

// newEnvAt is newEnv on the database at path (a SQLite file or a
// PostgreSQL URL).
func newEnvAt(t *testing.T, spec Spec, path string) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Write(ctx, func(tx *store.Tx) error {
		if err := tx.PutStatus(store.Status{Code: 6, Name: "Waiting on engineering", Category: "pending"}); err != nil {
			return err
		}
		_, err := tx.PutPipeline(store.Pipeline{Name: "default", NewStatus: 2, CustomerReplyStatus: 2, ClosedReply: "new_ticket", Statuses: []int{2, 3, 6, 4, 5}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTracker(ctx, st, spec)
	if err != nil {
		t.Fatal(err)
	}
	st.SetTicketHook(tr.Hook)
	e := &env{t: t, st: st, clock: &fakeClock{now: t0}, tr: tr, rec: &recorder{}}
	e.sched = &Scheduler{Store: st, Tracker: tr, Actions: e.rec, Clock: e.clock}
	return e
}

// write runs fn at the fake clock's time.
func (e *env) write(fn func(tx *store.Tx) error) {
	e.t.Helper()
	err := e.st.Write(context.Background(), func(tx *store.Tx) error {
		tx.SetNow(e.clock.Now())
		return fn(tx)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) create(priority int) int64 {
	var id int64
	e.write(func(tx *store.Tx) error {
		c, _, err := tx.EnsureContact("jane@customer.example", "Jane")
		if err != nil {
			return err
		}
		pid := int64(1)
		tk := &store.Ticket{Subject: "help", Status: 2, Priority: priority, RequesterID: c.ID, PipelineID: &pid, CreatedAt: e.clock.Now()}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		id = tk.ID
		return nil
	})
	return id
}

func (e *env) ticket(id int64) *store.Ticket {
	var tk *store.Ticket
	err := e.st.Read(context.Background(), func(tx *store.Tx) error {
		var err error
		tk, err = tx.Ticket(id)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return tk
}

func (e *env) update(id int64, fn func(tk *store.Ticket)) {
	e.write(func(tx *store.Tx) error {
		tk, err := tx.Ticket(id)
		if err != nil {
			return err
		}
		fn(tk)
		return tx.UpdateTicket(tk)
	})
}

func (e *env) run() {
	e.t.Helper()
	if _, err := e.sched.RunDue(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func wantTime(t *testing.T, what string, got *time.Time, want time.Time) {
	t.Helper()
	if got == nil || !got.Equal(want) {
		t.Errorf("%s = %v, want %s", what, got, want)
	}
}

var basic = Spec{Policies: []PolicySpec{
	{Name: "urgent", Priorities: []int{4}, FirstResponse: 30 * time.Minute, Resolution: 4 * time.Hour},
	{Name: "standard", FirstResponse: 4 * time.Hour, Resolution: 48 * time.Hour},
}}

func TestDueDatesAtCreation(t *testing.T) {
	e := newEnv(t, basic)
	id := e.create(4)
	tk := e.ticket(id)
	wantTime(t, "fr_due_by", tk.FrDueBy, t0.Add(30*time.Minute))
	wantTime(t, "due_by", tk.DueBy, t0.Add(4*time.Hour))
	if tk.SLAPolicy == nil || *tk.SLAPolicy != "urgent" {
		t.Errorf("policy = %v", tk.SLAPolicy)
	}
	// A priority change picks the other policy, from creation.
	e.clock.Advance(10 * time.Minute)
	e.update(id, func(tk *store.Ticket) { tk.Priority = 2 })
	tk = e.ticket(id)
	wantTime(t, "fr_due_by after priority change", tk.FrDueBy, t0.Add(4*time.Hour))
	wantTime(t, "due_by after priority change", tk.DueBy, t0.Add(48*time.Hour))
}

func TestFirstResponseMet(t *testing.T) {
	e := newEnv(t, basic)
	id := e.create(4)
	e.clock.Advance(20 * time.Minute)
	e.update(id, func(tk *store.Ticket) {
		now := e.clock.Now()
		tk.FirstRespondedAt, tk.AgentRespondedAt = &now, &now
	})
	e.clock.Advance(time.Hour)
	e.run()
	if len(e.rec.breaches) != 0 {
		t.Fatalf("met first response escalated: %+v", e.rec.breaches)
	}
	tk := e.ticket(id)
	if tk.FrEscalated || tk.FirstRespondedAt == nil {
		t.Errorf("fr_escalated=%v first_responded_at=%v", tk.FrEscalated, tk.FirstRespondedAt)
	}
	wantTime(t, "fr_due_by kept", tk.FrDueBy, t0.Add(30*time.Minute))
}

func TestPauseInPendingAndResume(t *testing.T) {
	for _, pending := range []int{3, 6} { // built-in Pending and a custom pending status
		e := newEnv(t, basic)
		id := e.create(4)
		e.clock.Advance(31 * time.Minute)
		e.run() // the first response (30m) is missed before the pause
		if len(e.rec.breaches) != 1 || e.rec.breaches[0].Target != FirstResponse {
			t.Fatalf("status %d: breaches = %+v", pending, e.rec.breaches)
		}
		e.clock.Advance(29 * time.Minute) // 1h of the 4h counted
		e.update(id, func(tk *store.Ticket) { tk.Status = pending })
		e.clock.Advance(10 * time.Hour) // paused: nothing counts, nothing fires
		e.run()
		if len(e.rec.breaches) != 1 {
			t.Fatalf("status %d: fired while paused: %+v", pending, e.rec.breaches)
		}
		e.update(id, func(tk *store.Ticket) { tk.Status = 2 })
		tk := e.ticket(id)
		resumed := t0.Add(11 * time.Hour)
		wantTime(t, "due_by after resume", tk.DueBy, resumed.Add(3*time.Hour))
		if tk.SLAPausedSeconds != (10 * time.Hour).Seconds() {
			t.Errorf("status %d: paused %v s, want %v", pending, tk.SLAPausedSeconds, (10 * time.Hour).Seconds())
		}
		e.clock.Advance(3*time.Hour - time.Second)
		e.run()
		if len(e.rec.breaches) != 1 {
			t.Fatalf("status %d: resolution escalated early: %+v", pending, e.rec.breaches)
		}
		e.clock.Advance(time.Second)
		e.run()
		e.run()
		if len(e.rec.breaches) != 2 || e.rec.breaches[1].Target != Resolution {
			t.Fatalf("status %d: breaches = %+v", pending, e.rec.breaches)
		}
		if tk := e.ticket(id); !tk.IsEscalated || !tk.FrEscalated {
			t.Errorf("status %d: escalation flags %v %v", pending, tk.FrEscalated, tk.IsEscalated)
		}
	}
}

func TestBusinessHours(t *testing.T) {
	spec := Spec{Policies: []PolicySpec{{Name: "office", FirstResponse: 2 * time.Hour, Resolution: 16 * time.Hour,
		Hours: &HoursSpec{Name: "paris", TimeZone: "Europe/Paris", Hours: []string{"mon-fri 09:00-18:00"}, Holidays: []string{"2026-12-25"}}}}}
	e := newEnv(t, spec)
	paris, _ := time.LoadLocation("Europe/Paris")
	// Friday 2026-12-04 17:00 Paris: 1h left that day, then Monday
	// (9h) and Tuesday.
	e.clock.now = time.Date(2026, 12, 4, 17, 0, 0, 0, paris)
	id := e.create(1)
	tk := e.ticket(id)
	wantTime(t, "fr_due_by", tk.FrDueBy, time.Date(2026, 12, 7, 10, 0, 0, 0, paris))
	wantTime(t, "due_by", tk.DueBy, time.Date(2026, 12, 8, 15, 0, 0, 0, paris))
	// The weekend fires nothing.
	e.clock.now = time.Date(2026, 12, 6, 23, 0, 0, 0, paris)
	e.run()
	if len(e.rec.breaches) != 0 {
		t.Fatalf("escalated during the weekend: %+v", e.rec.breaches)
	}
	e.clock.now = time.Date(2026, 12, 7, 10, 0, 0, 0, paris)
	e.run()
	if len(e.rec.breaches) != 1 {
		t.Fatalf("breaches = %+v", e.rec.breaches)
	}
}

func TestEscalationOnceAcrossSchedulers(t *testing.T) {
	e := newEnv(t, basic)
	// Two schedulers on one database (two instances, or a restart):
	// the mark and the action commit together, so one fires.
	other := &Scheduler{Store: e.st, Tracker: e.tr, Actions: e.rec, Clock: e.clock}
	escalateOnce(t, e, other)
}

// TestEscalationOnceAcrossInstances: two instances, each with its own
// store handle and tracker, share one PostgreSQL database; each due
// timer is locked by the one that fires it (SKIP LOCKED), so a breach
// is escalated once.
func TestEscalationOnceAcrossInstances(t *testing.T) {
	if !pgCluster.Available(t) {
		return
	}
	url := pgCluster.URL(t)
	e := newEnvAt(t, basic, url)
	st2, err := store.Open(context.Background(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	tr2, err := NewTracker(context.Background(), st2, basic)
	if err != nil {
		t.Fatal(err)
	}
	st2.SetTicketHook(tr2.Hook)
	escalateOnce(t, e, &Scheduler{Store: st2, Tracker: tr2, Actions: e.rec, Clock: e.clock})
}

// escalateOnce misses a ticket's first-response target and runs e's
// scheduler and other twice each, at once: one escalation is recorded
// and committed.
func escalateOnce(t *testing.T, e *env, other *Scheduler) {
	t.Helper()
	id := e.create(4)
	e.clock.Advance(31 * time.Minute)
	var wg sync.WaitGroup
	for _, s := range []*Scheduler{e.sched, other, e.sched, other} {
		wg.Go(func() {
			if _, err := s.RunDue(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(e.rec.breaches) != 1 {
		t.Fatalf("breaches = %+v", e.rec.breaches)
	}
	var hist []store.History
	e.st.Read(context.Background(), func(tx *store.Tx) error {
		var err error
		hist, err = tx.TicketHistory(id)
		return err
	})
	n := 0
	for _, h := range hist {
		if h.Action == "sla_escalated" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d sla_escalated history entries", n)
	}
}

func TestAutoClose(t *testing.T) {
	e := newEnv(t, Spec{CloseResolvedAfter: map[string]time.Duration{"default": 72 * time.Hour}})
	id := e.create(1)
	e.update(id, func(tk *store.Ticket) {
		now := e.clock.Now()
		tk.Status, tk.ResolvedAt = 4, &now
	})
	// A reply that reopens it cancels the close; resolving again
	// starts over.
	e.clock.Advance(48 * time.Hour)
	e.update(id, func(tk *store.Ticket) { tk.Status = 2 })
	e.update(id, func(tk *store.Ticket) {
		now := e.clock.Now()
		tk.Status, tk.ResolvedAt = 4, &now
	})
	e.clock.Advance(72*time.Hour - time.Second)
	e.run()
	if len(e.rec.closed) != 0 {
		t.Fatal("closed early")
	}
	e.clock.Advance(time.Second)
	e.run()
	if len(e.rec.closed) != 1 || e.ticket(id).Status != 5 {
		t.Fatalf("closed = %v, status %d", e.rec.closed, e.ticket(id).Status)
	}
	e.clock.Advance(100 * time.Hour)
	e.run()
	if len(e.rec.closed) != 1 {
		t.Fatalf("closed twice: %v", e.rec.closed)
	}
}

func TestRunWakesAtDueTime(t *testing.T) {
	e := newEnv(t, basic)
	e.create(4)
	e.sched.MaxWait = 24 * time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.sched.Run(ctx) }()
	// The scheduler sleeps on the fake clock until the next due time
	// (30m): advance it exactly that far, once it sleeps.
	e.clock.waitSleepers(t, 1)
	e.clock.Advance(30 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.rec.mu.Lock()
		n := len(e.rec.breaches)
		e.rec.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no escalation")
		}
		time.Sleep(time.Millisecond)
	}
	if at := e.rec.breaches[0].At; !at.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("fired at %s, due %s", at, t0.Add(30*time.Minute))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
