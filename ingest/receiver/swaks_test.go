package receiver

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/internal/testtool"
)

// TestSwaks talks to the receiver with swaks, a real-world SMTP client
// (Debian package swaks, installed by .ci/run).
func TestSwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		testtool.Missing(t, "swaks not installed (apt-get install swaks)")
	}
	h := newHarness(t, harnessOpt{tls: true, auth: true})
	run := func(args ...string) (string, error) {
		args = append([]string{"--server", h.addr, "--helo", "swaks.test.example", "--timeout", "20"}, args...)
		out, err := exec.Command(swaks, args...).CombinedOutput()
		return string(out), err
	}

	t.Run("plain", func(t *testing.T) {
		out, err := run("--from", "ann@customer.example", "--to", "support@example.com",
			"--header", "Message-Id: <swaks-1@customer.example>", "--header", "Subject: from swaks")
		if err != nil || !strings.Contains(out, "<-  250 2.0.0") {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		if _, ok := h.rawByMessageID("swaks-1@customer.example"); !ok {
			t.Error("not stored")
		}
	})
	t.Run("pipelining", func(t *testing.T) {
		out, err := run("--pipeline", "--from", "ann@customer.example", "--to", "support@example.com,help@example.com",
			"--header", "Message-Id: <swaks-2@customer.example>")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		if n := h.countConversations("swaks-2@customer.example"); n != 1 {
			t.Errorf("conversations = %d", n)
		}
	})
	t.Run("unknown recipient", func(t *testing.T) {
		out, err := run("--from", "ann@customer.example", "--to", "someone@elsewhere.example")
		if err == nil || !strings.Contains(out, "550 5.1.1") {
			t.Errorf("relay attempt: err=%v\n%s", err, out)
		}
	})
	t.Run("starttls auth", func(t *testing.T) {
		out, err := run("--tls", "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", "alice-pw",
			"--from", "alice@agents.example", "--to", "support@example.com",
			"--header", "Message-Id: <swaks-3@agents.example>", "--header", "From: alice@agents.example")
		if err != nil || !strings.Contains(out, "235 2.0.0") {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		raw, ok := h.rawByMessageID("swaks-3@agents.example")
		if !ok {
			t.Fatal("not stored")
		}
		var env ingest.Envelope
		json.Unmarshal([]byte(raw.envelope), &env)
		if !env.TLS || env.AuthUser != "alice@agents.example" || env.Helo != "swaks.test.example" {
			t.Errorf("envelope = %+v", env)
		}
	})
	t.Run("auth without tls", func(t *testing.T) {
		out, err := run("--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "alice-pw",
			"--from", "alice@agents.example", "--to", "support@example.com")
		if err == nil {
			t.Errorf("AUTH without TLS succeeded:\n%s", out)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		out, err := run("--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "nope",
			"--from", "alice@agents.example", "--to", "support@example.com")
		if err == nil || !strings.Contains(out, "535 5.7.8") {
			t.Errorf("wrong password: err=%v\n%s", err, out)
		}
	})
}
