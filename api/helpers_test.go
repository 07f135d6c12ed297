package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/api"
	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/outbound"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// The tests run the API over a real pipeline, a real SQLite file, the
// real outbox and, where mail must leave, a go-smtp sink on loopback
// as the relay.

const testConfig = `
threading:
  secret: api-test-secret
  hostname: deskmail.test
outbound:
  relay: %s
  tls: none
custom_fields:
  - {name: order_id}
  - {name: plan, type: choice, choices: [Free, Pro]}
statuses:
  - {code: 6, name: Waiting on engineering, category: pending}
  - {code: 7, name: Archived, category: closed}
pipelines:
  - name: default
    statuses: [2, 3, 4, 5, 6, 7]
  - name: sales
    statuses: [2, 3, 4, 5]
agents:
  - {email: alice@agents.test, name: Alice Martin}
  - {email: root@agents.test, name: Root Admin, role: admin}
  - {email: carol@agents.test, name: Carol Sales, group: sales}
channels:
  - name: support
    addresses: [support@acme.test]
    display_name: Support ACME
  - name: billing
    addresses: [billing@acme.test]
    group: billing
  - name: sales
    addresses: [sales@acme.test]
    group: sales
    pipeline: sales
`

type harness struct {
	t      testing.TB
	ctx    context.Context
	cfg    *config.Config
	st     *store.Store
	p      *ingest.Pipeline
	ob     *outbound.Outbox
	srv    *httptest.Server
	url    string
	keys   map[string]string // agent address → key
	worker *outbound.Worker
	sink   *sink
	seq    int
	// spec validates every exchange against openapi.yaml.
	spec *schemaChecker
}

type hopts struct {
	relay     bool
	rateLimit int
	// dbPath reuses a database (default: a new one in t.TempDir()).
	dbPath string
	// guard, when set, is the failed-login limiter; trustLoopback
	// makes X-Forwarded-For from loopback name the client.
	guard         *api.AuthGuard
	trustLoopback bool
	// log receives the API's log (default: discarded).
	log io.Writer
	// now is the API's clock (default time.Now).
	now func() time.Time
}

func newHarness(t testing.TB, o hopts) *harness {
	t.Helper()
	h := &harness{t: t, ctx: context.Background(), keys: map[string]string{}, spec: newSchemaChecker(t)}
	relay := `""`
	if o.relay {
		h.sink = newSink(t)
		relay = h.sink.addr
	}
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(testConfig, relay)))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	h.cfg = cfg
	if o.dbPath == "" {
		o.dbPath = filepath.Join(t.TempDir(), "deskmail.db")
	}
	h.st, err = store.Open(h.ctx, o.dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.st.Close() })
	signer := threading.NewSigner([]byte("api-test-secret"), 0)
	h.ob, err = outbound.New(cfg, signer)
	if err != nil {
		t.Fatal(err)
	}
	env := ingest.Env{Config: cfg, Signer: signer, Notify: func(tx *store.Tx, n ingest.Notice) error {
		if n.NoMail {
			return nil
		}
		return h.ob.Enqueue(tx, outbound.Event{Kind: outbound.EventKind(n.Event), Ticket: n.Ticket, Conversation: n.Conversation,
			Channel: n.Channel, InReplyTo: n.InReplyTo, Quiet: n.Quiet, Agent: n.Agent, SuppressReason: n.Suppress, ErrorText: n.ErrorText, NotifyAlso: n.NotifyAlso})
	}}
	h.p, err = ingest.NewPipeline(h.ctx, h.st, env)
	if err != nil {
		t.Fatal(err)
	}
	err = h.st.Write(h.ctx, func(tx *store.Tx) error {
		for _, a := range cfg.Agents {
			ag, err := tx.AgentByEmail(a.Email)
			if err != nil {
				return err
			}
			key := "key-" + strings.Split(a.Email, "@")[0] + "-0123456789abcdef"
			h.keys[a.Email] = key
			if _, err := tx.AgentByAPIKey(key); err == nil {
				continue
			}
			if err := tx.AddAPIKey(ag.ID, key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.log == nil {
		o.log = io.Discard
	}
	opts := api.Options{Store: h.st, Pipeline: h.p, Config: cfg, RateLimit: o.rateLimit,
		Logger: slog.New(slog.NewTextHandler(o.log, nil)), Guard: o.guard, Now: o.now}
	if o.trustLoopback {
		opts.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	if o.relay {
		h.worker = h.ob.Worker(h.st, slog.New(slog.DiscardHandler))
		opts.Kick = h.worker.Kick
		ctx, cancel := context.WithCancel(h.ctx)
		done := make(chan error, 1)
		go func() { done <- h.worker.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		})
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = -1
	}
	handler, err := api.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewServer(handler)
	t.Cleanup(h.srv.Close)
	h.url = h.srv.URL
	return h
}

// mail ingests a customer mail and returns the ticket id.
func (h *harness) mail(from, to, subject, msgID, body string, refs ...string) int64 {
	h.t.Helper()
	h.seq++
	var b strings.Builder
	fmt.Fprintf(&b, "From: Customer <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s>\r\n", from, to, subject, msgID)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Date(2026, 3, 2, 9, h.seq, 0, 0, time.UTC).Format(time.RFC1123Z))
	if len(refs) > 0 {
		fmt.Fprintf(&b, "In-Reply-To: <%s>\r\nReferences: <%s>\r\n", refs[len(refs)-1], strings.Join(refs, "> <"))
	}
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", body)
	res, err := h.p.Ingest(h.ctx, []ingest.Raw{{Data: []byte(b.String()), Source: ingest.SourcePipe, Name: msgID}})
	if err != nil || res[0].TicketID == nil {
		h.t.Fatalf("ingest %s: %v %+v", msgID, err, res)
	}
	if h.worker != nil {
		h.worker.Kick()
	}
	return *res[0].TicketID
}

type resp struct {
	code int
	hdr  http.Header
	body []byte
}

func (r resp) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d %s: %v", r.code, r.body, err)
	}
}

func (r resp) obj(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.json(t, &m)
	return m
}

func (r resp) list(t testing.TB) []map[string]any {
	t.Helper()
	var m []map[string]any
	r.json(t, &m)
	return m
}

// do sends a request as agent (an address, "" for no credentials) with
// a JSON body (v: nil, a string sent as is, or a value to encode).
func (h *harness) do(agent, method, path string, v any) resp {
	h.t.Helper()
	var body io.Reader
	ct := ""
	switch b := v.(type) {
	case nil:
	case string:
		body, ct = strings.NewReader(b), "application/json"
	case []byte:
		body, ct = bytes.NewReader(b), "application/json"
	default:
		data, err := json.Marshal(v)
		if err != nil {
			h.t.Fatal(err)
		}
		body, ct = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequest(method, h.url+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if agent != "" {
		req.SetBasicAuth(h.keys[agent], "X")
	}
	return h.send(req)
}

// send makes a request and checks the exchange against openapi.yaml
// (schemaChecker): every answer of every API test is validated.
func (h *harness) send(req *http.Request) resp {
	h.t.Helper()
	var sent []byte
	if req.Body != nil {
		var err error
		if sent, err = io.ReadAll(req.Body); err != nil {
			h.t.Fatal(err)
		}
		req.Body = io.NopCloser(bytes.NewReader(sent))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	r := resp{code: res.StatusCode, hdr: res.Header, body: b}
	h.spec.check(h.t, req, sent, r)
	return r
}

// multipartBody builds a multipart/form-data body.
func multipartBody(t testing.TB, fields [][2]string, files map[string][]byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		mw.WriteField(f[0], f[1])
	}
	for name, data := range files {
		fw, err := mw.CreateFormFile("attachments[]", name)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

func basic(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":X"))
}

func want(t testing.TB, r resp, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d: %s", r.code, code, r.body)
	}
}

// wantFieldError checks Freshdesk's validation body.
func wantFieldError(t testing.TB, r resp, field, code string) {
	t.Helper()
	want(t, r, http.StatusBadRequest)
	var b struct {
		Description string `json:"description"`
		Errors      []struct{ Field, Message, Code string }
	}
	r.json(t, &b)
	if b.Description != "Validation failed" {
		t.Fatalf("description %q: %s", b.Description, r.body)
	}
	for _, e := range b.Errors {
		if e.Field == field && e.Code == code && e.Message != "" {
			return
		}
	}
	t.Fatalf("no %s error on %s: %s", code, field, r.body)
}

// sink is a go-smtp server on loopback recording what it receives.
type sink struct {
	addr string
	mu   sync.Mutex
	msgs []sunk
	got  chan struct{}
}

type sunk struct {
	from string
	to   []string
	data []byte
}

func newSink(t testing.TB) *sink {
	t.Helper()
	s := &sink{got: make(chan struct{}, 1000)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

// waitFor returns the first message received that matches (or fails
// after timeout).
func (s *sink) waitFor(t testing.TB, timeout time.Duration, match func(sunk) bool) sunk {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		got := append([]sunk(nil), s.msgs...)
		s.mu.Unlock()
		for _, m := range got {
			if match(m) {
				return m
			}
		}
		select {
		case <-s.got:
		case <-deadline:
			t.Fatalf("sink: no matching message among %d", len(got))
		}
	}
}

func (m sunk) sentTo(addr string) bool {
	for _, a := range m.to {
		if strings.EqualFold(a, addr) {
			return true
		}
	}
	return false
}

type sinkSession struct {
	s    *sink
	from string
	to   []string
}

func (x *sinkSession) Reset()        { x.from, x.to = "", nil }
func (x *sinkSession) Logout() error { return nil }
func (x *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}
func (x *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}
func (x *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, sunk{from: x.from, to: x.to, data: b})
	x.s.mu.Unlock()
	x.s.got <- struct{}{}
	return nil
}

// outbox lists the queued and sent mail.
func (h *harness) outbox() []store.OutboxMail {
	h.t.Helper()
	var out []store.OutboxMail
	err := h.st.Read(h.ctx, func(tx *store.Tx) error {
		var err error
		out, err = tx.ListOutbox(store.OutboxFilter{})
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) history(id int64) []store.History {
	h.t.Helper()
	var out []store.History
	err := h.st.Read(h.ctx, func(tx *store.Tx) error {
		var err error
		out, err = tx.TicketHistory(id)
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}
