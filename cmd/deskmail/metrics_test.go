package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMetricsReported runs the built daemon with two IMAP channels (an
// in-process imapmemserver, and a closed port) and two relays (a go-smtp
// sink, and a closed port), sends mail to both SMTP channels and reads
// /metrics: every metric of README's table that these events touch is
// reported — IMAP polls and errors, outbox deliveries — and the
// database gauges (queued, age of the oldest queued, failed outbound,
// failed incoming, set aside) agree with `deskmail status --json`.
func TestMetricsReported(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	sink := newRelaySink(t)
	imapPort := memIMAP(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := filepath.Join(dir, "deskmail.yaml")
	src := fmt.Sprintf(`database: deskmail.db
outbound:
  relay: %s
  tls: none
channels:
  - name: support
    addresses: [support@example.com]
  - name: sales
    addresses: [sales@example.com]
    relay: {address: "127.0.0.1:%d", tls: none}
  - name: mailbox
    addresses: [mailbox@example.com]
    imap: {host: 127.0.0.1, port: %d, tls: none, username: support, password: secret, poll_interval: 1s, idle: false}
  - name: broken
    addresses: [broken@example.com]
    imap: {host: 127.0.0.1, port: %d, tls: none, username: x, password: y, poll_interval: 1s, idle: false}
`, sink.addr, closed, imapPort, closed)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p, smtpAddr, httpAddr := startServe(t, bin, dir, "--config", cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	for _, to := range []string{"support@example.com", "sales@example.com"} {
		if err := smtpSend(smtpAddr, "ann@customer.example", to, testMail("ann@customer.example", to, "Hello "+to, "m-"+to)); err != nil {
			t.Fatal(err)
		}
	}
	scrape := func() string {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	want := []string{
		`deskmail_imap_polls_total{channel="mailbox",result="ok"}`,
		`deskmail_imap_polls_total{channel="broken",result="error"}`,
		`deskmail_imap_errors_total{channel="broken",kind="connect"}`,
		`deskmail_outbox_deliveries_total{result="sent"}`,
		`deskmail_outbox_deliveries_total{result="retry"}`,
		`deskmail_outbox_queued 1`,
		`deskmail_outbox_oldest_queued_seconds `,
		`deskmail_outbox_failed 0`,
		`deskmail_failed_messages 0`,
		`deskmail_imap_set_aside 0`,
		`deskmail_store_conflicts_total 0`,
	}
	var text string
	waitFor(t, "the metrics", 30*time.Second, func() bool {
		text = scrape()
		for _, w := range want {
			if !strings.Contains(text, w) {
				return false
			}
		}
		return true
	})
	age, err := strconv.ParseFloat(regexp.MustCompile(`(?m)^deskmail_outbox_oldest_queued_seconds (\S+)$`).FindStringSubmatch(text)[1], 64)
	if err != nil || age <= 0 || age > 60 {
		t.Errorf("deskmail_outbox_oldest_queued_seconds = %v (%v), want the age of the queued mail", age, err)
	}
	var st struct {
		Outbox struct {
			Queued, Failed int
		}
		FailedMessages int `json:"failed_messages"`
		IMAPSetAside   int `json:"imap_set_aside"`
	}
	if err := json.Unmarshal([]byte(deskmailCmd(t, bin, dir, "status", "--config", cfg, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{
		fmt.Sprintf("deskmail_outbox_queued %d\n", st.Outbox.Queued),
		fmt.Sprintf("deskmail_outbox_failed %d\n", st.Outbox.Failed),
		fmt.Sprintf("deskmail_failed_messages %d\n", st.FailedMessages),
		fmt.Sprintf("deskmail_imap_set_aside %d\n", st.IMAPSetAside),
	} {
		if !strings.Contains(text, g) {
			t.Errorf("/metrics disagrees with deskmail status: want %q", g)
		}
	}
	p.stop()
}
