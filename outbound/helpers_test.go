package outbound

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// sink is a real SMTP server (go-smtp) on loopback that records what
// it receives. fail, when set, may refuse a stage ("mail", "rcpt",
// "data") of a transaction.
type sink struct {
	t    testing.TB
	srv  *smtp.Server
	addr string

	mu   sync.Mutex
	msgs []sunk
	fail func(stage, arg string, data []byte) error
	got  chan sunk
	// users, when set, are the only AUTH PLAIN accounts accepted (and
	// AUTH is then required).
	users map[string]string
}

type sunk struct {
	from  string
	to    []string
	data  []byte
	msgID string
	user  string // the AUTH username of the session
}

func newSink(t testing.TB) *sink {
	t.Helper()
	s := &sink{t: t, got: make(chan sunk, 20000)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	s.start(l)
	return s
}

// sinkAt starts a sink on an address that was free (the fault test
// brings "the relay" up where it was down).
func sinkAt(t testing.TB, s *sink, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.start(l)
}

func (s *sink) start(l net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = true
	srv.MaxRecipients = 100
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	s.srv = srv
	go srv.Serve(l)
	s.t.Cleanup(func() { srv.Close() })
}

func (s *sink) check(stage, arg string, data []byte) error {
	s.mu.Lock()
	f := s.fail
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(stage, arg, data)
}

func (s *sink) setFail(f func(stage, arg string, data []byte) error) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

func (s *sink) all() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.msgs...)
}

// wait returns once n messages in total have been received.
func (s *sink) wait(n int, timeout time.Duration) []sunk {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		if got := s.all(); len(got) >= n {
			return got
		}
		select {
		case <-s.got:
		case <-deadline:
			s.t.Fatalf("sink: received %d messages, want %d", len(s.all()), n)
		}
	}
}

type sinkSession struct {
	s    *sink
	from string
	to   []string
	user string
}

func (x *sinkSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (x *sinkSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		x.s.mu.Lock()
		want, ok := x.s.users[username]
		x.s.mu.Unlock()
		if !ok || want != password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		x.user = username
		return nil
	}), nil
}

func (x *sinkSession) Reset()        { x.from, x.to = "", nil }
func (x *sinkSession) Logout() error { return nil }
func (x *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	x.s.mu.Lock()
	needAuth := x.s.users != nil
	x.s.mu.Unlock()
	if needAuth && x.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	if err := x.s.check("mail", from, nil); err != nil {
		return err
	}
	x.from = from
	return nil
}
func (x *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := x.s.check("rcpt", to, nil); err != nil {
		return err
	}
	x.to = append(x.to, to)
	return nil
}
func (x *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	id := headerValue(b, "Message-Id")
	if err := x.s.check("data", id, b); err != nil {
		return err
	}
	m := sunk{from: x.from, to: x.to, data: b, msgID: strings.Trim(id, "<>"), user: x.user}
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, m)
	x.s.mu.Unlock()
	x.s.got <- m
	return nil
}

// headerValue finds a header field cheaply (unfolded first line only).
func headerValue(raw []byte, name string) string {
	for _, line := range strings.Split(string(raw), "\r\n") {
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

const testConfig = `
threading:
  secret: test-secret
  hostname: deskmail.test
outbound:
  relay: %s
  tls: none
agents:
  - {email: alice@agents.test, name: Alice Martin}
  - {email: bob@agents.test, name: Bob Durand}
channels:
  - name: acme
    addresses: [support@acme.test, help@acme.test]
    display_name: Support ACME
    language: en
  - name: acmefr
    addresses: [support@acme.fr]
    display_name: Support ACME France
    language: fr
  - name: acmede
    addresses: [support@acme.de]
    display_name: ACME Kundendienst
    language: de
  - name: acmees
    addresses: [soporte@acme.es]
    display_name: Soporte ACME
    language: es
%s
`

// env is a real store, configuration and Outbox.
type env struct {
	t      testing.TB
	cfg    *config.Config
	st     *store.Store
	o      *Outbox
	signer *threading.Signer
	chIDs  map[string]int64
}

func newEnv(t testing.TB, relay string, extra string) *env {
	t.Helper()
	if relay == "" {
		relay = `""`
	}
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(testConfig, relay, extra)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "deskmail.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, cfg: cfg, st: st, signer: threading.NewSigner([]byte("test-secret"), 0), chIDs: map[string]int64{}}
	e.o, err = New(cfg, e.signer)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Write(context.Background(), func(tx *store.Tx) error {
		for _, s := range cfg.AllStatuses() {
			if err := tx.PutStatus(store.Status{Code: s.Code, Name: s.Name, Category: s.Category}); err != nil {
				return err
			}
		}
		for _, ch := range cfg.Channels {
			id, err := tx.PutChannel(store.Channel{Name: ch.Name, Address: ch.Addresses[0], Language: ch.Language})
			if err != nil {
				return err
			}
			e.chIDs[ch.Name] = id
		}
		for _, a := range cfg.Agents {
			if _, err := tx.PutAgent(store.Agent{Email: a.Email, Name: a.Name, Role: a.Role, Active: true}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// fastWorker is a worker with test-sized backoffs.
func (e *env) fastWorker() *Worker {
	w := e.o.Worker(e.st, slog.New(slog.DiscardHandler))
	w.minBackoff, w.maxBackoff = 5*time.Millisecond, 40*time.Millisecond
	w.attemptTimeout = 5 * time.Second
	w.poll = 50 * time.Millisecond
	return w
}

// run starts w and stops it at the end of the test.
func run(t testing.TB, w *Worker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

type incoming struct {
	channel, from, name, subject, msgID, body string
	at                                        time.Time
}

// newTicket stores a ticket created by an incoming mail, as the
// pipeline would, and returns the ticket (reloaded) and its message.
func (e *env) newTicket(in incoming) (*store.Ticket, *store.Conversation) {
	e.t.Helper()
	if in.channel == "" {
		in.channel = "acme"
	}
	var tk *store.Ticket
	var conv *store.Conversation
	err := e.st.Write(context.Background(), func(tx *store.Tx) error {
		c, _, err := tx.EnsureContact(in.from, in.name)
		if err != nil {
			return err
		}
		ch := e.chIDs[in.channel]
		t := &store.Ticket{Subject: in.subject, Status: 2, RequesterID: c.ID, ChannelID: &ch}
		if err := tx.CreateTicket(t); err != nil {
			return err
		}
		conv, err = e.addIncoming(tx, t.ID, c.ID, in)
		if err != nil {
			return err
		}
		tk, err = tx.Ticket(t.ID)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return tk, conv
}

func (e *env) addIncoming(tx *store.Tx, ticketID, contactID int64, in incoming) (*store.Conversation, error) {
	conv := &store.Conversation{TicketID: ticketID, Incoming: true, ContactID: &contactID, FromEmail: in.from, FromName: in.name,
		Subject: in.subject, BodyText: in.body, ReplyText: in.body, MessageID: in.msgID, CreatedAt: in.at}
	if err := tx.AddConversation(conv); err != nil {
		return nil, err
	}
	ch := e.chIDs[in.channel]
	if in.channel == "" {
		ch = e.chIDs["acme"]
	}
	return conv, tx.AddMessageID(store.MessageRef{MessageID: in.msgID, Direction: "in", ChannelID: &ch, TicketID: &ticketID, ConversationID: &conv.ID})
}

// agentReply stores an agent's public reply (with files) on a ticket.
func (e *env) agentReply(tk *store.Ticket, agentEmail, text string, files []store.Attachment, at time.Time) (*store.Agent, *store.Conversation) {
	e.t.Helper()
	var a *store.Agent
	var conv *store.Conversation
	err := e.st.Write(context.Background(), func(tx *store.Tx) error {
		var err error
		a, err = tx.AgentByEmail(agentEmail)
		if err != nil {
			return err
		}
		conv = &store.Conversation{TicketID: tk.ID, AgentID: &a.ID, FromEmail: a.Email, FromName: a.Name, Subject: tk.Subject,
			BodyText: text, ReplyText: text, Files: files, CreatedAt: at}
		return tx.AddConversation(conv)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return a, conv
}

func (e *env) enqueue(ev Event) {
	e.t.Helper()
	if err := e.st.Write(context.Background(), func(tx *store.Tx) error { return e.o.Enqueue(tx, ev) }); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) outbox(f store.OutboxFilter) []store.OutboxMail {
	e.t.Helper()
	var out []store.OutboxMail
	err := e.st.Read(context.Background(), func(tx *store.Tx) error {
		var err error
		out, err = tx.ListOutbox(f)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// waitState polls the store until every row satisfies done (the
// worker records results asynchronously; there is no event to wait on
// besides the database itself).
func (e *env) waitState(timeout time.Duration, done func([]store.OutboxMail) bool) []store.OutboxMail {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rows := e.outbox(store.OutboxFilter{WithRaw: true})
		if done(rows) {
			return rows
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("outbox did not reach the expected state: %s", summarize(rows))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func allFinal(rows []store.OutboxMail) bool {
	for _, r := range rows {
		if r.State == store.OutboxQueued {
			return false
		}
	}
	return true
}

func summarize(rows []store.OutboxMail) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "\n  #%d %s %s to %v attempts=%d err=%q", r.ID, r.Kind, r.State, r.RcptTo, r.Attempts, r.LastError)
	}
	return b.String()
}

// parsed is a received or stored mail, parsed back with go-message.
type parsed struct {
	h     mail.Header
	text  string
	html  string
	files map[string][]byte
}

func parse(t testing.TB, raw []byte) parsed {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	p := parsed{h: r.Header, files: map[string][]byte{}}
	for {
		part, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("parse part: %v", err)
		}
		b, _ := io.ReadAll(part.Body)
		if _, ok := part.Header.(*mail.InlineHeader); ok {
			b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
		}
		switch h := part.Header.(type) {
		case *mail.InlineHeader:
			ct, _, _ := h.ContentType()
			if ct == "text/html" {
				p.html = string(b)
			} else {
				p.text = string(b)
			}
		case *mail.AttachmentHeader:
			name, _ := h.Filename()
			p.files[name] = b
		}
	}
	return p
}

func (p parsed) get(k string) string { return p.h.Get(k) }

func (p parsed) subject(t testing.TB) string {
	s, err := p.h.Subject()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p parsed) addrs(t testing.TB, k string) []*mail.Address {
	a, err := p.h.AddressList(k)
	if err != nil {
		t.Fatalf("%s: %v", k, err)
	}
	return a
}

func (p parsed) ids(t testing.TB, k string) []string {
	l, err := p.h.MsgIDList(k)
	if err != nil {
		t.Fatalf("%s: %v", k, err)
	}
	return l
}
