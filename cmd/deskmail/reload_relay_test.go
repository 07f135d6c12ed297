package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

const relayReloadConfig = `database: deskmail.db
smtp:
  hostname: deskmail.acme.test
threading:
  secret: "relay reload secret"
channels:
  - name: support
    addresses: [support@acme.test]
    relay:
      address: %s
      tls: none
`

// TestServeSIGHUPChannelRelay runs the built binary with a channel
// relay (sink A), then rewrites the file with that channel's relay set
// to sink B and sends SIGHUP: the next confirmation goes to B and
// nothing more reaches A (issue 13.7: a reload that says "applied"
// must have applied the relay).
func TestServeSIGHUPChannelRelay(t *testing.T) {
	forEachDatabase(t, sighupChannelRelayOn)
}

func sighupChannelRelayOn(t *testing.T, db string) {
	bin := buildBinary(t)
	dir := t.TempDir()
	sinkA, sinkB := newRelaySink(t), newRelaySink(t)
	var cfgFile string
	write := func(relay string) { cfgFile = writeConfigOn(t, dir, db, fmt.Sprintf(relayReloadConfig, relay)) }
	write(sinkA.addr)
	p, smtpAddr, _ := startServe(t, bin, dir, "--config", cfgFile, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	mail := func(from, id string) {
		t.Helper()
		if err := smtpSend(smtpAddr, from, "support@acme.test", testMail(from, "support@acme.test", "Printer "+id, id+"@customer.example")); err != nil {
			t.Fatalf("SMTP %s: %v\n%s", id, err, p.stderr.String())
		}
	}

	mail("carol@customer.example", "r1")
	sinkA.waitMails(t, "carol@customer.example", 1)

	write(sinkB.addr)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload", 20*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "reload: configuration applied")
	})
	if !strings.Contains(p.stderr.String(), "channels.support.relay") {
		t.Errorf("the reload does not log the changed channel relay:\n%s", p.stderr.String())
	}

	mail("dave@customer.example", "r2")
	got := sinkB.waitMails(t, "dave@customer.example", 1)
	if !strings.Contains(string(got[0].Data), "Printer r2") {
		t.Errorf("sink B got an unexpected mail:\n%s", got[0].Data)
	}
	// Sink B has its mail, so the worker is done with it: A must hold
	// only the first confirmation.
	if n := len(sinkA.mails("")); n != 1 {
		t.Errorf("sink A got %d mails, want only the one before the reload", n)
	}
	if n := len(sinkB.mails("")); n != 1 {
		t.Errorf("sink B got %d mails, want 1", n)
	}
	p.stop()
}
