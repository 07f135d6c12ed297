package threading

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/deskmail/deskmail/internal/lazyregexp"
)

// Signer makes and checks the signed tokens deskmail puts in reply
// addresses (support+t123.k7f3ab@example.com).
//
// Two kinds exist:
//   - a ticket token "t<id>.<mac>" proves the mail answers something
//     deskmail sent about ticket <id>; anyone who received it (the
//     customer, a colleague they forwarded it to) may use it;
//   - an agent token "a<id>.<day>.<mac>" is given only to one agent in
//     a notification; it binds the ticket, the agent's address and the
//     day it was issued, so a reply from that address within the token
//     lifetime proves the agent's identity for email commands.
//
// MACs are HMAC-SHA256 truncated to 50 bits (10 base32 characters):
// far beyond guessing range for a mail server that rate-limits.
type Signer struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
}

// NewSigner returns a Signer. secret must be non-empty; ttl bounds
// agent tokens (0 means 90 days).
func NewSigner(secret []byte, ttl time.Duration) *Signer {
	if ttl <= 0 {
		ttl = 90 * 24 * time.Hour
	}
	return &Signer{secret: append([]byte(nil), secret...), ttl: ttl, now: time.Now}
}

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func (s *Signer) mac(parts ...string) string {
	h := hmac.New(sha256.New, s.secret)
	h.Write([]byte(strings.Join(parts, "\x00")))
	return b32.EncodeToString(h.Sum(nil))[:10]
}

// TicketToken returns the token for a ticket.
func (s *Signer) TicketToken(ticketID int64) string {
	id := strconv.FormatInt(ticketID, 10)
	return "t" + id + "." + s.mac("ticket", id)
}

// AgentToken returns a token that proves agentEmail received mail
// about the ticket today.
func (s *Signer) AgentToken(ticketID int64, agentEmail string) string {
	id := strconv.FormatInt(ticketID, 10)
	day := strconv.FormatInt(s.now().Unix()/86400, 10)
	return "a" + id + "." + day + "." + s.mac("agent", id, strings.ToLower(agentEmail), day)
}

// ReplyAddress puts a token in the local part of a support address
// with plus-addressing: support@example.com → support+t12.xxxx@example.com.
func ReplyAddress(support, token string) string {
	at := strings.LastIndexByte(support, '@')
	if at < 0 {
		return support
	}
	local := support[:at]
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	return local + "+" + token + support[at:]
}

// SplitAddress separates a plus-address into its base address and tag:
// support+t12.xxxx@example.com → support@example.com, t12.xxxx.
func SplitAddress(addr string) (base, tag string) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr, ""
	}
	local := addr[:at]
	i := strings.IndexByte(local, '+')
	if i < 0 {
		return addr, ""
	}
	return local[:i] + addr[at:], local[i+1:]
}

var tokenRE = lazyregexp.New(`^(?i)(t)(\d{1,18})\.([a-z2-7]{10})$|^(?i)(a)(\d{1,18})\.(\d{1,9})\.([a-z2-7]{10})$`)

// TokenCheck is what a token in a reply address proves.
type TokenCheck struct {
	TicketID int64
	// Agent is true when the token is a valid, unexpired agent token
	// issued to the sender's address.
	Agent bool
	// Problem explains why an agent token did not prove the agent
	// (expired, issued to someone else); empty when it did or when the
	// token is a ticket token.
	Problem string
}

// Check verifies a plus-address tag. ok is false when the tag is not a
// well-formed token with a valid MAC for any ticket. For agent tokens,
// sender is the From address of the mail being checked.
func (s *Signer) Check(tag, sender string) (TokenCheck, bool) {
	m := tokenRE.FindStringSubmatch(tag)
	if m == nil {
		return TokenCheck{}, false
	}
	if m[1] != "" {
		id, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil || !hmac.Equal([]byte(strings.ToLower(m[3])), []byte(s.mac("ticket", m[2]))) {
			return TokenCheck{}, false
		}
		return TokenCheck{TicketID: id}, true
	}
	id, err := strconv.ParseInt(m[5], 10, 64)
	if err != nil {
		return TokenCheck{}, false
	}
	day, mac := m[6], strings.ToLower(m[7])
	if !hmac.Equal([]byte(mac), []byte(s.mac("agent", m[5], strings.ToLower(sender), day))) {
		// Valid for someone? We cannot tell without the address; the
		// ticket id is still only trusted if the MAC matches the sender.
		return TokenCheck{TicketID: id, Problem: "reply token was issued to another address"}, false
	}
	issued, _ := strconv.ParseInt(day, 10, 64)
	if age := s.now().Sub(time.Unix(issued*86400, 0)); age > s.ttl || age < -48*time.Hour {
		return TokenCheck{TicketID: id, Problem: fmt.Sprintf("reply token expired (issued %s)", time.Unix(issued*86400, 0).UTC().Format("2006-01-02"))}, true
	}
	return TokenCheck{TicketID: id, Agent: true}, true
}

// bounceRE matches a bounce token: "b<outbox id>.<mac>".
var bounceRE = lazyregexp.New(`^(?i)b(\d{1,18})\.([a-z2-7]{10})$`)

// BounceToken returns the token deskmail puts in the envelope sender
// of outbox mail outboxID (support+b42.k7f3abcdef@example.com), a VERP
// address (variable envelope return path): a delivery status report
// sent back to it names, with a MAC nobody else can make, the very
// mail that failed. Only the relays on the way and the recipients of
// that mail (in its Return-Path) ever see it.
func (s *Signer) BounceToken(outboxID int64) string {
	id := strconv.FormatInt(outboxID, 10)
	return "b" + id + "." + s.mac("bounce", id)
}

// CheckBounce verifies a plus-address tag made by BounceToken and
// returns the outbox mail it names.
func (s *Signer) CheckBounce(tag string) (int64, bool) {
	m := bounceRE.FindStringSubmatch(tag)
	if m == nil || !hmac.Equal([]byte(strings.ToLower(m[2])), []byte(s.mac("bounce", m[1]))) {
		return 0, false
	}
	id, err := strconv.ParseInt(m[1], 10, 64)
	return id, err == nil
}

// WithClock returns a copy of the Signer that reads time from now (for
// tests and for re-checking tokens at a given moment).
func (s *Signer) WithClock(now func() time.Time) *Signer {
	c := *s
	c.now = now
	return &c
}
