package threading

import (
	"strings"
	"testing"
	"time"
)

func TestTicketToken(t *testing.T) {
	s := NewSigner([]byte("secret"), 0)
	tok := s.TicketToken(123)
	if !strings.HasPrefix(tok, "t123.") || len(tok) != len("t123.")+10 {
		t.Fatalf("token %q", tok)
	}
	addr := ReplyAddress("Support@acme.example", tok)
	if addr != "Support+"+tok+"@acme.example" {
		t.Fatalf("reply address %q", addr)
	}
	base, tag := SplitAddress(addr)
	if base != "Support@acme.example" || tag != tok {
		t.Fatalf("split %q, %q", base, tag)
	}
	if c, ok := s.Check(tag, "anyone@example.com"); !ok || c.TicketID != 123 || c.Agent {
		t.Errorf("check %+v %v", c, ok)
	}
	// Mail clients may upper-case the local part.
	if c, ok := s.Check(strings.ToUpper(tag), ""); !ok || c.TicketID != 123 {
		t.Errorf("upper-case token refused: %+v %v", c, ok)
	}
	for _, bad := range []string{
		"t124." + tok[5:], // another ticket number with this MAC
		"t123.aaaaaaaaaa", // a guessed MAC
		NewSigner([]byte("other"), 0).TicketToken(123), // another installation
		"t123", "sales", "",
	} {
		if c, ok := s.Check(bad, ""); ok {
			t.Errorf("Check(%q) accepted: %+v", bad, c)
		}
	}
	if got := ReplyAddress("support+old@acme.example", tok); got != "support+"+tok+"@acme.example" {
		t.Errorf("existing tag not replaced: %q", got)
	}
	if b, tag := SplitAddress("support@acme.example"); b != "support@acme.example" || tag != "" {
		t.Errorf("plain address split into %q, %q", b, tag)
	}
}

func TestAgentToken(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	s := NewSigner([]byte("secret"), 7*24*time.Hour)
	s.now = func() time.Time { return now }
	tok := s.AgentToken(9, "Alice@acme.example")

	if c, ok := s.Check(tok, "alice@acme.example"); !ok || !c.Agent || c.TicketID != 9 || c.Problem != "" {
		t.Errorf("own token: %+v %v", c, ok)
	}
	// Someone else replying through a forwarded agent notification.
	if c, ok := s.Check(tok, "mallory@attacker.example"); ok || c.Agent || c.Problem == "" {
		t.Errorf("token used by another address: %+v %v", c, ok)
	}
	// Expired: the ticket is still found, the agent is not proven.
	now = now.Add(8 * 24 * time.Hour)
	if c, ok := s.Check(tok, "alice@acme.example"); !ok || c.Agent || c.TicketID != 9 || !strings.Contains(c.Problem, "expired") {
		t.Errorf("expired token: %+v %v", c, ok)
	}
}

func TestAddresses(t *testing.T) {
	a := NewAddresses([]string{"support", "sales"}, map[string][]string{
		"support": {"support@acme.example", "Help@ACME.example"},
		"sales":   {"sales@acme.example"},
	})
	for addr, want := range map[string]string{
		"support@acme.example":               "support",
		"HELP@acme.example":                  "support",
		"support+t1.abcdefghij@acme.example": "support",
		" Sales@Acme.Example ":               "sales",
		"sales+anything@acme.example":        "sales",
		"jane@customer.example":              "",
		"support@other.example":              "",
	} {
		ch, ok := a.Lookup(addr)
		if ch != want || ok != (want != "") {
			t.Errorf("Lookup(%q) = %q, %v; want %q", addr, ch, ok, want)
		}
	}
	if a.Default() != "support" {
		t.Errorf("default %q", a.Default())
	}
}

func TestBounceToken(t *testing.T) {
	s := NewSigner([]byte("secret"), 0)
	tok := s.BounceToken(42)
	if !strings.HasPrefix(tok, "b42.") || len(tok) != len("b42.")+10 {
		t.Fatalf("token %q", tok)
	}
	_, tag := SplitAddress(ReplyAddress("support@acme.example", tok))
	if id, ok := s.CheckBounce(strings.ToUpper(tag)); !ok || id != 42 {
		t.Errorf("CheckBounce(%q) = %d, %v", tag, id, ok)
	}
	for _, bad := range []string{
		"b43." + tok[4:], "b42.aaaaaaaaaa", NewSigner([]byte("other"), 0).BounceToken(42),
		s.TicketToken(42), "b42", "",
	} {
		if id, ok := s.CheckBounce(bad); ok {
			t.Errorf("CheckBounce(%q) accepted: %d", bad, id)
		}
	}
	// A bounce token is no reply token.
	if c, ok := s.Check(tok, ""); ok {
		t.Errorf("Check accepted a bounce token: %+v", c)
	}
}
