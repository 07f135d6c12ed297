package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/metrics"
)

func TestHappyPath(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	msg := message("Carol <carol@customer.example>", "support@example.com", "Printer on fire", "happy-1@customer.example", "It is burning.")
	// Two of our addresses, the second of another channel: one Submit,
	// channel of the first.
	if err := h.send("carol@customer.example", []string{"billing@example.com", "support@example.com"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	raw, ok := h.rawByMessageID("happy-1@customer.example")
	if !ok {
		t.Fatal("250 was given but the raw message is not stored")
	}
	if raw.channel.String != "billing" {
		t.Errorf("channel = %q, want billing (first recipient)", raw.channel.String)
	}
	if n := h.countConversations("happy-1@customer.example"); n != 1 {
		t.Errorf("conversations = %d, want 1", n)
	}
	var subject string
	if err := h.db().QueryRow(`SELECT t.subject FROM tickets t JOIN conversations c ON c.ticket_id = t.id WHERE c.message_id = ?`, "happy-1@customer.example").Scan(&subject); err != nil {
		t.Fatalf("ticket: %v", err)
	}
	if subject != "Printer on fire" {
		t.Errorf("subject = %q", subject)
	}
	if !strings.HasPrefix(raw.data, "Received: from client.test.example ([127.0.0.1])\r\n\tby mx.test.example (deskmail) with ESMTP id ") {
		t.Errorf("stored data does not start with the Received header:\n%s", raw.data[:min(200, len(raw.data))])
	}
	if !strings.Contains(raw.data, ";\r\n\t") || !strings.Contains(raw.data, "\r\nFrom: Carol <carol@customer.example>\r\n") {
		t.Errorf("stored data:\n%s", raw.data)
	}
	if strings.Contains(raw.data[:strings.Index(raw.data, "From:")], " for <") {
		t.Errorf("Received names a recipient although there were two")
	}
	var env ingest.Envelope
	if err := json.Unmarshal([]byte(raw.envelope), &env); err != nil {
		t.Fatalf("envelope %q: %v", raw.envelope, err)
	}
	if env.MailFrom != "carol@customer.example" || len(env.RcptTo) != 2 || env.RcptTo[0] != "billing@example.com" ||
		env.ClientIP != "127.0.0.1" || env.Helo != "client.test.example" || env.TLS || env.AuthUser != "" || env.ReceivedAt.IsZero() {
		t.Errorf("envelope = %+v", env)
	}

	// The same message again (an MTA retry) is accepted and stays one
	// conversation.
	if err := h.send("carol@customer.example", []string{"support@example.com"}, msg); err != nil {
		t.Fatalf("resend: %v", err)
	}
	if n := h.countConversations("happy-1@customer.example"); n != 1 {
		t.Errorf("after a retry, conversations = %d, want 1", n)
	}
}

func TestPlusAddressAndSeveralMessagesPerSession(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	defer c.Close()
	for i := range 3 {
		id := fmt.Sprintf("multi-%d@customer.example", i)
		if err := sendOn(c, "dan@customer.example", []string{"support+t42.abcdefghij@example.com"}, message("dan@customer.example", "support@example.com", "hello", id, "hi")); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if _, ok := h.rawByMessageID(id); !ok {
			t.Fatalf("message %d not stored", i)
		}
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

func TestUnknownRecipient(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	defer c.Close()
	if err := c.Mail("eve@attacker.example", nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"nobody@example.com", "victim@elsewhere.example", "support@example.com.evil.example", "support@example.com@evil.example"} {
		err := c.Rcpt(rcpt, nil)
		if code, enh := smtpCode(err); code != 550 || enh != (smtp.EnhancedCode{5, 1, 1}) {
			t.Errorf("RCPT %s: %v, want 550 5.1.1", rcpt, err)
		}
	}
	// DATA without an accepted recipient is refused.
	if _, err := c.Data(); err == nil {
		t.Error("DATA accepted without recipients")
	}
}

func TestOversize(t *testing.T) {
	h := newHarness(t, harnessOpt{smtp: func(s *config.SMTPConfig) { s.MaxMessageBytes = 10_000 }})
	c := h.dial()
	defer c.Close()
	if ok, v := c.Extension("SIZE"); !ok || v != "10000" {
		t.Errorf("SIZE extension = %v %q", ok, v)
	}
	// Announced too big: refused at MAIL.
	err := c.Mail("big@customer.example", &smtp.MailOptions{Size: 20_000})
	if code, enh := smtpCode(err); code != 552 || enh != (smtp.EnhancedCode{5, 3, 4}) {
		t.Errorf("MAIL SIZE=20000: %v, want 552 5.3.4", err)
	}
	c.Reset()
	// Not announced: refused after DATA, nothing stored.
	body := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvw\r\n", 300)
	err = sendOn(c, "big@customer.example", []string{"support@example.com"}, message("big@customer.example", "support@example.com", "big", "big-1@customer.example", body))
	if code, enh := smtpCode(err); code != 552 || enh != (smtp.EnhancedCode{5, 3, 4}) {
		t.Errorf("oversize DATA: %v, want 552 5.3.4", err)
	}
	if _, ok := h.rawByMessageID("big-1@customer.example"); ok {
		t.Error("oversize message was stored")
	}
	// The session goes on.
	if err := sendOn(c, "small@customer.example", []string{"support@example.com"}, message("small@customer.example", "support@example.com", "small", "small-1@customer.example", "ok")); err != nil {
		t.Errorf("next message: %v", err)
	}
}

func TestTooManyRecipients(t *testing.T) {
	h := newHarness(t, harnessOpt{smtp: func(s *config.SMTPConfig) { s.MaxRecipients = 3 }})
	c := h.dial()
	defer c.Close()
	if err := c.Mail("x@customer.example", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Rcpt(fmt.Sprintf("support+%d@example.com", i), nil); err != nil {
			t.Fatalf("RCPT %d: %v", i, err)
		}
	}
	err := c.Rcpt("help@example.com", nil)
	if code, enh := smtpCode(err); code != 452 || enh != (smtp.EnhancedCode{4, 5, 3}) {
		t.Errorf("4th RCPT: %v, want 452 4.5.3", err)
	}
	// The three accepted recipients still get the message.
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, message("x@customer.example", "support@example.com", "many", "many-1@customer.example", "hi"))
	if err := w.Close(); err != nil {
		t.Fatalf("DATA: %v", err)
	}
}

func TestLineAndHeaderLimits(t *testing.T) {
	h := newHarness(t, harnessOpt{smtp: func(s *config.SMTPConfig) {
		s.MaxLineLength = 1000
		s.MaxHeaders = 20
	}})
	var hdrs strings.Builder
	for i := range 30 {
		fmt.Fprintf(&hdrs, "X-Filler-%d: x\r\n", i)
	}
	err := h.send("h@customer.example", []string{"support@example.com"}, hdrs.String()+message("h@customer.example", "support@example.com", "hdrs", "hdrs-1@customer.example", "x"))
	if code, enh := smtpCode(err); code != 554 || enh != (smtp.EnhancedCode{5, 6, 0}) {
		t.Errorf("too many headers: %v, want 554 5.6.0", err)
	}
	// Folded lines are one field: 15 fields of 3 lines pass.
	hdrs.Reset()
	for i := range 10 {
		fmt.Fprintf(&hdrs, "X-Folded-%d: a\r\n b\r\n\tc\r\n", i)
	}
	if err := h.send("h@customer.example", []string{"support@example.com"}, hdrs.String()+message("h@customer.example", "support@example.com", "hdrs", "hdrs-2@customer.example", "x")); err != nil {
		t.Errorf("folded headers: %v", err)
	}
	// A body line of 999 octets passes, one of 5000 is refused.
	long := strings.Repeat("a", 998)
	if err := h.send("h@customer.example", []string{"support@example.com"}, message("h@customer.example", "support@example.com", "long", "long-1@customer.example", long)); err != nil {
		t.Errorf("998-octet line: %v", err)
	}
	err = h.send("h@customer.example", []string{"support@example.com"}, message("h@customer.example", "support@example.com", "long", "long-2@customer.example", strings.Repeat("a", 5000)))
	if code, enh := smtpCode(err); code != 554 || enh != (smtp.EnhancedCode{5, 6, 0}) {
		t.Errorf("5000-octet line: %v, want 554 5.6.0", err)
	}
	if _, ok := h.rawByMessageID("long-2@customer.example"); ok {
		t.Error("message with an overlong line was stored")
	}
}

func TestContentScanner(t *testing.T) {
	cases := []struct {
		in      string
		line, h int
		want    error
	}{
		{"A: 1\r\nB: 2\r\n\r\nbody\r\n", 100, 2, nil},
		{"A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody\r\n", 100, 2, errContentHeaders},
		{"A: 1\r\n x\r\n\ty\r\nB: 2\r\n\r\nC: not a header\r\nD: no\r\n", 100, 2, nil},
		{"A: 1\n\nC: x\nD: y\n", 100, 1, nil},
		{"A: 1\r\n\r\n" + strings.Repeat("x", 10) + "\r\n", 10, 0, nil},
		{"A: 1\r\n\r\n" + strings.Repeat("x", 11) + "\r\n", 10, 0, errContentLine},
	}
	for i, c := range cases {
		for _, chunk := range []int{1, 3, 4096} {
			s := &contentScanner{r: &chunkReader{s: c.in, n: chunk}, maxLine: c.line, maxHeaders: c.h}
			_, err := io.ReadAll(s)
			if !errors.Is(err, c.want) && !(err == nil && c.want == nil) {
				t.Errorf("case %d chunk %d: err = %v, want %v", i, chunk, err, c.want)
			}
		}
	}
}

type chunkReader struct {
	s string
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.s)
	r.s = r.s[n:]
	return n, nil
}

func TestStartTLS(t *testing.T) {
	h := newHarness(t, harnessOpt{tls: true})
	plain := h.dial()
	if ok, _ := plain.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not advertised")
	}
	plain.Close()
	c := h.dialTLS()
	defer c.Close()
	if err := sendOn(c, "tls@customer.example", []string{"support@example.com"}, message("tls@customer.example", "support@example.com", "tls", "tls-1@customer.example", "secret")); err != nil {
		t.Fatalf("send: %v", err)
	}
	raw, ok := h.rawByMessageID("tls-1@customer.example")
	if !ok {
		t.Fatal("not stored")
	}
	if !strings.Contains(raw.data, "with ESMTPS\r\n\t(TLS1.3 ") || !strings.Contains(raw.data, "\r\n\tfor <support@example.com>;\r\n\t") {
		t.Errorf("Received header:\n%s", raw.data[:strings.Index(raw.data, "From:")])
	}
	var env ingest.Envelope
	json.Unmarshal([]byte(raw.envelope), &env)
	if !env.TLS {
		t.Errorf("envelope TLS = false")
	}
}

func TestImplicitTLS(t *testing.T) {
	h := newHarness(t, harnessOpt{tls: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.ServeTLS(ctx, ln) }()
	defer func() { cancel(); <-done }()
	c, err := smtp.DialTLS(ln.Addr().String(), h.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendOn(c, "tls@customer.example", []string{"support@example.com"}, message("tls@customer.example", "support@example.com", "tls", "itls-1@customer.example", "x")); err != nil {
		t.Fatalf("send: %v", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS advertised inside TLS")
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t, harnessOpt{tls: true, auth: true})

	// Without TLS: not advertised, and refused when tried.
	c := h.dial()
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH advertised without TLS")
	}
	c.Close()
	tp, nc := h.raw()
	cmd(t, tp, "EHLO client.test.example")
	if code, _ := cmd(t, tp, "AUTH PLAIN %s", "AGFsaWNlAGFsaWNlLXB3"); code != 523 {
		t.Errorf("AUTH without TLS: %d, want 523", code)
	}
	nc.Close()

	// Over TLS: a wrong password fails, the right one works and an
	// agent's account records the agent as the AUTH identity.
	c = h.dialTLS()
	defer c.Close()
	if !c.SupportsAuth("PLAIN") || !c.SupportsAuth("LOGIN") {
		t.Fatal("AUTH PLAIN LOGIN not advertised over TLS")
	}
	err := c.Auth(sasl.NewPlainClient("", "alice", "wrong"))
	if code, enh := smtpCode(err); code != 535 || enh != (smtp.EnhancedCode{5, 7, 8}) {
		t.Errorf("wrong password: %v, want 535 5.7.8", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "alice-pw")); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	msg := message("alice@agents.example", "support@example.com", "from an agent", "auth-1@agents.example", "hello")
	if err := sendOn(c, "alice@agents.example", []string{"support@example.com"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	raw, ok := h.rawByMessageID("auth-1@agents.example")
	if !ok {
		t.Fatal("not stored")
	}
	var env ingest.Envelope
	json.Unmarshal([]byte(raw.envelope), &env)
	if env.AuthUser != "alice@agents.example" || !env.TLS {
		t.Errorf("envelope auth = %q tls = %v", env.AuthUser, env.TLS)
	}
	if !strings.Contains(raw.data, " with ESMTPSA") {
		t.Errorf("Received does not say ESMTPSA:\n%s", raw.data[:200])
	}

	// LOGIN, and a relay account that is not an agent: no AUTH identity.
	c2 := h.dialTLS()
	defer c2.Close()
	if err := c2.Auth(sasl.NewLoginClient("relay", "s3cret-relay")); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	if err := sendOn(c2, "bob@customer.example", []string{"support@example.com"}, message("bob@customer.example", "support@example.com", "relayed", "auth-2@customer.example", "x")); err != nil {
		t.Fatal(err)
	}
	raw, _ = h.rawByMessageID("auth-2@customer.example")
	json.Unmarshal([]byte(raw.envelope), &env)
	if env.AuthUser != "" {
		t.Errorf("relay account recorded AUTH identity %q", env.AuthUser)
	}

	// Three failures end the session.
	c3 := h.dialTLS()
	defer c3.Close()
	var last error
	for range 3 {
		last = c3.Auth(sasl.NewPlainClient("", "nobody", "guess"))
	}
	if code, _ := smtpCode(last); code != 421 {
		t.Errorf("third failure: %v, want 421", last)
	}
	if err := c3.Noop(); err == nil {
		t.Error("session still open after three AUTH failures")
	}
}

func TestAuthNeedsTLSConfig(t *testing.T) {
	_, err := New(Options{Config: config.SMTPConfig{Auth: true}, Addresses: newHarness(t, harnessOpt{}).p.Addresses(), Submitter: nopSubmitter{}})
	if err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("New with auth and no certificate: %v", err)
	}
}

type nopSubmitter struct{}

func (nopSubmitter) Submit(context.Context, ingest.Raw) (ingest.Result, error) {
	return ingest.Result{}, nil
}

func TestIdleTimeout(t *testing.T) {
	h := newHarness(t, harnessOpt{smtp: func(s *config.SMTPConfig) { s.ReadTimeout.Duration = 300 * time.Millisecond }})
	tp, nc := h.raw()
	defer nc.Close()
	cmd(t, tp, "EHLO client.test.example")
	start := time.Now()
	code, _, _ := tp.ReadResponse(0)
	if code != 421 {
		t.Errorf("idle client got %d, want 421", code)
	}
	if _, err := tp.ReadLine(); err == nil {
		t.Error("connection still open after the idle timeout")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("idle client dropped after %v", el)
	}
}

func TestSlowLorisDropped(t *testing.T) {
	// Each byte arrives well within the read timeout, but the session
	// cannot outlive MaxSession.
	h := newHarness(t, harnessOpt{smtp: func(s *config.SMTPConfig) {
		s.ReadTimeout.Duration = 2 * time.Second
		s.MaxSession.Duration = 700 * time.Millisecond
	}})
	tp, nc := h.raw()
	defer nc.Close()
	cmd(t, tp, "EHLO client.test.example")
	cmd(t, tp, "MAIL FROM:<slow@customer.example>")
	cmd(t, tp, "RCPT TO:<support@example.com>")
	if code, _ := cmd(t, tp, "DATA"); code != 354 {
		t.Fatalf("DATA: %d", code)
	}
	start := time.Now()
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = nc.Write([]byte("x"))
		time.Sleep(50 * time.Millisecond) // the client's pace, not a wait for the server
		nc.SetReadDeadline(time.Now().Add(time.Millisecond))
		buf := make([]byte, 512)
		if n, err := nc.Read(buf); n > 0 || (err != nil && !isTimeout(err)) {
			break
		}
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("slow client still connected after %v", el)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestStoreFailureAnswers451(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	if err := h.st.Close(); err != nil {
		t.Fatal(err)
	}
	err := h.send("c@customer.example", []string{"support@example.com"}, message("c@customer.example", "support@example.com", "x", "fail-1@customer.example", "x"))
	code, enh := smtpCode(err)
	if code != 451 || enh != (smtp.EnhancedCode{4, 3, 0}) {
		t.Fatalf("store closed: %v, want 451 4.3.0", err)
	}
	if se := err.(*smtp.SMTPError); strings.Contains(strings.ToLower(se.Message), "sql") || strings.Contains(se.Message, "closed") {
		t.Errorf("451 text leaks the internal error: %q", se.Message)
	}
}

func TestSubmitErrorsAreTemporary(t *testing.T) {
	h := newHarness(t, harnessOpt{sub: func(Submitter) Submitter { return failing{} }})
	err := h.send("c@customer.example", []string{"support@example.com"}, message("c@customer.example", "support@example.com", "x", "fail-2@customer.example", "x"))
	if code, _ := smtpCode(err); code != 451 {
		t.Errorf("submit error: %v, want 451", err)
	}
	h2 := newHarness(t, harnessOpt{sub: func(Submitter) Submitter { return panicking{} }})
	err = h2.send("c@customer.example", []string{"support@example.com"}, message("c@customer.example", "support@example.com", "x", "fail-3@customer.example", "x"))
	if code, _ := smtpCode(err); code != 451 {
		t.Errorf("submit panic: %v, want 451", err)
	}
}

type failing struct{}

func (failing) Submit(context.Context, ingest.Raw) (ingest.Result, error) {
	return ingest.Result{}, errors.New("database is locked: secret internals")
}

type panicking struct{}

func (panicking) Submit(context.Context, ingest.Raw) (ingest.Result, error) {
	panic("boom")
}

func TestConnectionLimits(t *testing.T) {
	h := newHarness(t, harnessOpt{smtp: func(s *config.SMTPConfig) { s.MaxConnectionsPerIP = 2 }})
	_, a := h.raw()
	_, b := h.raw()
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := io.ReadAll(nc)
	if !strings.HasPrefix(string(line), "421 4.7.0 ") {
		t.Errorf("third connection got %q, want 421 4.7.0", line)
	}
	nc.Close()
	// Closing one frees its place.
	a.Close()
	waitFor(t, func() bool { return h.srv.conns.count() == 1 })
	_, c := h.raw()
	c.Close()
	b.Close()

	h2 := newHarness(t, harnessOpt{smtp: func(s *config.SMTPConfig) { s.MaxConnections = 1 }})
	_, x := h2.raw()
	defer x.Close()
	nc, err = net.Dial("tcp", h2.addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ = io.ReadAll(nc)
	if !strings.HasPrefix(string(line), "421 4.7.0 ") {
		t.Errorf("over the total limit got %q, want 421 4.7.0", line)
	}
}

// waitFor polls a condition the server reaches asynchronously (a
// closed connection being counted out).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRateLimit(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	h := newHarness(t, harnessOpt{
		smtp:    func(s *config.SMTPConfig) { s.RatePerMinute = 3 },
		options: func(o *Options) { o.Now = clock },
	})
	c := h.dial()
	defer c.Close()
	for i := range 3 {
		if err := sendOn(c, fmt.Sprintf("s%d@customer.example", i), []string{"support@example.com"}, message("s@customer.example", "support@example.com", "x", fmt.Sprintf("rate-%d@customer.example", i), "x")); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	err := c.Mail("s9@customer.example", nil)
	if code, enh := smtpCode(err); code != 450 || enh != (smtp.EnhancedCode{4, 7, 1}) {
		t.Errorf("4th message: %v, want 450 4.7.1", err)
	}
	// A new connection from the exhausted address is refused at once.
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := io.ReadAll(nc)
	nc.Close()
	if !strings.HasPrefix(string(line), "421 4.7.0 ") {
		t.Errorf("connection from a rate-limited address got %q", line)
	}
	// Twenty seconds later one token is back.
	advance(21 * time.Second)
	if err := sendOn(c, "s10@customer.example", []string{"support@example.com"}, message("s@customer.example", "support@example.com", "x", "rate-10@customer.example", "x")); err != nil {
		t.Errorf("after refill: %v", err)
	}
}

func TestRateLimiterBounded(t *testing.T) {
	now := time.Unix(0, 0)
	r := newRateLimiter(2, 100, func() time.Time { return now })
	for i := range 10_000 {
		r.allow(fmt.Sprint("k", i))
	}
	if n := r.size(); n > 100 {
		t.Errorf("%d buckets kept, limit 100", n)
	}
	if !r.allow("x") || !r.allow("x") || r.allow("x") {
		t.Error("burst of 2 not enforced")
	}
	now = now.Add(30 * time.Second)
	if !r.allow("x") || r.allow("x") {
		t.Error("refill of 1 per 30s not applied")
	}
}

func TestPerSenderRate(t *testing.T) {
	h := newHarness(t, harnessOpt{smtp: func(s *config.SMTPConfig) { s.RatePerMinute = 2 }})
	// The address limit is also 2, so use AUTH-less sessions from the
	// same sender and check that the sender limit answers 450 too.
	c := h.dial()
	defer c.Close()
	for i := range 2 {
		if err := sendOn(c, "loop@customer.example", []string{"support@example.com"}, message("loop@customer.example", "support@example.com", "x", fmt.Sprintf("loop-%d@customer.example", i), "x")); err != nil {
			t.Fatal(err)
		}
	}
	if code, _ := smtpCode(c.Mail("LOOP@customer.example", nil)); code != 450 {
		t.Errorf("third message from the same sender: %d, want 450", code)
	}
}

func TestGracefulShutdownFinishesData(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	idle := h.dial()
	defer idle.Close()

	c := h.dial()
	defer c.Close()
	if err := c.Mail("g@customer.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("support@example.com", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	msg := message("g@customer.example", "support@example.com", "x", "graceful-1@customer.example", "x")
	io.WriteString(w, msg[:40])
	// Make sure the server is inside DATA before shutting down.
	waitFor(t, func() bool {
		for _, tc := range h.srv.conns.snapshot() {
			tc.mu.Lock()
			in := tc.inData
			tc.mu.Unlock()
			if in {
				return true
			}
		}
		return false
	})
	h.cancel()
	// The idle session is ended; the one in DATA is not.
	waitFor(t, func() bool { return h.srv.conns.count() == 1 })
	if err := idle.Noop(); err == nil {
		t.Error("idle session still usable after shutdown")
	}
	io.WriteString(w, msg[40:])
	if err := w.Close(); err != nil {
		t.Fatalf("DATA during shutdown: %v, want 250", err)
	}
	if _, ok := h.rawByMessageID("graceful-1@customer.example"); !ok {
		t.Error("acknowledged message not stored")
	}
	select {
	case err := <-h.done:
		h.done <- err
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the in-flight message")
	}
	if n := h.srv.conns.count(); n != 0 {
		t.Errorf("%d connections left open", n)
	}
}

func TestListenAndServeReportsAddresses(t *testing.T) {
	h := newHarness(t, harnessOpt{tls: true})
	addrs := make(chan string, 2)
	cfg := h.cfg.SMTP
	cfg.Listen = "127.0.0.1:0"
	cfg.TLSListen = "127.0.0.1:0"
	srv, err := New(Options{Config: cfg, Addresses: h.p.Addresses(), Submitter: h.p, Logger: h.srv.log,
		OnListen: func(a net.Addr, implicit bool) { addrs <- fmt.Sprintf("%v %s", implicit, a) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx) }()
	got := map[bool]string{}
	for range 2 {
		a := <-addrs
		got[strings.HasPrefix(a, "true")] = strings.Fields(a)[1]
	}
	c, err := smtp.Dial(got[false])
	if err != nil {
		t.Fatal(err)
	}
	c.Hello("x.example")
	c.Close()
	tc, err := smtp.DialTLS(got[true], h.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	tc.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ListenAndServe: %v", err)
	}
}

func TestReceivedHeaderHelo(t *testing.T) {
	for _, c := range []struct {
		helo string
		ok   bool
	}{
		{"mail.example.com", true}, {"[192.0.2.1]", true}, {"[IPv6:2001:db8::1]", true},
		{"", false}, {"bad host", false}, {"x;y", false}, {"[not-an-ip]", false}, {"-a.example", false}, {"a..b", false},
	} {
		if got := validHelo(c.helo); got != c.ok {
			t.Errorf("validHelo(%q) = %v", c.helo, got)
		}
	}
}

func TestClientKey(t *testing.T) {
	k1, ip1 := clientKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3::4"), Port: 25})
	k2, _ := clientKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::9"), Port: 25})
	if k1 != k2 || ip1 != "2001:db8:1:2:3::4" {
		t.Errorf("IPv6 /64 keys: %q %q (ip %q)", k1, k2, ip1)
	}
	k, ip := clientKey(&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 25})
	if k != "192.0.2.7" || ip != "192.0.2.7" {
		t.Errorf("mapped IPv4: %q %q", k, ip)
	}
}

// TestBufferedBytesBudget: a message costs memoryCost times its size
// against Options.MaxBufferedBytes; one without SIZE that does not fit
// gets 452 4.3.1, one with SIZE waits until it fits and is accepted.
func TestBufferedBytesBudget(t *testing.T) {
	h := newHarness(t, harnessOpt{
		smtp: func(s *config.SMTPConfig) { s.MaxMessageBytes = 20000 },
		// Raised to one maximal message's cost: 6 × (20000+4096).
		options: func(o *Options) { o.MaxBufferedBytes = 1; o.MemoryWait = 20 * time.Second },
	})
	// One session holds 17,000 bytes in the middle of its DATA.
	tp, nc := h.raw()
	defer nc.Close()
	cmd(t, tp, "EHLO client.test.example")
	cmd(t, tp, "MAIL FROM:<a@customer.example>")
	cmd(t, tp, "RCPT TO:<support@example.com>")
	if code, _ := cmd(t, tp, "DATA"); code != 354 {
		t.Fatalf("DATA: %d", code)
	}
	msg := message("a@customer.example", "support@example.com", "x", "budget-1@customer.example", strings.Repeat(strings.Repeat("y", 98)+"\r\n", 175))
	if _, err := io.WriteString(nc, msg[:17000]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return h.srv.buffered.inUse() >= 16000*memoryCost })
	// Another message without SIZE does not fit: temporary refusal.
	second := message("b@customer.example", "support@example.com", "x", "budget-2@customer.example", strings.Repeat(strings.Repeat("z", 98)+"\r\n", 80))
	err := h.send("b@customer.example", []string{"support@example.com"}, second)
	if code, enh := smtpCode(err); code != 452 || enh != (smtp.EnhancedCode{4, 3, 1}) {
		t.Errorf("over the memory budget: %v, want 452 4.3.1", err)
	}
	// With SIZE it waits for room, holding nothing, and gets in once
	// the first message is done.
	third := strings.Replace(second, "budget-2@", "budget-3@", 1)
	done := make(chan error, 1)
	go func() {
		c, err := smtp.Dial(h.addr)
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		if err := c.Mail("c@customer.example", &smtp.MailOptions{Size: int64(len(third))}); err != nil {
			done <- err
			return
		}
		if err := c.Rcpt("support@example.com", nil); err != nil {
			done <- err
			return
		}
		w, err := c.Data()
		if err == nil {
			io.WriteString(w, third)
			err = w.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("message with SIZE answered while the budget was full: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	io.WriteString(nc, msg[17000:]+".\r\n")
	if code, _, err := tp.ReadResponse(250); err != nil {
		t.Fatalf("first message: %d %v", code, err)
	}
	if err := <-done; err != nil {
		t.Errorf("message with SIZE after the wait: %v", err)
	}
	if _, ok := h.rawByMessageID("budget-3@customer.example"); !ok {
		t.Error("message with SIZE not stored")
	}
	waitFor(t, func() bool { return h.srv.buffered.inUse() == 0 })
}

func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir)
	l, err := newCertLoader(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := l.GetCertificate(nil)
	// A renewal writes new files; the loader notices on its next check.
	other := t.TempDir()
	c2, k2, _ := writeCert(t, other)
	for _, p := range [][2]string{{c2, certFile}, {k2, keyFile}} {
		b, _ := os.ReadFile(p[0])
		os.WriteFile(p[1], b, 0o600)
	}
	l.mu.Lock()
	l.checked = time.Time{}
	l.mu.Unlock()
	second, _ := l.GetCertificate(nil)
	if bytes.Equal(first.Certificate[0], second.Certificate[0]) {
		t.Error("certificate not reloaded after the files changed")
	}
	// A broken renewal keeps the working certificate.
	os.WriteFile(certFile, []byte("garbage"), 0o600)
	l.mu.Lock()
	l.checked = time.Time{}
	l.mu.Unlock()
	third, _ := l.GetCertificate(nil)
	if third == nil || !bytes.Equal(third.Certificate[0], second.Certificate[0]) {
		t.Error("broken renewal replaced the certificate")
	}
}

func TestMetrics(t *testing.T) {
	m := metrics.New()
	h := newHarness(t, harnessOpt{options: func(o *Options) { o.Metrics = m }})
	c := h.dial()
	defer c.Close()
	c.Mail("x@customer.example", nil)
	c.Rcpt("nobody@example.com", nil)
	got := counters(t, m)
	if got["deskmail_smtp_sessions_total"] != 1 || got["deskmail_smtp_rejections_total/unknown_recipient"] != 1 {
		t.Errorf("metrics: sessions %v, unknown_recipient %v", got["deskmail_smtp_sessions_total"], got["deskmail_smtp_rejections_total/unknown_recipient"])
	}
}

func TestBDAT(t *testing.T) {
	h := newHarness(t, harnessOpt{smtp: func(s *config.SMTPConfig) { s.MaxLineLength = 1000 }})
	tp, nc := h.raw()
	defer nc.Close()
	cmd(t, tp, "EHLO client.test.example")
	cmd(t, tp, "MAIL FROM:<chunk@customer.example>")
	cmd(t, tp, "RCPT TO:<support@example.com>")
	msg := message("chunk@customer.example", "support@example.com", "chunks", "bdat-1@customer.example", "in two chunks")
	half := len(msg) / 2
	fmt.Fprintf(nc, "BDAT %d\r\n%s", half, msg[:half])
	if code, _, err := tp.ReadResponse(250); err != nil {
		t.Fatalf("first chunk: %d %v", code, err)
	}
	fmt.Fprintf(nc, "BDAT %d LAST\r\n%s", len(msg)-half, msg[half:])
	if code, _, err := tp.ReadResponse(250); err != nil {
		t.Fatalf("last chunk: %d %v", code, err)
	}
	raw, ok := h.rawByMessageID("bdat-1@customer.example")
	if !ok || !strings.HasSuffix(raw.data, msg) {
		t.Fatalf("BDAT message not stored as sent")
	}
	// go-smtp reads BDAT chunks without its line limit; ours applies
	// (or go-smtp's, when its read-ahead of the BDAT command line took
	// in the chunk too: then 500 5.4.0 and the connection closes).
	cmd(t, tp, "MAIL FROM:<chunk@customer.example>")
	cmd(t, tp, "RCPT TO:<support@example.com>")
	long := message("chunk@customer.example", "support@example.com", "long", "bdat-2@customer.example", strings.Repeat("x", 3000))
	fmt.Fprintf(nc, "BDAT %d LAST\r\n%s", len(long), long)
	if code, msg, _ := tp.ReadResponse(0); !(code == 554 && strings.HasPrefix(msg, "5.6.0")) && !(code == 500 && strings.HasPrefix(msg, "5.4.0")) {
		t.Errorf("overlong line in BDAT: %d %s, want 554 5.6.0 (or 500 5.4.0)", code, msg)
	}
	if _, ok := h.rawByMessageID("bdat-2@customer.example"); ok {
		t.Error("message with an overlong line stored")
	}
}

// TestAuthProvesAgent checks the point of AUTH for agents: a command in
// a mail from an agent is honoured when the session authenticated as
// that agent, and ignored when the same mail arrives unauthenticated
// (a forged From).
func TestAuthProvesAgent(t *testing.T) {
	h := newHarness(t, harnessOpt{tls: true, auth: true})
	if err := h.send("carol@customer.example", []string{"support@example.com"},
		message("carol@customer.example", "support@example.com", "Broken login", "cust-1@customer.example", "I cannot log in.")); err != nil {
		t.Fatal(err)
	}
	status := func() int {
		var s int
		if err := h.db().QueryRow(`SELECT t.status FROM tickets t JOIN conversations c ON c.ticket_id = t.id WHERE c.message_id = ?`, "cust-1@customer.example").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	reply := func(id string) string {
		return "From: Alice <alice@agents.example>\r\nTo: support@example.com\r\nSubject: Re: Broken login\r\n" +
			"Message-ID: <" + id + ">\r\nIn-Reply-To: <cust-1@customer.example>\r\nReferences: <cust-1@customer.example>\r\n" +
			"Date: Mon, 02 Feb 2026 11:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n#status resolved\r\nFixed on our side.\r\n"
	}
	// Unauthenticated: the From says Alice, nothing proves it.
	if err := h.send("alice@agents.example", []string{"support@example.com"}, reply("forged-1@agents.example")); err != nil {
		t.Fatal(err)
	}
	if s := status(); s == 4 {
		t.Fatal("a command from an unproven agent address was applied")
	}
	// Authenticated as Alice over TLS: the command applies.
	c := h.dialTLS()
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "alice", "alice-pw")); err != nil {
		t.Fatal(err)
	}
	if err := sendOn(c, "alice@agents.example", []string{"support@example.com"}, reply("agent-1@agents.example")); err != nil {
		t.Fatal(err)
	}
	if s := status(); s != 4 {
		t.Errorf("status after the authenticated agent's #status resolved = %d, want 4", s)
	}
}

// TestEmptyMessageRefused: an empty DATA and BDAT 0 LAST get 554 5.6.0
// and leave nothing in the store (fixtures/smtp/empty-data.txt replays
// the same over one pipelined write).
func TestEmptyMessageRefused(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	tp, nc := h.raw()
	defer nc.Close()
	cmd(t, tp, "EHLO client.test.example")
	for _, data := range []string{"DATA\r\n.\r\n", "DATA\r\n\r\n\t\r\n.\r\n", "BDAT 0 LAST\r\n"} {
		cmd(t, tp, "MAIL FROM:<void@customer.example>")
		cmd(t, tp, "RCPT TO:<support@example.com>")
		fmt.Fprint(nc, data)
		if strings.HasPrefix(data, "DATA") {
			if code, _, err := tp.ReadResponse(354); err != nil {
				t.Fatalf("%q: %d %v", data, code, err)
			}
		}
		if code, msg, _ := tp.ReadResponse(0); code != 554 || !strings.HasPrefix(msg, "5.6.0") {
			t.Errorf("%q: %d %s, want 554 5.6.0", data, code, msg)
		}
	}
	var n int
	if err := h.db().QueryRow(`SELECT COUNT(*) FROM raw_messages`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d raw messages stored (%v)", n, err)
	}
}
