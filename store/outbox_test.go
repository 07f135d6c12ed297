package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func openOutboxTestStore(t *testing.T, k storeKind) *Store {
	t.Helper()
	st := openKind(t, k, Options{})
	err := st.Write(context.Background(), func(tx *Tx) error {
		for code, cat := range map[int]string{2: "open", 3: "pending", 4: "resolved", 5: "closed"} {
			if err := tx.PutStatus(Status{Code: code, Name: cat, Category: cat}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func outboxTestTicket(t *testing.T, st *Store, email string) int64 {
	t.Helper()
	var id int64
	err := st.Write(context.Background(), func(tx *Tx) error {
		c, _, err := tx.EnsureContact(email, "")
		if err != nil {
			return err
		}
		tk := &Ticket{Subject: "help", Status: 2, RequesterID: c.ID}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		id = tk.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func enqueueTest(t *testing.T, st *Store, m *OutboxMail) {
	t.Helper()
	if err := st.Write(context.Background(), func(tx *Tx) error { return tx.EnqueueOutbox(m) }); err != nil {
		t.Fatal(err)
	}
}

func TestEnqueueOutboxIndexesMessageID(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		st := openOutboxTestStore(t, k)
		tk := outboxTestTicket(t, st, "ann@example.com")
		m := &OutboxMail{TicketID: &tk, Kind: "confirmation", MailFrom: "support@example.com", RcptTo: []string{"ann@example.com"},
			Subject: "Re: help [#1]", MessageID: "deskmail.t1.abc@example.com", Raw: []byte("Subject: x\r\n\r\nbody\r\n")}
		enqueueTest(t, st, m)
		sup := &OutboxMail{TicketID: &tk, Kind: "confirmation", MailFrom: "support@example.com", RcptTo: []string{"ann@example.com"},
			MessageID: "deskmail.t1.sup@example.com", State: OutboxSuppressed, LastError: "rate limit"}
		enqueueTest(t, st, sup)

		err := st.Read(context.Background(), func(tx *Tx) error {
			refs, err := tx.LookupMessageIDs([]string{m.MessageID, sup.MessageID})
			if err != nil {
				return err
			}
			r, ok := refs[m.MessageID]
			if !ok || r.Direction != "out" || r.TicketID == nil || *r.TicketID != tk {
				t.Errorf("queued mail index entry = %+v, %v", r, ok)
			}
			if _, ok := refs[sup.MessageID]; ok {
				t.Errorf("suppressed mail's Message-ID was indexed")
			}
			got, err := tx.OutboxMailByID(m.ID)
			if err != nil {
				return err
			}
			if string(got.Raw) != string(m.Raw) || got.State != OutboxQueued || len(got.RcptTo) != 1 || got.RcptTo[0] != "ann@example.com" {
				t.Errorf("read back %+v", got)
			}
			kinds, err := tx.TicketOutboxKinds(tk)
			if err != nil {
				return err
			}
			if kinds[m.MessageID] != "confirmation" {
				t.Errorf("kinds = %v", kinds)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The same Message-ID twice is refused: it is the index's key.
		dup := *m
		dup.ID = 0
		err = st.Write(context.Background(), func(tx *Tx) error { return tx.EnqueueOutbox(&dup) })
		if !errors.Is(err, ErrDuplicate) {
			t.Fatalf("duplicate Message-ID: err = %v, want ErrDuplicate", err)
		}
	})
}

func TestClaimOutboxOrderPerTicketAndLease(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		st := openOutboxTestStore(t, k)
		ctx := context.Background()
		t1 := outboxTestTicket(t, st, "a@example.com")
		t2 := outboxTestTicket(t, st, "b@example.com")
		base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		var ids []int64
		for i, tk := range []int64{t1, t1, t2, t1} {
			m := &OutboxMail{TicketID: &tk, Kind: "agent_reply", MailFrom: "s@example.com", RcptTo: []string{"x@example.com"},
				MessageID: fmt.Sprintf("m%d@x", i), CreatedAt: base, NextAttemptAt: base}
			enqueueTest(t, st, m)
			ids = append(ids, m.ID)
		}
		lease := func(n int) time.Time { return base.Add(time.Duration(n) * time.Minute) }
		claim := func(now time.Time) []OutboxMail {
			var got []OutboxMail
			if err := st.Write(ctx, func(tx *Tx) error {
				var err error
				got, err = tx.ClaimOutbox("", now, 10, lease)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return got
		}
		got := claim(base)
		if len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[2] {
			t.Fatalf("first claim = %v, want the heads of both tickets (%d, %d)", outboxIDs(got), ids[0], ids[2])
		}
		if got[0].Attempts != 1 || !got[0].NextAttemptAt.Equal(lease(1)) {
			t.Fatalf("claimed row = %+v", got[0])
		}
		// Claimed mail is leased: nothing more is due, and ticket 1's second
		// message waits behind its first.
		if again := claim(base); len(again) != 0 {
			t.Fatalf("second claim = %v, want nothing (leased, in order)", outboxIDs(again))
		}
		// A temporary failure of ticket 1's head keeps its followers waiting.
		if err := st.Write(ctx, func(tx *Tx) error {
			if err := tx.RetryOutbox(ids[0], base.Add(10*time.Minute), "451 try later"); err != nil {
				return err
			}
			return tx.MarkOutboxSent(ids[2], base, "")
		}); err != nil {
			t.Fatal(err)
		}
		if again := claim(base.Add(5 * time.Minute)); len(again) != 0 {
			t.Fatalf("claim during backoff = %v, want nothing", outboxIDs(again))
		}
		got = claim(base.Add(10 * time.Minute))
		if len(got) != 1 || got[0].ID != ids[0] || got[0].Attempts != 2 {
			t.Fatalf("claim after backoff = %+v", got)
		}
		if err := st.Write(ctx, func(tx *Tx) error { return tx.MarkOutboxSent(ids[0], base, "") }); err != nil {
			t.Fatal(err)
		}
		got = claim(base.Add(10 * time.Minute))
		if len(got) != 1 || got[0].ID != ids[1] {
			t.Fatalf("claim after head sent = %v, want %d", outboxIDs(got), ids[1])
		}
		// A permanent failure lets the ticket's next message go.
		if err := st.Write(ctx, func(tx *Tx) error { return tx.MarkOutboxFailed(ids[1], "550 no such user") }); err != nil {
			t.Fatal(err)
		}
		got = claim(base.Add(10 * time.Minute))
		if len(got) != 1 || got[0].ID != ids[3] {
			t.Fatalf("claim after failure = %v, want %d", outboxIDs(got), ids[3])
		}
		var stats OutboxStats
		if err := st.Read(ctx, func(tx *Tx) error {
			var err error
			stats, err = tx.OutboxStats()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if stats.Queued != 1 || stats.Sent != 2 || stats.Failed != 1 || stats.Retrying != 1 || stats.OldestQueued == nil {
			t.Fatalf("stats = %+v", stats)
		}
		// Retry of a failed mail from the CLI.
		if err := st.Write(ctx, func(tx *Tx) error { return tx.RequeueOutbox(ids[1]) }); err != nil {
			t.Fatal(err)
		}
		if err := st.Write(ctx, func(tx *Tx) error { return tx.RequeueOutbox(ids[0]) }); !errors.Is(err, ErrNotFound) {
			t.Fatalf("requeue of sent mail: %v", err)
		}
	})
}

func TestClaimOutboxConcurrentWorkers(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		st := openOutboxTestStore(t, k)
		ctx := context.Background()
		now := time.Now()
		const n = 200
		err := st.Write(ctx, func(tx *Tx) error {
			for i := range n {
				// Due at now, not at the time of the write: on a loaded
				// machine the writes end well after now+1s, when the
				// workers claim.
				if err := tx.EnqueueOutbox(&OutboxMail{Kind: "notification", MailFrom: "s@x", RcptTo: []string{"a@x"}, MessageID: fmt.Sprintf("c%d@x", i), NextAttemptAt: now}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[int64]int{}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					var got []OutboxMail
					err := st.Write(ctx, func(tx *Tx) error {
						var err error
						got, err = tx.ClaimOutbox("", now.Add(time.Second), 7, func(int) time.Time { return now.Add(time.Hour) })
						return err
					})
					if err != nil {
						t.Error(err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, m := range got {
						seen[m.ID]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(seen) != n {
			t.Fatalf("claimed %d distinct mails, want %d", len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Fatalf("mail %d claimed %d times", id, c)
			}
		}
	})
}

func TestCountOutboxTo(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		st := openOutboxTestStore(t, k)
		ctx := context.Background()
		now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		add := func(id, kind, state, to string, at time.Time) {
			enqueueTest(t, st, &OutboxMail{Kind: kind, State: state, MailFrom: "s@x", RcptTo: []string{"other@x", to}, MessageID: id, CreatedAt: at})
		}
		add("1@x", "confirmation", "", "Ann@Example.com", now.Add(-10*time.Minute))
		add("2@x", "confirmation", "sent", "ann@example.com", now.Add(-59*time.Minute))
		add("3@x", "confirmation", "", "ann@example.com", now.Add(-61*time.Minute))
		add("4@x", "confirmation", "suppressed", "ann@example.com", now.Add(-time.Minute))
		add("5@x", "agent_reply", "", "ann@example.com", now.Add(-time.Minute))
		add("6@x", "confirmation", "", "bob@example.com", now.Add(-time.Minute))
		var n int
		if err := st.Read(ctx, func(tx *Tx) error {
			var err error
			n, err = tx.CountOutboxTo("confirmation", "ann@example.com", now.Add(-time.Hour))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Fatalf("confirmations to ann in the last hour = %d, want 2", n)
		}
	})
}

func TestListOutbox(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		st := openOutboxTestStore(t, k)
		ctx := context.Background()
		enqueueTest(t, st, &OutboxMail{Kind: "notification", MailFrom: "s@x", MessageID: "l1@x", Raw: []byte("raw1")})
		enqueueTest(t, st, &OutboxMail{Kind: "notification", MailFrom: "s@x", MessageID: "l2@x", State: OutboxSuppressed})
		err := st.Read(ctx, func(tx *Tx) error {
			all, err := tx.ListOutbox(OutboxFilter{WithRaw: true})
			if err != nil {
				return err
			}
			if len(all) != 2 || string(all[0].Raw) != "raw1" || all[1].RcptTo == nil {
				t.Errorf("list = %+v", all)
			}
			sup, err := tx.ListOutbox(OutboxFilter{State: OutboxSuppressed})
			if err != nil {
				return err
			}
			if len(sup) != 1 || sup[0].MessageID != "l2@x" || sup[0].Raw != nil {
				t.Errorf("suppressed = %+v", sup)
			}
			next, ok, err := tx.NextOutboxDue()
			if err != nil || !ok || next.IsZero() {
				t.Errorf("next due = %v %v %v", next, ok, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func outboxIDs(ms []OutboxMail) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// TestCountOutboxToUsesIndex: the rate-limit count must not scan the
// whole outbox, nor the whole hour of it (it runs for every new ticket):
// it reads the recipient's rows of outbox_rcpt, then each by id.
func TestCountOutboxToUsesIndex(t *testing.T) {
	st := openOutboxTestStore(t, sqliteStore)
	err := st.Read(context.Background(), func(tx *Tx) error {
		rows, err := tx.query(`EXPLAIN QUERY PLAN `+countOutboxToSQL, "a@b", "confirmation", ts(time.Now()))
		if err != nil {
			return err
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				return err
			}
			plan = append(plan, detail)
		}
		joined := strings.Join(plan, "\n")
		if !strings.Contains(joined, "USING COVERING INDEX outbox_rcpt_address (address=?)") ||
			!strings.Contains(joined, "USING INTEGER PRIMARY KEY (rowid=?)") {
			t.Errorf("query plan:\n%s", joined)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCountOutboxToUsesIndexPostgres: on PostgreSQL, the plan the
// writer keeps for the rate-limit count (a generic plan, made here on
// empty tables without statistics, as on a new database) reads the
// recipient's rows of outbox_rcpt and looks each mail up by id, never
// the hour's mail of the kind.
func TestCountOutboxToUsesIndexPostgres(t *testing.T) {
	if !pgCluster.Available(t) {
		return
	}
	st := openOutboxTestStore(t, postgresStore)
	err := st.Write(context.Background(), func(tx *Tx) error {
		if _, err := tx.exec(`SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
			return err
		}
		if _, err := tx.exec(`PREPARE count_to AS ` + tx.d.q(pgCountOutboxToSQL)); err != nil {
			return err
		}
		rows, err := tx.query(`EXPLAIN EXECUTE count_to('confirmation', '2026-01-01', 'a@b')`)
		if err != nil {
			return err
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return err
			}
			plan = append(plan, line)
		}
		joined := strings.Join(plan, "\n")
		if strings.Contains(joined, "outbox_kind_created") || !strings.Contains(joined, "outbox_pkey") || !strings.Contains(joined, "outbox_rcpt_address") {
			t.Errorf("query plan:\n%s", joined)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.exec(`DEALLOCATE count_to`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestClaimOutboxTakenOverFromDeadInstance: mail claimed by a running
// instance is its own until the lease ends; once that instance's
// heartbeat is older than InstanceLive (it was killed),
// ReleaseDeadClaims makes it due and another instance takes it over;
// a recorded attempt (a deferral) is nobody's claim, so its backoff
// holds.
func TestClaimOutboxTakenOverFromDeadInstance(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		st := openOutboxTestStore(t, k)
		ctx := context.Background()
		base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		tk := outboxTestTicket(t, st, "a@example.com")
		tk2 := outboxTestTicket(t, st, "b@example.com")
		var ids []int64
		for i, tid := range []int64{tk, tk2} {
			m := &OutboxMail{TicketID: &tid, Kind: "confirmation", MailFrom: "s@example.com", RcptTo: []string{"x@example.com"},
				MessageID: fmt.Sprintf("dead%d@x", i), CreatedAt: base, NextAttemptAt: base}
			enqueueTest(t, st, m)
			ids = append(ids, m.ID)
		}
		beat := func(id string, at time.Time) {
			if err := st.Write(ctx, func(tx *Tx) error {
				return tx.Heartbeat(Instance{ID: id, StartedAt: base}, at)
			}); err != nil {
				t.Fatal(err)
			}
		}
		lease := func(int) time.Time { return base.Add(10 * time.Minute) }
		claim := func(owner string, now time.Time) []OutboxMail {
			var got []OutboxMail
			if err := st.Write(ctx, func(tx *Tx) error {
				if _, err := tx.ReleaseDeadClaims(now); err != nil {
					return err
				}
				var err error
				got, err = tx.ClaimOutbox(owner, now, 10, lease)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return got
		}
		beat("a", base)
		beat("b", base)
		if got := claim("a", base); len(got) != 2 {
			t.Fatalf("a claimed %v, want both", outboxIDs(got))
		}
		// a defers the second mail (a recorded attempt): its backoff is
		// an hour, whoever runs.
		if err := st.Write(ctx, func(tx *Tx) error { return tx.RetryOutbox(ids[1], base.Add(time.Hour), "451 later") }); err != nil {
			t.Fatal(err)
		}
		// a is alive: b takes nothing.
		beat("a", base.Add(20*time.Second))
		beat("b", base.Add(20*time.Second))
		if got := claim("b", base.Add(25*time.Second)); len(got) != 0 {
			t.Fatalf("b claimed %v from a running instance", outboxIDs(got))
		}
		// a's heartbeat stops; past InstanceLive b takes the first mail
		// over (a second attempt), not the deferred one.
		now := base.Add(20*time.Second + InstanceLive + time.Second)
		beat("b", now)
		got := claim("b", now)
		if len(got) != 1 || got[0].ID != ids[0] || got[0].Attempts != 2 {
			t.Fatalf("b took over %+v, want mail %d at its second attempt", got, ids[0])
		}
		// Now b's: nobody else takes it while b runs.
		beat("c", now)
		if again := claim("c", now); len(again) != 0 {
			t.Fatalf("c claimed %v from b", outboxIDs(again))
		}
		// A claim without an owner (deskmail ingest's worker) waits for
		// its lease, as before.
		if err := st.Write(ctx, func(tx *Tx) error {
			if err := tx.RetryOutbox(ids[0], now, "421 again"); err != nil {
				return err
			}
			_, err := tx.ClaimOutbox("", now, 10, func(int) time.Time { return now.Add(2 * time.Hour) })
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if again := claim("c", now.Add(time.Hour)); len(again) != 1 || again[0].ID != ids[1] {
			t.Fatalf("an hour later c claimed %v, want only the deferred mail %d (the other is leased without owner)", outboxIDs(again), ids[1])
		}
	})
}
