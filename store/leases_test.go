package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestFolderLease: one owner at a time; a second waits until the
// lease expires, then takes it with a higher token; the first can no
// longer pass CheckLease (fencing); a clean stop releases at once.
func TestFolderLease(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openTest(t, k)
		ctx := context.Background()
		now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
		const ttl = 15 * time.Second
		acquire := func(owner string, at time.Time) (Lease, bool) {
			var l Lease
			var ok bool
			if err := s.Write(ctx, func(tx *Tx) (err error) {
				l, ok, err = tx.AcquireLease("support", "INBOX", owner, at, ttl)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return l, ok
		}
		check := func(l Lease, at time.Time) error {
			return s.Write(ctx, func(tx *Tx) error { return tx.CheckLease(l, at, ttl) })
		}
		a, ok := acquire("a", now)
		if !ok || a.Token != 1 || a.Owner != "a" {
			t.Fatalf("first acquire: %+v %v", a, ok)
		}
		if l, ok := acquire("b", now.Add(5*time.Second)); ok || l.Owner != "a" {
			t.Fatalf("b took a held lease: %+v", l)
		}
		if err := check(a, now.Add(10*time.Second)); err != nil { // renewed until +25s
			t.Fatal(err)
		}
		if _, ok := acquire("b", now.Add(20*time.Second)); ok {
			t.Fatal("b took a renewed lease")
		}
		b, ok := acquire("b", now.Add(26*time.Second))
		if !ok || b.Token != 2 {
			t.Fatalf("takeover after expiry: %+v %v", b, ok)
		}
		if err := check(a, now.Add(27*time.Second)); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("stale owner passed the fence: %v", err)
		}
		if err := s.Write(ctx, func(tx *Tx) error {
			if err := tx.Heartbeat(Instance{ID: "b", Host: "h", PID: 7, StartedAt: now}, now.Add(27*time.Second)); err != nil {
				return err
			}
			return tx.StopInstance("b", now.Add(28*time.Second))
		}); err != nil {
			t.Fatal(err)
		}
		if a2, ok := acquire("a", now.Add(28*time.Second)); !ok || a2.Token != 3 {
			t.Fatalf("after b stopped: %+v %v", a2, ok)
		}
		s.Read(ctx, func(tx *Tx) error {
			ls, err := tx.Leases()
			if err != nil || len(ls) != 1 || ls[0].Owner != "a" {
				t.Errorf("leases %+v %v", ls, err)
			}
			ins, err := tx.Instances(now)
			if err != nil || len(ins) != 0 {
				t.Errorf("stopped instance listed: %+v %v", ins, err)
			}
			return nil
		})
	})
}

// TestFolderLeaseRace: instances (stores) racing for many folders get
// each folder exactly once.
func TestFolderLeaseRace(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		first := openTest(t, k)
		stores := []*Store{first}
		if k == postgresStore {
			for range 2 {
				s, err := Open(context.Background(), first.Path(), Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				stores = append(stores, s)
			}
		}
		now := time.Now()
		var mu sync.Mutex
		owners := map[string][]string{}
		var wg sync.WaitGroup
		for i := range 6 {
			s := stores[i%len(stores)]
			owner := fmt.Sprintf("i%d", i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for f := range 20 {
					folder := fmt.Sprintf("F%d", f)
					var ok bool
					err := s.Write(context.Background(), func(tx *Tx) (err error) {
						_, ok, err = tx.AcquireLease("c", folder, owner, now, time.Minute)
						return err
					})
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						mu.Lock()
						owners[folder] = append(owners[folder], owner)
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		for f := range 20 {
			if o := owners[fmt.Sprintf("F%d", f)]; len(o) != 1 {
				t.Errorf("folder F%d acquired by %v", f, o)
			}
		}
	})
}

// TestEnsureContactAcrossInstances: instances (stores) sharing a
// PostgreSQL database create the same new contacts at once; none
// fails and each address is one contact.
func TestEnsureContactAcrossInstances(t *testing.T) {
	if !pgCluster.Available(t) {
		return
	}
	first := openKind(t, postgresStore, Options{})
	second, err := Open(context.Background(), first.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	ids := make([]map[string]int64, 2)
	var wg sync.WaitGroup
	for i, s := range []*Store{first, second} {
		ids[i] = map[string]int64{}
		wg.Go(func() {
			for n := range 50 {
				addr := fmt.Sprintf("c%d@example.com", n)
				err := s.Write(context.Background(), func(tx *Tx) error {
					c, _, err := tx.EnsureContact(addr, "")
					if err == nil {
						ids[i][addr] = c.ID
					}
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for addr, id := range ids[0] {
		if ids[1][addr] != id {
			t.Errorf("%s: contact %d and %d", addr, id, ids[1][addr])
		}
	}
}
