package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// TestBackupWhileWriting takes a backup while another goroutine keeps
// writing, then opens the copy and checks it is a working database.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, filepath.Join(dir, "live.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			err := s.Write(ctx, func(tx *Tx) error {
				_, _, err := tx.EnsureContact(fmt.Sprintf("c%d@example.com", i), "")
				return err
			})
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// Let some writes land first.
	for {
		var n int
		s.Read(ctx, func(tx *Tx) error { c, err := tx.Contacts(0, 1000); n = len(c); return err })
		if n >= 50 {
			break
		}
	}
	dest := filepath.Join(dir, "backup.db")
	if err := s.Backup(ctx, dest); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := s.Backup(ctx, dest); err == nil {
		t.Fatal("backup over an existing file must fail")
	}
	b, err := Open(ctx, dest, Options{})
	if err != nil {
		t.Fatalf("restored backup does not open: %v", err)
	}
	defer b.Close()
	var n int
	if err := b.Read(ctx, func(tx *Tx) error { c, err := tx.Contacts(0, 100000); n = len(c); return err }); err != nil {
		t.Fatal(err)
	}
	if n < 50 {
		t.Fatalf("backup has %d contacts", n)
	}
	if err := b.Write(ctx, func(tx *Tx) error { _, _, err := tx.EnsureContact("after@example.com", ""); return err }); err != nil {
		t.Fatalf("restored backup not writable: %v", err)
	}
}
