package ingest_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/rules"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// TestRulesOnSentFolderNotHistory: a reply the team sent from the
// support mailbox (its Sent folder) runs the agent_replied rules;
// the same mail imported as history runs none.
func TestRulesOnSentFolderNotHistory(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		raw     ingest.Raw
		tagged  bool
		noticed int
	}{
		{"sent folder", ingest.Raw{Quiet: true, Sent: true}, true, 3},
		{"history import", ingest.Raw{Quiet: true, History: true}, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := store.Open(ctx, filepath.Join(t.TempDir(), "r.db"), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var webhooks int
			eng := rules.New([]rules.Rule{{Name: "sent", On: []string{"agent_replied"}, AddTags: []string{"answered"}}}, nil)
			p, err := ingest.NewPipeline(ctx, st, ingest.Env{Config: cfg, Signer: threading.NewSigner([]byte("x"), 0), Rules: eng,
				Notify: func(tx *store.Tx, n ingest.Notice) error {
					if !n.NoMail {
						t.Errorf("%s would be mailed", n.Event)
					}
					if !n.Quiet {
						webhooks++
					}
					return nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			raw := c.raw
			raw.Source, raw.Name = ingest.SourceIMAP, "sent-1"
			raw.Data = []byte(strings.ReplaceAll("From: Alice Agent <alice@acme.example>\nTo: Jane <jane@customer.example>\n"+
				"Subject: Your renewal\nMessage-ID: <s-1@acme.example>\nDate: Mon, 07 Dec 2026 10:00:00 +0000\n\nShall we renew it?\n", "\n", "\r\n"))
			res, err := p.Ingest(ctx, []ingest.Raw{raw})
			if err != nil || len(res) != 1 || res[0].TicketID == nil {
				t.Fatalf("ingest: %v %+v", err, res)
			}
			var tk *store.Ticket
			st.Read(ctx, func(tx *store.Tx) error {
				tk, err = tx.Ticket(*res[0].TicketID)
				return err
			})
			if tagged := strings.Join(tk.Tags, ",") == "answered"; tagged != c.tagged {
				t.Errorf("tags %v, want the rule's tag: %v", tk.Tags, c.tagged)
			}
			if webhooks != c.noticed {
				t.Errorf("%d events reach webhooks, want %d", webhooks, c.noticed)
			}
		})
	}
}
