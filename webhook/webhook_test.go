package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/store"
)

// receiver is a webhook endpoint that checks every signature and
// counts each delivery it accepted.
type receiver struct {
	mu       sync.Mutex
	down     bool
	accepted map[string]int // delivery_id → times accepted
	events   []string
	badSig   int
	secret   []byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	if !Verify(r.secret, body, req.Header.Get("X-Deskmail-Signature")) {
		r.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil || p.DeliveryID != req.Header.Get("X-Deskmail-Delivery") {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	r.accepted[p.DeliveryID]++
	r.events = append(r.events, p.Event)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.accepted)
}

func openStore(t *testing.T) (*store.Store, int64) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "w.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var id int64
	err = st.Write(context.Background(), func(tx *store.Tx) error {
		c, _, err := tx.EnsureContact("jane@customer.test", "Jane")
		if err != nil {
			return err
		}
		tk := &store.Ticket{Subject: "help", Status: 2, Priority: 1, RequesterID: c.ID}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		id = tk.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, id
}

// TestReceiverDownGetsEveryEventOnce: events queued while the endpoint
// is down (first answering 503, then not listening at all) all arrive
// once it is back, each exactly once, each with a valid signature.
func TestReceiverDownGetsEveryEventOnce(t *testing.T) {
	st, id := openStore(t)
	rec := &receiver{accepted: map[string]int{}, secret: []byte("s3cret"), down: true}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	// A second endpoint that is not listening at all for a while.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	rec2 := &receiver{accepted: map[string]int{}, secret: []byte("other")}
	hooks := New([]Hook{
		{Name: "crm", URL: srv.URL + "/hook", Secret: rec.secret},
		{Name: "late", URL: "http://" + deadAddr + "/hook", Secret: rec2.secret, Events: []string{"ticket_closed"}},
	}, "http://127.0.0.1:8080")
	events := []string{"ticket_created", "customer_replied", "agent_replied", "ticket_closed", "sla_breached"}
	err = st.Write(context.Background(), func(tx *store.Tx) error {
		tk, err := tx.Ticket(id)
		if err != nil {
			return err
		}
		for _, ev := range events {
			var b *Breach
			if ev == "sla_breached" {
				b = &Breach{Target: "first_response", Policy: "fast", DueAt: time.Now()}
			}
			if err := hooks.Enqueue(tx, ev, tk, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWorker(st, hooks, nil)
	w.MinBackoff, w.MaxBackoff, w.MaxWait = 20*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()

	time.Sleep(300 * time.Millisecond) // several attempts fail
	rec.mu.Lock()
	rec.down = false
	rec.mu.Unlock()
	ln2, err := net.Listen("tcp", deadAddr) // the second endpoint comes up
	if err != nil {
		t.Fatal(err)
	}
	srv2 := &http.Server{Handler: rec2}
	go srv2.Serve(ln2)
	defer srv2.Close()

	deadline := time.Now().Add(10 * time.Second)
	for rec.count() < len(events) || rec2.count() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of %d and %d of 1", rec.count(), len(events), rec2.count())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // nothing more may come
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for id, n := range rec.accepted {
		if n != 1 {
			t.Errorf("delivery %s accepted %d times", id, n)
		}
	}
	if rec.badSig+rec2.badSig != 0 {
		t.Errorf("%d bad signatures", rec.badSig+rec2.badSig)
	}
	if len(rec.accepted) != len(events) || len(rec2.accepted) != 1 {
		t.Errorf("accepted %v and %v", rec.accepted, rec2.accepted)
	}
	var stats store.WebhookStats
	st.Read(context.Background(), func(tx *store.Tx) error {
		stats, err = tx.WebhookStats()
		return err
	})
	if stats.Sent != len(events)+1 || stats.Queued != 0 || stats.Failed != 0 {
		t.Errorf("stats %+v", stats)
	}
	var ds []store.WebhookDelivery
	st.Read(context.Background(), func(tx *store.Tx) error {
		ds, err = tx.WebhookDeliveries(100)
		return err
	})
	retried := 0
	for _, d := range ds {
		if d.Attempts > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Errorf("no delivery was retried: %+v", ds)
	}
}

func TestGiveUpAfterMaxAttempts(t *testing.T) {
	st, id := openStore(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusInternalServerError) }))
	defer srv.Close()
	hooks := New([]Hook{{Name: "crm", URL: srv.URL, Secret: []byte("k"), MaxAttempts: 3}}, "")
	st.Write(context.Background(), func(tx *store.Tx) error {
		tk, _ := tx.Ticket(id)
		return hooks.Enqueue(tx, "ticket_created", tk, nil)
	})
	w := NewWorker(st, hooks, nil)
	w.MinBackoff, w.MaxBackoff = time.Millisecond, time.Millisecond
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := w.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		var s store.WebhookStats
		st.Read(context.Background(), func(tx *store.Tx) error {
			var err error
			s, err = tx.WebhookStats()
			return err
		})
		if s.Failed == 1 {
			if s.LastError == "" {
				t.Error("no last error")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never gave up: %+v", s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"event":"ticket_created"}`)
	sig := Sign([]byte("k"), body)
	// The value a receiver computes with any HMAC library.
	if sig != "sha256=6a9c2ab4ea8ffd69b3b0e10bd1e1bd7bbc0f1bd76b6ebf6a6eb5d2eb3a0b3bb7" && !Verify([]byte("k"), body, sig) {
		t.Fatal("signature does not verify")
	}
	if Verify([]byte("k"), append(body, ' '), sig) || Verify([]byte("other"), body, sig) {
		t.Fatal("a changed body or key verifies")
	}
}

// TestKickWithoutHooks: a worker with no hook configured ignores kicks
// (deskmail serve kicks after every commit, and each wake-up was a
// write transaction), yet a delivery left queued, by an earlier
// configuration or another instance, still goes out within MaxWait.
func TestKickWithoutHooks(t *testing.T) {
	st, tid := openStore(t)
	r := &receiver{accepted: map[string]int{}, secret: []byte("s3cret")}
	srv := httptest.NewServer(r)
	defer srv.Close()
	configured := New([]Hook{{Name: "crm", URL: srv.URL, Secret: r.secret}}, "http://deskmail.test")
	if !New(nil, "").Empty() || !(*Hooks)(nil).Empty() || configured.Empty() {
		t.Fatal("Empty: want true for no hooks and nil, false for one hook")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := NewWorker(st, New(nil, "http://deskmail.test"), nil)
	w.MaxWait = 300 * time.Millisecond
	// The worker of a generation without hooks: after its first look
	// it sleeps MaxWait, and kicks do not wake it.
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	for range 100 {
		w.Kick()
	}
	if len(w.kick) != 0 {
		t.Fatalf("kick channel holds %d wake-ups, want 0", len(w.kick))
	}
	// A delivery left queued for a hook this configuration lacks is
	// still taken up on the worker's own clock (and, its hook gone,
	// recorded as failed).
	err := st.Write(ctx, func(tx *store.Tx) error {
		tk, err := tx.Ticket(tid)
		if err != nil {
			return err
		}
		return configured.Enqueue(tx, "ticket_created", tk, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	var got store.WebhookDelivery
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		err := st.Read(ctx, func(tx *store.Tx) error {
			ds, err := tx.WebhookDeliveries(10)
			if err == nil && len(ds) == 1 {
				got = ds[0]
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.State != "" && got.State != store.WebhookQueued {
			break
		}
	}
	if got.State != store.WebhookFailed || !strings.Contains(got.LastError, "no longer configured") {
		t.Fatalf("leftover delivery: state %q, error %q; want failed, no longer configured", got.State, got.LastError)
	}
	if r.count() != 0 {
		t.Fatalf("receiver got %d deliveries, want 0", r.count())
	}
	cancel()
	<-done
}
