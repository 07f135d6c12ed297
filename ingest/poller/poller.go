// Package poller fetches support mail from IMAP mailboxes (go-imap v2
// client) and feeds it to the ingest pipeline, exactly once.
//
// One goroutine and one connection serve each watched folder of each
// channel; many channels run in one process and a broken one never
// stops the others. A folder poller connects (implicit TLS, STARTTLS,
// or clear text where the configuration allows it), authenticates with
// a password or XOAUTH2/OAUTHBEARER, selects its folder and then loops:
// drain new mail, wait (IDLE when the server has it, else the poll
// interval), drain again. Any failure closes the connection and the
// poller reconnects after a jittered, capped exponential backoff.
//
// # Exactly once
//
// The store keeps, per channel folder, the folder's UIDVALIDITY and the
// last UID whose message is committed and acknowledged (imap_state).
// A drain searches UIDs above it, fetches bodies in batches with
// BODY.PEEK[] (fetching never sets \Seen), hands each batch to the
// pipeline, which commits it in one transaction, and only then
// acknowledges the batch on the server (\Seen, move or delete; mail the
// pipeline kept raw as failed goes to the failed folder) and advances
// the checkpoint. A crash between commit and acknowledgement leaves the
// checkpoint behind: the next drain fetches the same messages again,
// the pipeline answers "duplicate" (it is idempotent by Message-ID) and
// the acknowledgement is completed. A new UIDVALIDITY re-scans the
// folder from UID 1; what was stored comes back as duplicates.
//
// # Mail already in a folder
//
// On a folder's first poll, mail already there is history: with
// existing "skip" the checkpoint starts at UIDNEXT-1 and it is never
// touched; with "import" it is ingested with Raw.Quiet set, so that no
// confirmation or notification is sent for it. The boundary is stored
// (the last history UID, and after a UIDVALIDITY change the first
// poll's time compared with INTERNALDATE), so a restart or a re-scan
// keeps the same choice.
//
// # Messages a server will not deliver
//
// Before a chunk of messages is fetched, the store records the highest
// UID whose fetch started (imap_state.fetching_through). When the
// server answers a batch's FETCH with NO or BAD, that batch, and when a
// session ended (a dropped connection, a literal cut short, a server
// gone silent, a crash) with messages above the checkpoint whose fetch
// had started, those messages, are fetched one at a time, each attempt
// counted in imap_unfetchable before it starts and forgotten once the
// message arrives. A message refused again, or whose fetch breaks off,
// keeps its count and the session ends after storing the mail before
// it, so the next session (after a reconnect or a restart) retries it.
// Once it has failed in 3 sessions over at least 5 minutes
// (imap.set_aside_attempts, imap.set_aside_after), it is set aside,
// without being fetched again: logged at error level, written to
// channel_health's last error, marked in imap_unfetchable (which
// store.Tx.IMAPSetAside lists for the status views), moved to the
// failed folder when the server allows it, and passed by the
// checkpoint, so later mail flows again. It is never dropped: it stays
// on the server and in the record.
//
// # Timeouts
//
// The TCP connect and TLS handshake are bounded by 30 seconds; after
// that a watchdog under the client closes a connection whose server
// sends nothing for 2 minutes while an answer is expected (go-imap
// bounds only the reading of a response it has started to receive).
// IDLE, the poll interval and a batch's commit are not timed.
//
// # Health
//
// Every drain records the channel's last poll and last success in
// channel_health; every failure records an error that names the
// channel, the folder and the cause, and counts consecutive failures.
// Secrets never appear in logs or errors.
package poller

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/store"
)

// Ingester commits raw messages; *ingest.Pipeline is one. When it
// returns a Result with a nil Err the message is durable.
type Ingester interface {
	Ingest(ctx context.Context, raws []ingest.Raw) ([]ingest.Result, error)
}

// Options tunes the pollers. The zero value is the production default.
type Options struct {
	// Logger receives one line per connection problem and per batch
	// (default: discard).
	Logger *slog.Logger
	// TLSConfig is the base TLS configuration (for a private CA); the
	// server name is set per channel. Nil uses the system roots.
	TLSConfig *tls.Config
	// HTTPClient is used for OAuth token refreshes (default: a client
	// with a 30s timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Metrics counts polls and errors per channel (nil: not counted).
	Metrics *metrics.Metrics
	// Instance names this deskmail among those sharing the database
	// (default NewInstanceID()): the owner of the folder leases.
	Instance string
	// LeaseTTL is how long a folder lease holds without renewal
	// (default DefaultLeaseTTL); see lease.go.
	LeaseTTL time.Duration

	// Test knobs.
	backoffMin, backoffMax time.Duration
	reIdle                 time.Duration
	maxBatchBytes          int64
	// setAsideAttempts and setAsideAfter, when set, override the
	// channel's imap.set_aside_attempts and imap.set_aside_after: a
	// message whose fetch keeps failing is set aside once it has
	// failed this many times (one per session) over at least this
	// long.
	setAsideAttempts int
	setAsideAfter    time.Duration
	// commandTimeout: how long the server may stay silent while an
	// answer is expected before the connection is given up.
	commandTimeout time.Duration
	// afterCommit runs after a batch is committed and before it is
	// acknowledged on the server; an error aborts the session there,
	// as a crash would.
	afterCommit func(channel, folder string, uids []imap.UID) error
}

const (
	defaultBackoffMin = time.Second
	defaultBackoffMax = 5 * time.Minute
	// defaultReIdle restarts IDLE well before the 29 minutes after
	// which RFC 2177 lets a server drop an idle client.
	defaultReIdle        = 25 * time.Minute
	defaultMaxBatchBytes = 32 << 20
	// A message the server will not deliver is retried in 3 sessions
	// over at least 5 minutes before it is set aside (the defaults of
	// imap.set_aside_attempts and imap.set_aside_after): long
	// enough to ride out a server's passing trouble (throttling, a
	// mailbox being moved), short enough that later mail is not held
	// up for long.
	defaultSetAsideAttempts = 3
	defaultSetAsideAfter    = 5 * time.Minute
	// defaultCommandTimeout bounds a server's silence in the middle
	// of a command (and before its greeting). Longer than the 30s
	// the OAuth refresh and the token command may take between two
	// commands of a login.
	defaultCommandTimeout = 2 * time.Minute
)

func (o *Options) fill() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Instance == "" {
		o.Instance = NewInstanceID()
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.backoffMin <= 0 {
		o.backoffMin = defaultBackoffMin
	}
	if o.backoffMax <= 0 {
		o.backoffMax = defaultBackoffMax
	}
	if o.reIdle <= 0 {
		o.reIdle = defaultReIdle
	}
	if o.maxBatchBytes <= 0 {
		o.maxBatchBytes = defaultMaxBatchBytes
	}
	if o.commandTimeout <= 0 {
		o.commandTimeout = defaultCommandTimeout
	}
}

// Pollers is the set of running folder pollers.
type Pollers struct {
	wg      sync.WaitGroup
	folders []string
}

// Wait blocks until every poller has stopped (after the context given
// to StartPollers ends).
func (g *Pollers) Wait() { g.wg.Wait() }

// Folders lists the running pollers as "channel/folder".
func (g *Pollers) Folders() []string { return append([]string(nil), g.folders...) }

// StartPollers starts one goroutine per watched folder of every channel
// that has an imap section, and returns at once. The goroutines run
// until ctx ends; Pollers.Wait waits for them. Problems with a channel
// (a missing password file, an unreachable server) do not fail
// StartPollers: that channel retries with backoff and reports them in
// channel_health while the others run.
func StartPollers(ctx context.Context, cfg *config.Config, st *store.Store, pl Ingester, opts Options) (*Pollers, error) {
	if cfg == nil || st == nil || pl == nil {
		return nil, errors.New("imap pollers: configuration, store and pipeline are required")
	}
	opts.fill()
	g := &Pollers{}
	var pollers []*folderPoller
	for i := range cfg.Channels {
		ch := &cfg.Channels[i]
		im := ch.IMAP
		if im == nil {
			continue
		}
		if im.Host == "" {
			return nil, fmt.Errorf("imap %s: no host configured", ch.Name)
		}
		opts := opts
		if opts.setAsideAttempts <= 0 {
			opts.setAsideAttempts = cmp.Or(max(im.SetAsideAttempts, 0), defaultSetAsideAttempts)
		}
		if opts.setAsideAfter <= 0 {
			opts.setAsideAfter = cmp.Or(max(im.SetAsideAfter.Duration, 0), defaultSetAsideAfter)
		}
		auth := newAuthenticator(ctx, ch.Name, im, st, opts)
		seen := map[string]bool{}
		folders := im.Folders
		if len(folders) == 0 {
			folders = []string{"INBOX"}
		}
		for _, f := range folders {
			if seen[f] {
				return nil, fmt.Errorf("imap %s: folder %s is listed twice", ch.Name, f)
			}
			seen[f] = true
			pollers = append(pollers, &folderPoller{channel: ch.Name, im: im, folder: f, st: st, pl: pl, auth: auth, opts: opts,
				log: opts.Logger.With("channel", ch.Name, "folder", f)})
			g.folders = append(g.folders, ch.Name+"/"+f)
		}
		if f := im.SentFolder; f != "" {
			if seen[f] {
				return nil, fmt.Errorf("imap %s: folder %s is both watched and the sent folder", ch.Name, f)
			}
			pollers = append(pollers, &folderPoller{channel: ch.Name, im: im, folder: f, sent: true, st: st, pl: pl, auth: auth, opts: opts,
				log: opts.Logger.With("channel", ch.Name, "folder", f, "sent", true)})
			g.folders = append(g.folders, ch.Name+"/"+f)
		}
	}
	for _, p := range pollers {
		g.wg.Go(func() { p.run(ctx) })
	}
	return g, nil
}

// folderPoller watches one folder of one channel.
type folderPoller struct {
	channel string
	im      *config.IMAPConfig
	folder  string
	// sent marks the channel's Sent folder: its mail is threaded as
	// agent replies and left where it is on the server.
	sent bool
	st   *store.Store
	pl   Ingester
	auth *authenticator
	opts Options
	log  *slog.Logger
	// lease is the folder lease held while sessions run (lease.go).
	lease atomic.Pointer[store.Lease]
}

// run takes the folder's lease, then polls while it holds it; a lease
// lost to another instance stops the sessions and the poller waits to
// take the folder again. A clean stop releases the lease.
func (p *folderPoller) run(ctx context.Context) {
	for {
		l, ok := p.acquire(ctx)
		if !ok {
			return
		}
		p.lease.Store(&l)
		lctx, lost := context.WithCancelCause(ctx)
		held := make(chan struct{})
		go func() {
			defer close(held)
			p.hold(lctx, l, lost)
		}()
		p.poll(lctx)
		lost(nil)
		<-held
		if ctx.Err() != nil {
			wctx, cancel := writeCtx(ctx)
			if err := p.st.Write(wctx, func(tx *store.Tx) error { return tx.ReleaseLease(l, p.opts.Now()) }); err != nil {
				p.log.Warn("imap folder lease: release failed; it expires on its own", "err", err)
			}
			cancel()
			return
		}
		p.log.Warn("imap folder lease lost; stopped polling it", "err", context.Cause(lctx))
	}
}

// poll connects, drains and waits until ctx ends, reconnecting after
// failures with backoff.
func (p *folderPoller) poll(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		ok, err := p.safeSession(ctx)
		if ctx.Err() != nil {
			return
		}
		if ok {
			failures = 0
		}
		failures++
		msg := err.Error()
		p.log.Warn("imap channel failed; will retry", "err", msg, "consecutive", failures)
		p.recordError(ctx, msg)
		if !sleep(ctx, p.backoff(failures)) {
			return
		}
	}
}

// safeSession runs one session and turns a panic into an error. ok
// reports whether the session completed at least one drain.
func (p *folderPoller) safeSession(ctx context.Context) (ok bool, err error) {
	s := &session{p: p}
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("imap poller panic", "panic", v, "stack", string(debug.Stack()))
			ok, err = s.drained, fmt.Errorf("imap %s: %s: internal error: %v", p.channel, p.folder, v)
		}
	}()
	err = s.run(ctx)
	if err == nil {
		err = fmt.Errorf("imap %s: %s: session ended", p.channel, p.folder)
	}
	return s.drained, err
}

// backoff is the delay before reconnect attempt n (n ≥ 1): exponential
// from backoffMin, capped at backoffMax, with "equal jitter" (half
// fixed, half random) so that many channels failing together do not
// reconnect in step.
func (p *folderPoller) backoff(n int) time.Duration {
	d := float64(p.opts.backoffMin) * float64(uint64(1)<<min(n-1, 30))
	d = min(d, float64(p.opts.backoffMax))
	return time.Duration(d/2 + rand.Float64()*d/2)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// writeCtx is used for bookkeeping writes that must land even while
// ctx is ending (a checkpoint, a health row).
func writeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

func (p *folderPoller) recordError(ctx context.Context, msg string) {
	p.opts.Metrics.IMAPPoll(p.channel, "error")
	p.opts.Metrics.IMAPError(p.channel, errorKind(msg))
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	err := p.st.Write(wctx, func(tx *store.Tx) error { return tx.RecordChannelError(p.channel, p.opts.Now(), msg) })
	if err != nil {
		p.log.Error("imap channel health not recorded", "err", err)
	}
}

func (p *folderPoller) recordOK(ctx context.Context) error {
	p.opts.Metrics.IMAPPoll(p.channel, "ok")
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	if err := p.st.Write(wctx, func(tx *store.Tx) error { return tx.RecordChannelOK(p.channel, p.opts.Now()) }); err != nil {
		return fmt.Errorf("imap %s: %s: record health: %w", p.channel, p.folder, err)
	}
	return nil
}

// errorKind sorts a session error for the metrics: auth, tls, connect,
// fetch or other.
func errorKind(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "login") || strings.Contains(m, "authenticat") || strings.Contains(m, "oauth") || strings.Contains(m, "password"):
		return "auth"
	case strings.Contains(m, "tls") || strings.Contains(m, "certificate") || strings.Contains(m, "x509"):
		return "tls"
	case strings.Contains(m, "dial") || strings.Contains(m, "connect") || strings.Contains(m, "no such host"):
		return "connect"
	case strings.Contains(m, "fetch") || strings.Contains(m, "select") || strings.Contains(m, "search"):
		return "fetch"
	case strings.Contains(m, "move") || strings.Contains(m, "flag") || strings.Contains(m, "expunge"):
		return "post_action"
	}
	return "other"
}
