package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/ingest/poller"
	"github.com/deskmail/deskmail/store"
)

// syncBuffer is a bytes.Buffer safe for the daemon's goroutines.
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

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// afterPrefix returns the rest of the first line of out starting with
// prefix.
func afterPrefix(out, prefix string) (string, bool) {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

func testMail(from, to, subject, id string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + id + ">\r\n" +
		"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n"
}

// sendData finishes a transaction on c whose recipients are accepted.
func sendData(c *smtp.Client, msg string) error {
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}

const reloadV1 = `database: %s
smtp:
  listen: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
log:
  level: info
channels:
  - name: support
    addresses: [support@example.com]
`

// TestReload runs the daemon in-process, reloads it with a file that
// adds a support address (and changes the database path, which needs a
// restart), then with a broken file.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "d.db")
	cfgFile := filepath.Join(dir, "reload.yaml")
	write := func(s string) {
		if err := os.WriteFile(cfgFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf(reloadV1, db))

	ov := overrides{path: cfgFile}
	cfg, err := ov.load()
	if err != nil {
		t.Fatal(err)
	}
	logs, stdout := &syncBuffer{}, &syncBuffer{}
	level := new(slog.LevelVar)
	logger, err := serveLogger(cfg.Log, level, logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := newDaemon(ctx, cfg, ov, logger, level)
	if err != nil {
		t.Fatal(err)
	}
	defer d.st.Close()
	hup := make(chan os.Signal, 1)
	runErr := make(chan error, 1)
	go func() { runErr <- d.run(ctx, stdout, hup) }()

	var addr string
	waitFor(t, "the SMTP address", 10*time.Second, func() bool {
		var ok bool
		addr, ok = afterPrefix(stdout.String(), "deskmail: SMTP listening on ")
		return ok
	})
	dial := func() *smtp.Client {
		t.Helper()
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("client.example"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	reload := func(n int) {
		t.Helper()
		hup <- syscall.SIGHUP
		waitFor(t, fmt.Sprintf("reload %d to finish", n), 20*time.Second, func() bool {
			s := logs.String()
			return strings.Count(s, "reload: configuration applied")+strings.Count(s, "reload refused") >= n
		})
	}

	// Before the reload, sales@ is not ours.
	c0 := dial()
	if err := c0.Mail("bob@customer.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c0.Rcpt("sales@example.com", nil); err == nil {
		t.Fatal("sales@example.com accepted before the reload")
	}
	c0.Close()

	// A session opened before the reload, with a transaction under way.
	old := dial()
	defer old.Close()
	if err := old.Mail("ann@customer.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := old.Rcpt("support@example.com", nil); err != nil {
		t.Fatal(err)
	}

	v2 := strings.Replace(fmt.Sprintf(reloadV1, filepath.Join(dir, "other.db")), "[support@example.com]", "[support@example.com, sales@example.com]", 1) +
		"  - name: billing\n    addresses: [billing@example.com]\n"
	write(strings.Replace(v2, "level: info", "level: debug", 1))
	reload(1)
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level is %v after the reload, want debug", level.Level())
	}
	if !strings.Contains(logs.String(), "setting=database") {
		t.Errorf("a changed database path is not reported as needing a restart:\n%s", logs.String())
	}

	// New sessions reach the new addresses and channels.
	c := dial()
	if err := c.Mail("carol@customer.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("sales@example.com", nil); err != nil {
		t.Fatalf("sales@example.com refused after the reload: %v", err)
	}
	if err := sendData(c, testMail("carol@customer.example", "sales@example.com", "Quote please", "q1@customer.example")); err != nil {
		t.Fatalf("DATA after the reload: %v", err)
	}
	if err := c.Mail("dan@customer.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("billing@example.com", nil); err != nil {
		t.Fatalf("billing@example.com (new channel) refused: %v", err)
	}
	if err := sendData(c, testMail("dan@customer.example", "billing@example.com", "Invoice", "b1@customer.example")); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	// The session opened before the reload completes, and sees the
	// new address from its next RCPT.
	if err := old.Rcpt("sales@example.com", nil); err != nil {
		t.Fatalf("old session: sales@ refused after the reload: %v", err)
	}
	if err := sendData(old, testMail("ann@customer.example", "support@example.com", "Printer broken", "p1@customer.example")); err != nil {
		t.Fatalf("old session: DATA after the reload: %v", err)
	}

	// A broken file is refused with FILE:LINE: problems; the running
	// configuration stays.
	write(v2 + "  - name: broken\n    addresses: [nope]\n    colour: blue\n")
	reload(2)
	if !strings.Contains(logs.String(), "reload refused") || !strings.Contains(logs.String(), "reload.yaml:") {
		t.Fatalf("the broken file was not reported with FILE:LINE:\n%s", logs.String())
	}
	c = dial()
	if err := c.Mail("erin@customer.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("sales@example.com", nil); err != nil {
		t.Fatalf("sales@ refused after a refused reload: %v", err)
	}
	if err := sendData(c, testMail("erin@customer.example", "sales@example.com", "Still there?", "e1@customer.example")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	old.Quit()

	if testing.Verbose() {
		t.Log(logs.String())
	}
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not stop")
	}

	channels := map[string]int{}
	err = d.st.Read(context.Background(), func(tx *store.Tx) error {
		list, err := tx.ListTickets(store.TicketFilter{})
		for _, tk := range list {
			if tk.Channel != nil {
				channels[*tk.Channel]++
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range channels {
		total += n
	}
	if total != 4 || channels["billing"] != 1 {
		t.Errorf("tickets per channel %v, want 4 tickets, one of them on billing", channels)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.db")); err == nil {
		t.Error("the reload opened the new database path instead of asking for a restart")
	}
}

// TestPollerSetApply: a reload keeps the pollers of unchanged channels,
// restarts changed ones and stops removed ones.
func TestPollerSetApply(t *testing.T) {
	port := memIMAP(t)
	dir := t.TempDir()
	parse := func(interval string, withB bool) *config.Config {
		t.Helper()
		y := fmt.Sprintf(`database: %s
channels:
  - name: a
    addresses: [a@example.com]
    imap: {host: 127.0.0.1, port: %d, tls: none, username: support, password: secret, poll_interval: %s}
`, filepath.Join(dir, "p.db"), port, interval)
		if withB {
			y += fmt.Sprintf("  - name: b\n    addresses: [b@example.com]\n    imap: {host: 127.0.0.1, port: %d, tls: none, username: support, password: secret}\n", port)
		}
		cfg, err := config.Parse("p.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := parse("1m", true)
	st, err := store.Open(ctx, cfg.Database, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := ingest.NewPipeline(ctx, st, ingest.Env{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	set := newPollerSet(ctx, st, p, poller.Options{Logger: slog.New(slog.DiscardHandler)})
	defer func() {
		cancel()
		set.wait()
	}()
	if err := set.apply(cfg); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(set.folders(), " "); got != "a/INBOX b/INBOX" {
		t.Fatalf("folders %q", got)
	}
	a, b := set.running["a"], set.running["b"]

	// Same configuration: nothing restarts.
	if err := set.apply(parse("1m", true)); err != nil {
		t.Fatal(err)
	}
	if set.running["a"] != a || set.running["b"] != b {
		t.Error("pollers of unchanged channels were restarted")
	}
	// a changed, b removed.
	if err := set.apply(parse("2m", false)); err != nil {
		t.Fatal(err)
	}
	if set.running["a"] == a || set.running["b"] != nil {
		t.Errorf("after the change: a restarted=%v, b still running=%v", set.running["a"] != a, set.running["b"] != nil)
	}
	if got := strings.Join(set.folders(), " "); got != "a/INBOX" {
		t.Fatalf("folders %q", got)
	}
	// The stopped pollers have returned.
	done := make(chan struct{})
	go func() { b.p.Wait(); a.p.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("stopped pollers did not return")
	}
}
