package poller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestProbe(t *testing.T) {
	b := memServer(t, memOptions{})
	b.appendMsg(t, "INBOX", message("probe@example.net", "p@example.net", "Probe"), time.Now())
	h := newHarness(t, b)
	ctx := context.Background()
	rep, err := Probe(ctx, &h.cfg.Channels[0], h.st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.IDLE || !rep.Move || !rep.UIDPlus || len(rep.Folders) != 1 || rep.Folders[0].Messages != 1 || rep.Folders[0].Unseen != 1 {
		t.Errorf("report = %+v", rep)
	}
	// Nothing changed on the server.
	for _, f := range b.flags(t, "INBOX") {
		if hasFlag(f, imap.FlagSeen) {
			t.Errorf("probe flagged a message")
		}
	}

	cases := []struct {
		change func()
		want   string
	}{
		{func() { h.cfg.Channels[0].IMAP.Password.Inline = "wrong" }, "refused the user name or password"},
		{func() {
			h.cfg.Channels[0].IMAP.Password.Inline = testPassword
			h.cfg.Channels[0].IMAP.Folders = []string{"Nope"}
		}, "folder does not exist"},
		{func() { h.cfg.Channels[0].IMAP.Port = 1 }, "could not be reached"},
		{func() { h.cfg.Channels[0].IMAP.Host = "no-such-host.invalid" }, "host name could not be found"},
	}
	for _, tc := range cases {
		tc.change()
		_, err := Probe(ctx, &h.cfg.Channels[0], h.st, Options{})
		if got := Explain(err); !strings.Contains(got, tc.want) {
			t.Errorf("Explain(%v) = %q, want %q", err, got, tc.want)
		}
	}
}
