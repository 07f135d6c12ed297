package ingest_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
)

// A start whose configuration is already stored writes nothing (one
// `deskmail ingest -` per mail must not pay a synced write transaction
// for it); a changed configuration is still written. A second
// connection holds the write lock: a write attempt then fails at once.
func TestSyncConfigWritesOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "deskmail.db")
	st, err := store.Open(ctx, path, store.Options{BusyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, _, err := ingest.SyncConfig(ctx, st, cfg, nil, false); err != nil {
		t.Fatalf("first sync: %v", err)
	}

	other, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	locked, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- other.Write(ctx, func(*store.Tx) error {
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	for _, keep := range []bool{false, true} {
		statuses, pipelines, err := ingest.SyncConfig(ctx, st, cfg, nil, keep)
		if err != nil {
			t.Fatalf("unchanged configuration (keep %v) tried to write: %v", keep, err)
		}
		if len(statuses) == 0 || len(pipelines) == 0 {
			t.Fatalf("keep %v: %d statuses, %d pipelines returned", keep, len(statuses), len(pipelines))
		}
	}
	changed := *cfg
	changed.Agents = append([]config.AgentConfig{}, cfg.Agents...)
	changed.Agents[0].Name = "Renamed Agent"
	if _, _, err := ingest.SyncConfig(ctx, st, &changed, nil, false); err == nil {
		t.Fatal("a renamed agent did not make SyncConfig write")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, _, err := ingest.SyncConfig(ctx, st, &changed, nil, false); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := st.Read(ctx, func(tx *store.Tx) error {
		a, err := tx.AgentByEmail(changed.Agents[0].Email)
		if err == nil {
			name = a.Name
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if name != "Renamed Agent" {
		t.Fatalf("agent name %q after the changed sync", name)
	}
}
