package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jsonAddr returns the addr of the first JSON log record whose msg is
// msg ("" when there is none yet).
func jsonAddr(logs, msg string) string {
	for _, l := range strings.Split(logs, "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg == msg {
			return rec.Addr
		}
	}
	return ""
}

// TestServeLogs runs the built binary through start-up, a mail, a TCP
// probe that resets the SMTP connection, SIGHUP and shutdown, with an
// outbound relay that refuses connections (so the confirmation's
// delivery is deferred and logged). With log.format: json every line on
// stderr is a JSON object and stdout is silent; in both formats ids are
// logged as values (ticket 1, never a pointer), and the probe is not a
// warning.
func TestServeLogs(t *testing.T) {
	bin := buildBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().String()
	ln.Close()
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "deskmail.yaml")
			src := "database: deskmail.db\nlog:\n  format: " + format + "\n  level: info\noutbound:\n  relay: " + closedPort + "\n  tls: none\n" +
				"channels:\n  - name: support\n    addresses: [support@example.com]\n"
			if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			p, smtpAddr, _ := startServe(t, bin, dir, "--config", cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
			if err := smtpSend(smtpAddr, "ann@customer.example", "support@example.com",
				testMail("ann@customer.example", "support@example.com", "Printer broken", "log-1@customer.example")); err != nil {
				t.Fatal(err)
			}
			// A health probe: connect, then reset the connection.
			c, err := net.Dial("tcp", smtpAddr)
			if err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			waitFor(t, "the deferred delivery", 20*time.Second, func() bool { return strings.Contains(p.stderr.String(), "delivery deferred") })
			if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the reload", 20*time.Second, func() bool { return strings.Contains(p.stderr.String(), "configuration applied") })
			p.stop()
			logs := p.stderr.String()
			for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
				if strings.Contains(l, "level=WARN") || strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, "level=ERROR") || strings.Contains(l, `"level":"ERROR"`) {
					t.Errorf("warning or error logged: %s", l)
				}
				if strings.Contains(l, "0xc") {
					t.Errorf("a pointer is logged: %s", l)
				}
				if format != "json" {
					continue
				}
				var rec map[string]any
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Errorf("stderr line is not JSON: %q", l)
				}
			}
			switch format {
			case "json":
				if out := p.stdout.String(); out != "" {
					t.Errorf("stdout with a JSON log: %q", out)
				}
				if !strings.Contains(logs, `"msg":"delivery deferred"`) || !strings.Contains(logs, `"ticket":1,`) {
					t.Errorf("the deferred delivery does not log ticket 1:\n%s", logs)
				}
			default:
				if !strings.Contains(p.stdout.String(), "deskmail: HTTP listening on ") || !regexp.MustCompile(`msg="delivery deferred".* ticket=1 `).MatchString(logs) {
					t.Errorf("text log: stdout %q\nstderr:\n%s", p.stdout.String(), logs)
				}
			}
		})
	}
}
