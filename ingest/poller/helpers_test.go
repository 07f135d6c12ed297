package poller

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/internal/imaptest"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

const (
	testUser     = "support@example.com"
	testPassword = "correct horse battery staple"
)

// backend is an IMAP server the tests talk to: the in-process
// imapmemserver or a throw-away Dovecot.
type backend struct {
	host string
	port int
	user string
	pass string
	// tls is the channel's tls mode for this server.
	tls string
	// dovecot is set for the Dovecot backend.
	dovecot bool
	// mem is the in-process server's user (nil for Dovecot).
	mem *imapmemserver.User
	// delim is the server's hierarchy delimiter when it is not "/".
	delim rune
}

// name maps a folder written with "/" to the server's delimiter.
func (b *backend) name(folder string) string {
	if b.delim == 0 {
		return folder
	}
	return strings.ReplaceAll(folder, "/", string(b.delim))
}

// memOptions shapes an in-process server.
type memOptions struct {
	// caps are the server's capabilities (default IMAP4rev1 with MOVE
	// and UIDPLUS).
	caps imap.CapSet
	// tokens, when set, enables XOAUTH2 and OAUTHBEARER: an access
	// token is valid when it maps to true.
	tokens func(tok string) bool
	// dropAfter, when > 0, makes the first connection that logs in
	// die after the server has written this many more bytes.
	dropAfter int64
	// refuse, when set and true for a UID, makes UID FETCH of that
	// message's body answer NO (after sending the other messages of
	// the set), as a server that cannot read a message does; with
	// refuseSizes, RFC822.SIZE too.
	refuse      func(uid imap.UID) bool
	refuseSizes bool
	// refuseMove, when set and true for a UID, makes MOVE of a set
	// holding it answer NO.
	refuseMove func(uid imap.UID) bool
	// dropOn, when set, is asked about each message a UID FETCH of
	// bodies names, in UID order; true cuts the connection there,
	// after the messages before it in the set were sent, as a server
	// that dies reading that message does. With brokenLiteral the
	// connection is cut in the middle of that message's literal.
	dropOn        func(uid imap.UID) bool
	brokenLiteral bool
	// stallBodies, when set and on, makes a FETCH of bodies say
	// nothing at all until the test ends.
	stallBodies *atomic.Bool
	// stalled is closed at the end of the test (set by memServer).
	stalled chan struct{}
}

// memServer starts imapmemserver behind imapserver.New on 127.0.0.1:0
// with one user whose INBOX exists.
func memServer(t testing.TB, o memOptions) *backend {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(testUser, testPassword)
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	o.stalled = make(chan struct{})
	caps := o.caps
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}, imap.CapUIDPlus: {}}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			sess := &testSession{Session: mem.NewSession(), o: o, conn: conn}
			if o.tokens != nil {
				return &oauthSession{testSession: sess, tokens: o.tokens}, nil, nil
			}
			return sess, nil, nil
		},
		InsecureAuth: true,
		Caps:         caps,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener = ln
	if o.dropAfter > 0 {
		l = &dropListener{Listener: ln, after: o.dropAfter}
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	t.Cleanup(func() { close(o.stalled) }) // before srv.Close: cleanups run last first
	addr := ln.Addr().(*net.TCPAddr)
	return &backend{host: "127.0.0.1", port: addr.Port, user: testUser, pass: testPassword, tls: "none", mem: u}
}

// testSession is a memserver session that, like Dovecot, reports
// pending changes when IDLE starts (imapmemserver waits for the next
// change), so that tests are deterministic.
type testSession struct {
	imapserver.Session
	o    memOptions
	conn *imapserver.Conn
}

// Fetch refuses the messages memOptions.refuse names and drops the
// connection at those memOptions.dropOn names.
func (s *testSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if set, ok := numSet.(imap.UIDSet); ok && s.o.dropOn != nil && len(options.BodySection) > 0 {
		var before imap.UIDSet
		for _, r := range set {
			for u := r.Start; u <= r.Stop && r.Stop != 0 && r.Stop-r.Start <= 100000; u++ {
				if !s.o.dropOn(u) {
					before.AddNum(u)
					continue
				}
				if len(before) > 0 {
					if err := s.Session.Fetch(w, before, options); err != nil {
						return err
					}
				}
				if s.o.brokenLiteral {
					s.writeHalfLiteral(w, u, options.BodySection[0])
				}
				s.conn.NetConn().Close()
				return &imap.Error{Type: imap.StatusResponseTypeBye, Text: "dropped by the test"}
			}
		}
	}
	if s.o.stallBodies != nil && s.o.stallBodies.Load() && len(options.BodySection) > 0 {
		<-s.o.stalled
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "test over"}
	}
	set, ok := numSet.(imap.UIDSet)
	if s.o.refuse == nil || !ok || (len(options.BodySection) == 0 && !(s.o.refuseSizes && options.RFC822Size)) {
		return s.Session.Fetch(w, numSet, options)
	}
	var rest imap.UIDSet
	bad := false
	for _, r := range set {
		if r.Stop == 0 || r.Stop-r.Start > 100000 {
			return s.Session.Fetch(w, numSet, options) // "n:*": not what the tests refuse
		}
		for u := r.Start; u <= r.Stop; u++ {
			if s.o.refuse(u) {
				bad = true
			} else {
				rest.AddNum(u)
			}
		}
	}
	if !bad {
		return s.Session.Fetch(w, numSet, options)
	}
	if len(rest) > 0 {
		if err := s.Session.Fetch(w, rest, options); err != nil {
			return err
		}
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Internal error occurred. Refer to server log for more information."}
}

// writeHalfLiteral starts the FETCH response of uid with a body
// literal of 64 KiB and sends only half of it (more than the server's
// write buffer, so the client gets it before the connection drops).
func (s *testSession) writeHalfLiteral(w *imapserver.FetchWriter, uid imap.UID, section *imap.FetchItemBodySection) {
	data, err := s.Session.Search(imapserver.NumKindSeq, &imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(uid)}}, nil)
	if err != nil {
		return
	}
	all, _ := data.All.(imap.SeqSet)
	seqs, _ := all.Nums()
	if len(seqs) != 1 {
		return
	}
	mw := w.CreateMessage(seqs[0])
	mw.WriteUID(uid)
	lw := mw.WriteBodySection(section, 64<<10)
	lw.Write(bytes.Repeat([]byte("x"), 32<<10))
}

func (s *testSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if err := s.Session.Poll(w, true); err != nil {
		return err
	}
	return s.Session.Idle(w, stop)
}

func (s *testSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if set, ok := numSet.(imap.UIDSet); ok && s.o.refuseMove != nil {
		for _, r := range set {
			for u := r.Start; u <= r.Stop && r.Stop != 0; u++ {
				if s.o.refuseMove(u) {
					return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Cannot copy the message."}
				}
			}
		}
	}
	return s.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

func (s *testSession) Namespace() (*imap.NamespaceData, error) {
	return s.Session.(imapserver.SessionNamespace).Namespace()
}

// oauthSession adds XOAUTH2 and OAUTHBEARER to a memserver session.
type oauthSession struct {
	*testSession
	tokens func(string) bool
}

func (s *oauthSession) AuthenticateMechanisms() []string {
	return []string{"PLAIN", "XOAUTH2", "OAUTHBEARER"}
}

func (s *oauthSession) Authenticate(mech string) (sasl.Server, error) {
	switch mech {
	case "PLAIN":
		return sasl.NewPlainServer(func(identity, username, password string) error {
			return s.Session.Login(username, password)
		}), nil
	case "OAUTHBEARER":
		return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if !s.tokens(o.Token) || s.Session.Login(o.Username, testPassword) != nil {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		}), nil
	case "XOAUTH2":
		return &xoauth2Server{login: func(user, tok string) bool {
			return s.tokens(tok) && s.Session.Login(user, testPassword) == nil
		}}, nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "unsupported mechanism"}
}

// xoauth2Server is the server side of XOAUTH2 as Gmail runs it: a bad
// token gets a JSON challenge, the client's empty answer gets NO.
type xoauth2Server struct {
	login  func(user, tok string) bool
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "invalid token"}
	}
	var user, tok string
	for _, f := range strings.Split(string(resp), "\x01") {
		if v, ok := strings.CutPrefix(f, "user="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(f, "auth=Bearer "); ok {
			tok = v
		}
	}
	if x.login(user, tok) {
		return nil, true, nil
	}
	x.failed = true
	return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
}

// dropListener kills the first connection that has written `after`
// bytes past its login, to play a server dying mid-fetch.
type dropListener struct {
	net.Listener
	after   int64
	dropped atomic.Bool
}

func (l *dropListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.dropped.Load() {
		return c, nil
	}
	return &dropConn{Conn: c, l: l}, nil
}

type dropConn struct {
	net.Conn
	l       *dropListener
	written int64
	read    bytes.Buffer
	armed   atomic.Bool
}

func (c *dropConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.armed.Load() {
		c.read.Write(p[:n])
		// Arm once the client fetches bodies.
		if strings.Contains(c.read.String(), "BODY.PEEK[]") {
			c.armed.Store(true)
		}
	}
	return n, err
}

func (c *dropConn) Write(p []byte) (int, error) {
	if c.armed.Load() && !c.l.dropped.Load() {
		if c.written+int64(len(p)) > c.l.after {
			c.l.dropped.Store(true)
			k := c.l.after - c.written
			if k > 0 {
				c.Conn.Write(p[:k])
			}
			c.Conn.Close()
			return 0, net.ErrClosed
		}
		c.written += int64(len(p))
	}
	return c.Conn.Write(p)
}

// client opens a test-side connection to inspect or fill the server.
func (b *backend) client(t testing.TB) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(fmt.Sprintf("%s:%d", b.host, b.port), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(b.user, b.pass).Wait(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// appendMsg appends a message to a folder (creating it if needed).
func (b *backend) appendMsg(t testing.TB, folder string, raw []byte, at time.Time) {
	t.Helper()
	c := b.client(t)
	defer c.Logout()
	b.appendWith(t, c, folder, raw, at)
}

func (b *backend) appendWith(t testing.TB, c *imapclient.Client, folder string, raw []byte, at time.Time) {
	t.Helper()
	imaptest.Append(t, c, b.name(folder), raw, at)
}

// flags returns the flags of every message of a folder by UID; nil
// when the folder does not exist.
func (b *backend) flags(t testing.TB, folder string) map[imap.UID][]imap.Flag {
	t.Helper()
	c := b.client(t)
	defer c.Logout()
	sel, err := c.Select(b.name(folder), &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil
	}
	out := map[imap.UID][]imap.Flag{}
	if sel.NumMessages == 0 {
		return out
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	bufs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range bufs {
		out[m.UID] = m.Flags
	}
	return out
}

func hasFlag(fs []imap.Flag, f imap.Flag) bool {
	for _, x := range fs {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

// message builds a plain customer mail.
func message(id, from, subject string) []byte {
	return []byte("From: Customer <" + from + ">\r\n" +
		"To: Support <support@example.com>\r\n" +
		"Subject: " + subject + "\r\n" +
		"Message-ID: <" + id + ">\r\n" +
		"Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Hello, my order " + id + " did not arrive.\r\n")
}

// harness is a real pipeline on a SQLite store in t.TempDir() with one
// IMAP channel named "support".
type harness struct {
	t       testing.TB
	b       *backend
	cfg     *config.Config
	st      *store.Store
	pl      *ingest.Pipeline
	opts    Options
	mu      sync.Mutex
	notices []ingest.Notice
	// noNotices stops recording notices (benchmarks).
	noNotices bool

	cancel  context.CancelFunc
	pollers *Pollers
}

// newHarness builds the configuration from YAML (so defaults and
// validation run as in production); imapExtra is appended to the
// channel's imap section, one "key: value" per line.
func newHarness(t testing.TB, b *backend, imapExtra ...string) *harness {
	t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "channels:\n  - name: support\n    addresses: [support@example.com]\n    imap:\n")
	fmt.Fprintf(&sb, "      host: %s\n      port: %d\n      tls: %s\n      username: %s\n", b.host, b.port, b.tls, b.user)
	hasAuth := false
	for _, l := range imapExtra {
		if strings.HasPrefix(l, "password:") || strings.HasPrefix(l, "oauth:") {
			hasAuth = true
		}
	}
	if !hasAuth {
		fmt.Fprintf(&sb, "      password: %q\n", b.pass)
	}
	for _, l := range imapExtra {
		for i, line := range strings.Split(l, "\n") {
			if i > 0 {
				line = "  " + line
			}
			fmt.Fprintf(&sb, "      %s\n", line)
		}
	}
	path := filepath.Join(t.TempDir(), "deskmail.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config:\n%s\n%v", sb.String(), err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "deskmail.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, b: b, cfg: cfg, st: st}
	h.buildPipeline()
	h.opts = Options{backoffMin: 10 * time.Millisecond, backoffMax: 200 * time.Millisecond}
	if testing.Verbose() {
		h.opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return h
}

// buildPipeline (re)builds the pipeline from h.cfg (after a test
// changed it, e.g. added agents).
func (h *harness) buildPipeline() {
	h.t.Helper()
	env := ingest.Env{Config: h.cfg, Signer: threading.NewSigner([]byte("test secret"), 90*24*time.Hour),
		Notify: func(tx *store.Tx, n ingest.Notice) error {
			h.mu.Lock()
			if !h.noNotices {
				h.notices = append(h.notices, n)
			}
			h.mu.Unlock()
			return nil
		}}
	var err error
	if h.pl, err = ingest.NewPipeline(context.Background(), h.st, env); err != nil {
		h.t.Fatal(err)
	}
}

// start runs the pollers until stop (or the end of the test).
func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	g, err := StartPollers(ctx, h.cfg, h.st, h.pl, h.opts)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	h.pollers = g
	h.t.Cleanup(h.stop)
}

// stop cancels the pollers and waits for every goroutine to end.
func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		h.pollers.Wait()
		h.cancel = nil
	}
}

func (h *harness) tickets() []store.Ticket {
	h.t.Helper()
	var tks []store.Ticket
	err := h.st.Read(context.Background(), func(tx *store.Tx) (err error) {
		tks, err = tx.ListTickets(store.TicketFilter{})
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return tks
}

func (h *harness) countRaw(state string) int {
	h.t.Helper()
	var n int
	err := h.st.Read(context.Background(), func(tx *store.Tx) (err error) {
		n, err = tx.CountRaw(state)
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) health() *store.ChannelHealth {
	h.t.Helper()
	var hl *store.ChannelHealth
	err := h.st.Read(context.Background(), func(tx *store.Tx) (err error) {
		hl, err = tx.ChannelHealth("support")
		return err
	})
	if err != nil {
		return nil
	}
	return hl
}

func (h *harness) checkpoint(folder string) *store.IMAPState {
	h.t.Helper()
	var s *store.IMAPState
	err := h.st.Read(context.Background(), func(tx *store.Tx) (err error) {
		s, err = tx.IMAPState("support", folder)
		return err
	})
	if err != nil {
		return nil
	}
	return s
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: still waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
