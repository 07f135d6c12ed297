package console_test

import (
	"context"
	"fmt"
	"github.com/deskmail/deskmail/metrics"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/api"
	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/console"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/outbound"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// The tests run the console over a real pipeline, a real SQLite file
// and the real outbox (mail stays queued: no relay), with a net/http
// client and a cookie jar as the browser.

const testConfig = `
threading:
  secret: console-test-secret
  hostname: deskmail.test
agents:
  - {email: root@agents.test, name: Root Admin, role: admin}
  - {email: alice@agents.test, name: Alice Martin}
  - {email: carol@agents.test, name: Carol Sales, group: sales}
channels:
  - name: support
    addresses: [support@acme.test]
  - name: billing
    addresses: [billing@acme.test]
    group: billing
  - name: sales
    addresses: [sales@acme.test]
    group: sales
  - name: mailbox
    addresses: [help@acme.test]
    imap: {host: 127.0.0.1, port: 1, tls: none, username: help, password: secret}
`

// cheap are argon2id parameters that cost nothing: the tests check the
// rules, not the hash's cost.
var cheap = console.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1}

// password is every test agent's password.
const password = "correct horse battery"

type harness struct {
	t       *testing.T
	ctx     context.Context
	cfg     *config.Config
	st      *store.Store
	p       *ingest.Pipeline
	srv     *httptest.Server
	guard   *api.AuthGuard
	metrics *metrics.Metrics
	clock   *clock
	seq     int
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	at time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.at = c.at.Add(d)
	c.mu.Unlock()
}

type hopts struct {
	timeout       time.Duration
	tls           bool
	trustLoopback bool
}

func newHarness(t *testing.T, o hopts) *harness {
	t.Helper()
	h := &harness{t: t, ctx: context.Background(), clock: &clock{at: time.Now()}}
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	h.cfg = cfg
	h.st, err = store.Open(h.ctx, filepath.Join(t.TempDir(), "deskmail.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.st.Close() })
	signer := threading.NewSigner([]byte("console-test-secret"), 0)
	ob, err := outbound.New(cfg, signer)
	if err != nil {
		t.Fatal(err)
	}
	env := ingest.Env{Config: cfg, Signer: signer, Notify: func(tx *store.Tx, n ingest.Notice) error {
		return ob.Enqueue(tx, outbound.Event{Kind: outbound.EventKind(n.Event), Ticket: n.Ticket, Conversation: n.Conversation,
			Channel: n.Channel, InReplyTo: n.InReplyTo, Quiet: n.Quiet, Agent: n.Agent, SuppressReason: n.Suppress, ErrorText: n.ErrorText})
	}}
	h.p, err = ingest.NewPipeline(h.ctx, h.st, env)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := console.HashPasswordWith(password, cheap)
	if err != nil {
		t.Fatal(err)
	}
	err = h.st.Write(h.ctx, func(tx *store.Tx) error {
		for _, a := range cfg.Agents {
			if _, err := tx.SetAgentPassword(a.Email, hash); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.guard = api.NewAuthGuard(h.clock.now, time.Millisecond)
	h.metrics = metrics.New()
	opts := console.Options{Store: h.st, Pipeline: h.p, Config: cfg, Guard: h.guard, SessionTimeout: o.timeout, Now: h.clock.now,
		PasswordParams: cheap, Metrics: h.metrics}
	if o.trustLoopback {
		proxies, _ := config.HTTPConfig{TrustedProxies: []string{"127.0.0.0/8"}}.TrustedProxyPrefixes()
		opts.TrustedProxies = proxies
	}
	c, err := console.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if o.tls {
		h.srv = httptest.NewTLSServer(c)
	} else {
		h.srv = httptest.NewServer(c)
	}
	t.Cleanup(h.srv.Close)
	return h
}

// mail ingests a customer mail (raw headers and body after the
// common ones) to a support address and returns the ticket id.
func (h *harness) mail(from, to, subject, extra string) int64 {
	h.t.Helper()
	h.seq++
	msg := fmt.Sprintf("From: Customer <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <m%d-%d@customer.test>\r\nDate: %s\r\n%s",
		from, to, subject, h.seq, time.Now().UnixNano(), time.Now().Format(time.RFC1123Z), extra)
	if !strings.Contains(extra, "\r\n\r\n") {
		msg += "Content-Type: text/plain; charset=utf-8\r\n\r\nHello, it is broken.\r\n"
	}
	res, err := h.p.Ingest(h.ctx, []ingest.Raw{{Data: []byte(msg), Source: ingest.SourcePipe}})
	if err != nil || res[0].TicketID == nil {
		h.t.Fatalf("ingest: %v %+v", err, res)
	}
	return *res[0].TicketID
}

// browser is a client with its own cookie jar, not following
// redirects (the tests look at them).
type browser struct {
	h    *harness
	c    *http.Client
	lang string
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: h.srv.Client().Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{h: h, c: c}
}

// response is a read response.
type response struct {
	code int
	hdr  http.Header
	body string
}

func (b *browser) do(req *http.Request) response {
	b.h.t.Helper()
	if b.lang != "" {
		req.Header.Set("Accept-Language", b.lang)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, hdr: resp.Header, body: string(body)}
}

func (b *browser) get(path string) response {
	b.h.t.Helper()
	req, _ := http.NewRequest("GET", b.h.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) response {
	b.h.t.Helper()
	req, _ := http.NewRequest("POST", b.h.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of a page.
func csrf(t *testing.T, body string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field in page:\n%s", body)
	}
	return m[1]
}

// signIn signs in as email with password and returns the response of
// the POST.
func (b *browser) signIn(email, pw string) response {
	b.h.t.Helper()
	page := b.get("/login")
	return b.post("/login", url.Values{"csrf": {csrf(b.h.t, page.body)}, "email": {email}, "password": {pw}})
}

// mustSignIn signs in and fails the test unless it worked.
func (b *browser) mustSignIn(email string) {
	b.h.t.Helper()
	r := b.signIn(email, password)
	if r.code != http.StatusSeeOther || r.hdr.Get("Location") != "/tickets" {
		b.h.t.Fatalf("sign-in as %s: %d %s\n%s", email, r.code, r.hdr.Get("Location"), r.body)
	}
}

// sessionCookie is the browser's session cookie value ("" when none).
func (b *browser) sessionCookie() string {
	u, _ := url.Parse(b.h.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "deskmail_session" {
			return c.Value
		}
	}
	return ""
}

func (b *browser) setSessionCookie(v string) {
	u, _ := url.Parse(b.h.srv.URL)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "deskmail_session", Value: v, Path: "/"}})
}

// conversations counts a ticket's conversations.
func (h *harness) conversations(id int64) []store.Conversation {
	h.t.Helper()
	var out []store.Conversation
	err := h.st.Read(h.ctx, func(tx *store.Tx) error {
		var err error
		out, err = tx.Conversations(id)
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}
