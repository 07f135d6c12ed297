package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/store"
)

func TestReadinessFollowsChannelHealth(t *testing.T) {
	t.Setenv("DM_IMAP_PW", "x")
	cfg, err := config.Parse("h.yaml", []byte(`
channels:
  - name: billing
    addresses: [billing@example.com]
    imap: {host: imap.example.com, username: b, password: "env:DM_IMAP_PW"}
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "h.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := metrics.New()
	srv := httptest.NewServer(healthMux(func() *config.Config { return cfg }, st, m, nil, nil))
	defer srv.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q", code, body)
	}
	ready := func() (int, readiness) {
		code, body := get("/readyz")
		var r readiness
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("readyz body %q: %v", body, err)
		}
		return code, r
	}
	if code, r := ready(); code != 503 || r.Ready || r.Channels[0].LastError != "not polled yet" {
		t.Fatalf("before the first poll: %d %+v", code, r)
	}
	st.Write(ctx, func(tx *store.Tx) error { return tx.RecordChannelOK("billing", time.Now()) })
	if code, r := ready(); code != 200 || !r.Ready || r.Store != "ok" {
		t.Fatalf("after a good poll: %d %+v", code, r)
	}
	st.Write(ctx, func(tx *store.Tx) error {
		return tx.RecordChannelError("billing", time.Now(), "imap billing: login: authentication failed")
	})
	if code, r := ready(); code != 503 || !strings.Contains(r.Channels[0].LastError, "authentication failed") {
		t.Fatalf("after a failed poll: %d %+v", code, r)
	}
	m.Message("billing", "imap", "created", 0, time.Millisecond)
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `deskmail_message_actions_total{action="created",channel="billing"} 1`) {
		t.Fatalf("metrics %d", code)
	}
}
