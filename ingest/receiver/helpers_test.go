package receiver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// testConfig is the configuration every receiver test starts from.
const testConfig = `
database: deskmail.db
smtp:
  listen: 127.0.0.1:0
  hostname: mx.test.example
  rate_per_minute: 1000000
  max_connections_per_ip: 1000
  max_connections: 1000
  # The tests connect from 127.0.0.1: trust no relay, so the limits of
  # ordinary clients apply (trusted_relays_test.go trusts loopback).
  trusted_relays: []
agents:
  - email: alice@agents.example
    name: Alice
channels:
  - name: support
    addresses: [support@example.com, help@example.com]
  - name: billing
    addresses: [billing@example.com]
`

// harness is a real receiver on 127.0.0.1:0 in front of a real
// pipeline and a real SQLite store in t.TempDir().
type harness struct {
	t      testing.TB
	dir    string
	cfg    *config.Config
	st     *store.Store
	p      *ingest.Pipeline
	srv    *Server
	addr   string
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
	certs  *x509.CertPool
}

type harnessOpt struct {
	tls     bool // configure a certificate (STARTTLS, AUTH)
	auth    bool
	quiet   bool // discard logs
	smtp    func(*config.SMTPConfig)
	options func(*Options)
	sub     func(Submitter) Submitter
}

// syncBuffer is a goroutine-safe log sink shown when a test fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t testing.TB, o harnessOpt) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, dir: dir, logs: &syncBuffer{}}
	yml := testConfig
	if o.tls {
		certFile, keyFile, pool := writeCert(t, dir)
		h.certs = pool
		yml = strings.Replace(yml, "smtp:\n", fmt.Sprintf("smtp:\n  cert_file: %s\n  key_file: %s\n", certFile, keyFile), 1)
		if o.auth {
			yml = strings.Replace(yml, "smtp:\n", "smtp:\n  auth: true\n  users:\n    - username: relay\n      password: s3cret-relay\n    - username: alice\n      password: alice-pw\n      agent: alice@agents.example\n", 1)
		}
	}
	cfg, err := config.Parse("test.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.Database = filepath.Join(dir, "deskmail.db")
	if o.smtp != nil {
		o.smtp(&cfg.SMTP)
	}
	h.cfg = cfg
	var logger *slog.Logger
	if o.quiet {
		logger = slog.New(slog.DiscardHandler)
	} else {
		logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("logs:\n%s", h.logs.String())
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.st, err = store.Open(ctx, cfg.Database, store.Options{})
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	h.p, err = ingest.NewPipeline(ctx, h.st, ingest.Env{Config: cfg, Signer: threading.NewSigner([]byte("test secret"), 0), Logger: logger})
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	pdone := make(chan struct{})
	go func() { h.p.Run(pctx); close(pdone) }()

	var sub Submitter = h.p
	if o.sub != nil {
		sub = o.sub(sub)
	}
	opts := Options{
		Config:        cfg.SMTP,
		Agents:        cfg.Agents,
		Addresses:     h.p.Addresses(),
		Submitter:     sub,
		Logger:        logger,
		ShutdownGrace: 5 * time.Second,
	}
	if o.options != nil {
		o.options(&opts)
	}
	h.srv, err = New(opts)
	if err != nil {
		t.Fatalf("receiver: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.done = make(chan error, 1)
	go func() { h.done <- h.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		h.stop()
		pcancel()
		<-pdone
		h.st.Close()
	})
	return h
}

// stop ends the server and waits for Serve to return.
func (h *harness) stop() {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Serve: %v", err)
		}
		h.done <- nil
	case <-time.After(20 * time.Second):
		h.t.Fatalf("Serve did not return after cancel")
	}
}

// dial opens a go-smtp client session (EHLO done).
func (h *harness) dial() *smtp.Client {
	h.t.Helper()
	c, err := smtp.Dial(h.addr)
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	if err := c.Hello("client.test.example"); err != nil {
		h.t.Fatalf("EHLO: %v", err)
	}
	return c
}

// dialTLS opens a go-smtp client session upgraded with STARTTLS.
func (h *harness) dialTLS() *smtp.Client {
	h.t.Helper()
	c, err := smtp.DialStartTLS(h.addr, h.clientTLS())
	if err != nil {
		h.t.Fatalf("dial with STARTTLS: %v", err)
	}
	return c
}

// raw opens a plain text connection and reads the greeting.
func (h *harness) raw() (*textproto.Conn, net.Conn) {
	h.t.Helper()
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	tp := textproto.NewConn(nc)
	if _, _, err := tp.ReadResponse(220); err != nil {
		h.t.Fatalf("greeting: %v", err)
	}
	return tp, nc
}

// cmd sends one command and returns the reply.
func cmd(t testing.TB, tp *textproto.Conn, format string, args ...any) (int, string) {
	t.Helper()
	if err := tp.PrintfLine(format, args...); err != nil {
		t.Fatalf("send %q: %v", format, err)
	}
	code, msg, err := tp.ReadResponse(0)
	if err != nil && code == 0 {
		t.Fatalf("reply to %q: %v", format, err)
	}
	return code, msg
}

// message builds a small valid message.
func message(from, to, subject, msgID, body string) string {
	return "From: " + from + "\r\n" +
		"To: " + to + "\r\n" +
		"Subject: " + subject + "\r\n" +
		"Message-ID: <" + msgID + ">\r\n" +
		"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" + body + "\r\n"
}

// send delivers one message with a fresh client and returns the DATA
// error (nil for 250).
func (h *harness) send(from string, to []string, msg string) error {
	h.t.Helper()
	c := h.dial()
	defer c.Close()
	return sendOn(c, from, to, msg)
}

func sendOn(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}

// db opens the test database for direct queries.
func (h *harness) db() *sql.DB {
	h.t.Helper()
	db, err := sql.Open("sqlite3", "file:"+h.cfg.Database+"?_query_only=true&_busy_timeout=10000")
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { db.Close() })
	return db
}

// rawRow is what the store kept of one received message.
type rawRow struct {
	data     string
	envelope string
	channel  sql.NullString
	state    string
}

func (h *harness) rawByMessageID(id string) (rawRow, bool) {
	h.t.Helper()
	var r rawRow
	err := h.db().QueryRow(`SELECT r.data, r.envelope, c.name, r.state FROM raw_messages r LEFT JOIN channels c ON c.id = r.channel_id WHERE r.message_id = ?`, id).
		Scan(&r.data, &r.envelope, &r.channel, &r.state)
	if err == sql.ErrNoRows {
		return r, false
	}
	if err != nil {
		h.t.Fatalf("query raw: %v", err)
	}
	return r, true
}

func (h *harness) countConversations(msgID string) int {
	h.t.Helper()
	var n int
	if err := h.db().QueryRow(`SELECT COUNT(*) FROM conversations WHERE message_id = ?`, msgID).Scan(&n); err != nil {
		h.t.Fatalf("count: %v", err)
	}
	return n
}

// smtpCode returns the reply code of a go-smtp client error (0 if the
// error is not an SMTP reply).
func smtpCode(err error) (int, smtp.EnhancedCode) {
	if se, ok := err.(*smtp.SMTPError); ok {
		return se.Code, se.EnhancedCode
	}
	return 0, smtp.EnhancedCode{}
}

// writeCert writes a fresh self-signed certificate for localhost and
// 127.0.0.1 and returns a pool that trusts it.
func writeCert(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mx.test.example"},
		DNSNames:              []string{"localhost", "mx.test.example"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func (h *harness) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: h.certs, ServerName: "mx.test.example"}
}
