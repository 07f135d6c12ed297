package opsreport

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
)

// TestGather: a mailbox that never polled, one that fails and an SMTP
// channel; counts of the outbox and raw mail as stored.
func TestGather(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "d.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg, err := config.Parse("t.yaml", []byte(`
channels:
  - {name: support, addresses: [support@acme.test]}
  - name: box
    addresses: [box@acme.test]
    imap: {host: 127.0.0.1, port: 1, tls: none, username: u, password: p}
  - name: quiet
    addresses: [quiet@acme.test]
    imap: {host: 127.0.0.1, port: 1, tls: none, username: u, password: p}
`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = st.Write(ctx, func(tx *store.Tx) error {
		if err := tx.RecordChannelError("box", now, "connection refused"); err != nil {
			return err
		}
		_, err := tx.AddRaw(&store.RawMessage{Source: "smtp", Data: []byte("x"), State: "failed", Error: "cannot parse"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Read(ctx, st, cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"support": "ok", "box": "failing", "quiet": "never polled"}
	for _, c := range rep.Channels {
		if c.Health() != want[c.Channel] {
			t.Errorf("%s: %s, want %s", c.Channel, c.Health(), want[c.Channel])
		}
	}
	if rep.FailedMessages != 1 || rep.Store != "ok" || len(rep.Channels) != 3 || rep.Channels[1].Failures != 1 {
		t.Errorf("report %+v", rep)
	}
}
