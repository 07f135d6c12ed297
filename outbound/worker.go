package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/store"
)

// Worker delivers queued mail through the configured relay. Build it
// with Outbox.Worker, start it with Run; Kick wakes it after a commit
// that queued mail.
type Worker struct {
	o     *Outbox
	st    *store.Store
	log   *slog.Logger
	kick  chan struct{}
	relay relayConfig

	conns       int
	maxAttempts int
	retryFor    time.Duration
	// Backoff after the n-th failed attempt: minBackoff·2^(n-1), capped
	// at maxBackoff, with ±25% jitter.
	minBackoff, maxBackoff time.Duration
	// attemptTimeout bounds one delivery attempt (connect to DATA
	// reply); the claim lease is at least twice as long.
	attemptTimeout time.Duration
	// idle closes a relay connection unused for that long.
	idle time.Duration
	// poll is the longest sleep without a kick, so mail queued by
	// another process (deskmail ingest) is seen.
	poll time.Duration

	now  func() time.Time
	rand func() float64
}

type relayConfig struct {
	addr     string
	tls      string // starttls, implicit, none
	username string
	password func() (string, error)
	helo     string
	tlsConf  *tls.Config
}

// Worker builds the delivery worker for st. It does not start it.
func (o *Outbox) Worker(st *store.Store, logger *slog.Logger) *Worker {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	oc := o.cfg.Outbound
	w := &Worker{
		o: o, st: st, log: logger.With("component", "outbox"), kick: make(chan struct{}, 1),
		relay: relayConfig{
			addr: oc.Relay, tls: strings.ToLower(oc.TLS), username: oc.Username,
			password: oc.Password.Value, helo: o.cfg.SMTP.Hostname,
		},
		conns: oc.Connections, maxAttempts: oc.MaxAttempts, retryFor: oc.RetryFor.Duration,
		minBackoff: time.Minute, maxBackoff: 12 * time.Hour,
		attemptTimeout: 5 * time.Minute, idle: 30 * time.Second, poll: 30 * time.Second,
		now: time.Now, rand: rand.Float64,
	}
	if w.relay.tls == "" {
		w.relay.tls = "starttls"
	}
	if w.relay.helo == "" {
		w.relay.helo = "localhost"
	}
	if host, _, err := net.SplitHostPort(w.relay.addr); err == nil {
		w.relay.tlsConf = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	if w.conns <= 0 {
		w.conns = 4
	}
	if w.maxAttempts <= 0 {
		w.maxAttempts = 12
	}
	if w.retryFor <= 0 {
		w.retryFor = 48 * time.Hour
	}
	return w
}

// Kick wakes the worker to look for due mail now. It never blocks.
func (w *Worker) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// errInterrupted marks an attempt stopped by our own shutdown.
var errInterrupted = errors.New("delivery interrupted by shutdown")

// result is the outcome of one delivery attempt.
type result struct {
	m        *store.OutboxMail
	err      error
	rejected []string // recipients refused with 5xx (the others got it)
}

// Run delivers mail until ctx ends, then waits for attempts in flight
// to stop, records their outcome and returns nil. With no relay
// configured it only waits: mail stays queued. It returns an error
// only when the relay password cannot be read.
//
// Goroutines: Run is the scheduler; it starts outbound.connections
// senders, each owning one relay connection, and stops them before
// returning.
func (w *Worker) Run(ctx context.Context) error {
	if w.relay.addr == "" {
		w.log.Warn("no outbound relay configured: mail stays queued")
		<-ctx.Done()
		return nil
	}
	if w.relay.username != "" {
		if _, err := w.relay.password(); err != nil {
			return fmt.Errorf("outbound relay password: %w", err)
		}
	}
	// Slots beyond the connections keep claims and results batched:
	// one transaction (one fsync) serves many messages.
	capacity := max(8*w.conns, 32)
	jobs := make(chan *store.OutboxMail, capacity)
	results := make(chan result, capacity)
	var wg sync.WaitGroup
	for range w.conns {
		wg.Go(func() { w.sender(ctx, jobs, results) })
	}
	inflight := 0
	var pending []result
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// Drain finished attempts and record them in one transaction.
		for drained := false; !drained; {
			select {
			case r := <-results:
				pending = append(pending, r)
				inflight--
			default:
				drained = true
			}
		}
		if ctx.Err() != nil {
			break
		}
		// One short write transaction records the finished attempts
		// and claims mail for the free slots (leases written before
		// any sender dials).
		free := capacity - inflight
		wait := w.poll
		claimed, err := w.step(ctx, pending, free)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.log.Error("outbox transaction failed; will retry", "err", err, "results", len(pending))
			wait = time.Second
		} else {
			pending = pending[:0]
			for _, m := range claimed {
				jobs <- m
				inflight++
			}
			// When every slot is busy, a finished attempt wakes us;
			// otherwise sleep until the next mail is due.
			if len(claimed) < free {
				if next, ok, err := w.nextDue(ctx); err != nil {
					w.log.Error("reading the outbox schedule failed", "err", err)
					wait = time.Second
				} else if ok {
					wait = min(wait, max(next.Sub(w.now()), 0))
				}
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-w.kick:
		case r := <-results:
			pending = append(pending, r)
			inflight--
		case <-timer.C:
		}
	}
	// Shutdown: senders see ctx and abort; record what they report.
	close(jobs)
	wg.Wait()
	close(results)
	for r := range results {
		pending = append(pending, r)
	}
	if len(pending) > 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := w.step(rctx, pending, 0); err != nil {
			w.log.Error("recording delivery results at shutdown failed; the mail will be retried after its lease", "err", err, "count", len(pending))
		}
	}
	return nil
}

// step records finished attempts and claims up to limit due mails in
// one write transaction. The lease (next_attempt_at) of claimed mail
// is written before any sender dials it.
func (w *Worker) step(ctx context.Context, rs []result, limit int) ([]*store.OutboxMail, error) {
	if len(rs) == 0 && limit <= 0 {
		return nil, nil
	}
	now := w.now()
	var got []store.OutboxMail
	err := w.st.Write(ctx, func(tx *store.Tx) error {
		if err := w.record(tx, now, rs); err != nil {
			return err
		}
		if limit <= 0 {
			return nil
		}
		var err error
		got, err = tx.ClaimOutbox(now, limit, func(attempt int) time.Time {
			return now.Add(max(w.backoff(attempt), 2*w.attemptTimeout))
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*store.OutboxMail, len(got))
	for i := range got {
		out[i] = &got[i]
	}
	return out, nil
}

func (w *Worker) nextDue(ctx context.Context) (time.Time, bool, error) {
	var next time.Time
	var ok bool
	err := w.st.Read(ctx, func(tx *store.Tx) error {
		var err error
		next, ok, err = tx.NextOutboxDue()
		return err
	})
	return next, ok, err
}

// backoff is the delay after the attempt-th failed attempt: exponential,
// computed in float64 (no overflow at high attempt counts), capped,
// with ±25% jitter so that mail queued together does not retry in
// lockstep against a recovering relay.
func (w *Worker) backoff(attempt int) time.Duration {
	d := float64(w.minBackoff) * math.Pow(2, float64(max(attempt, 1)-1))
	limit := float64(w.maxBackoff)
	d = math.Min(d, limit)
	d *= 0.75 + 0.5*w.rand()
	return time.Duration(math.Min(d, limit))
}

// record writes the outcome of attempts: sent, failed (with a history
// entry on the ticket) or queued again at its next attempt time.
func (w *Worker) record(tx *store.Tx, now time.Time, rs []result) error {
	for _, r := range rs {
		m := r.m
		if r.err == nil {
			note := ""
			if len(r.rejected) > 0 {
				note = "refused by the relay: " + strings.Join(r.rejected, "; ")
				if err := w.history(tx, m, note); err != nil {
					return err
				}
			}
			if err := tx.MarkOutboxSent(m.ID, now, note); err != nil {
				return err
			}
			w.log.Debug("sent", "id", m.ID, "ticket", m.TicketID, "message_id", m.MessageID)
			continue
		}
		errText := r.err.Error()
		permanent := isPermanent(r.err)
		if !permanent && !errors.Is(r.err, errInterrupted) && (m.Attempts >= w.maxAttempts || now.Sub(m.CreatedAt) >= w.retryFor) {
			errText = fmt.Sprintf("gave up after %d attempts: %s", m.Attempts, errText)
			permanent = true
		}
		if permanent {
			if err := tx.MarkOutboxFailed(m.ID, errText); err != nil {
				return err
			}
			if err := w.history(tx, m, errText); err != nil {
				return err
			}
			w.log.Warn("delivery failed", "id", m.ID, "ticket", m.TicketID, "to", m.RcptTo, "err", errText)
			continue
		}
		next := now.Add(w.backoff(m.Attempts))
		if errors.Is(r.err, errInterrupted) {
			next = now // not the relay's fault: go again at the next start
		}
		if err := tx.RetryOutbox(m.ID, next, errText); err != nil {
			return err
		}
		w.log.Info("delivery deferred", "id", m.ID, "ticket", m.TicketID, "attempt", m.Attempts, "next", next, "err", errText)
	}
	return nil
}

// history records on the ticket that mail could not be delivered.
func (w *Worker) history(tx *store.Tx, m *store.OutboxMail, why string) error {
	if m.TicketID == nil {
		return nil
	}
	note := fmt.Sprintf("%s mail to %s (Message-ID %s) could not be delivered: %s", m.Kind, strings.Join(m.RcptTo, ", "), m.MessageID, why)
	v := "failed"
	return tx.AddHistory(store.History{TicketID: *m.TicketID, At: w.now(), ActorType: "system", Actor: "outbound",
		ConversationID: m.ConversationID, Action: "delivery_failed", Field: "outbound", NewValue: &v, Note: note})
}

// isPermanent is the one place that decides whether a delivery error
// is final: a 5xx reply from the relay (RFC 5321 §4.2.1). Everything
// else — 4xx replies, refused or dropped connections, TLS errors,
// timeouts, our own shutdown — is temporary.
func isPermanent(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code >= 500 && se.Code <= 599
	}
	return false
}

// conn is a sender's relay connection.
type conn struct {
	raw net.Conn
	c   *smtp.Client
}

func (c *conn) close() {
	if c == nil {
		return
	}
	c.raw.SetDeadline(time.Now().Add(2 * time.Second))
	c.c.Quit()
	c.c.Close()
}

// sender delivers jobs one at a time over one relay connection, kept
// open between messages and closed after idle time, on any error, or
// when jobs is closed.
func (w *Worker) sender(ctx context.Context, jobs <-chan *store.OutboxMail, results chan<- result) {
	var cur *conn
	defer func() { cur.close() }()
	idle := time.NewTimer(w.idle)
	defer idle.Stop()
	for {
		select {
		case m, ok := <-jobs:
			if !ok {
				return
			}
			r := w.safeDeliver(ctx, &cur, m)
			results <- r
			idle.Reset(w.idle)
		case <-idle.C:
			cur.close()
			cur = nil
		}
	}
}

// safeDeliver runs deliver and turns a panic into a temporary failure
// of that message, so one bad message cannot stop the worker.
func (w *Worker) safeDeliver(ctx context.Context, cur **conn, m *store.OutboxMail) (r result) {
	defer func() {
		if p := recover(); p != nil {
			(*cur).close()
			*cur = nil
			r = result{m: m, err: fmt.Errorf("panic during delivery: %v", p)}
			w.log.Error("panic during delivery", "id", m.ID, "panic", p)
		}
	}()
	return w.deliver(ctx, cur, m)
}

// deliver makes one attempt: MAIL, RCPT for each recipient, DATA.
func (w *Worker) deliver(ctx context.Context, cur **conn, m *store.OutboxMail) result {
	if ctx.Err() != nil {
		return result{m: m, err: errInterrupted}
	}
	// Stop well before the lease ends, so no other worker can take the
	// mail while this attempt may still succeed.
	deadline := w.now().Add(w.attemptTimeout)
	if lease := m.NextAttemptAt.Add(-5 * time.Second); lease.Before(deadline) {
		deadline = lease
	}
	if !deadline.After(w.now()) {
		return result{m: m, err: errors.New("lease expired before delivery started")}
	}
	actx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if c := *cur; c != nil {
		stop := context.AfterFunc(actx, func() { c.raw.Close() })
		err := c.c.Reset()
		stop()
		if err != nil {
			c.close()
			*cur = nil
		}
	}
	if *cur == nil {
		c, err := w.dial(actx)
		if err != nil {
			return result{m: m, err: fmt.Errorf("relay %s: %w", w.relay.addr, err)}
		}
		*cur = c
	}
	c := *cur
	stop := context.AfterFunc(actx, func() { c.raw.Close() })
	defer stop()
	fail := func(err error) result {
		switch {
		case ctx.Err() != nil:
			err = fmt.Errorf("%w: %v", errInterrupted, err)
		case actx.Err() != nil && !isPermanent(err):
			err = fmt.Errorf("%w (attempt timed out)", err)
		}
		c.close()
		*cur = nil
		return result{m: m, err: err}
	}
	if err := c.c.Mail(m.MailFrom, nil); err != nil {
		return fail(fmt.Errorf("MAIL FROM: %w", err))
	}
	var rejected []string
	var lastReject error
	for _, rcpt := range m.RcptTo {
		if err := c.c.Rcpt(rcpt, nil); err != nil {
			if !isPermanent(err) {
				return fail(fmt.Errorf("RCPT TO <%s>: %w", rcpt, err))
			}
			lastReject = fmt.Errorf("RCPT TO <%s>: %w", rcpt, err)
			rejected = append(rejected, lastReject.Error())
		}
	}
	if len(rejected) == len(m.RcptTo) {
		if lastReject == nil {
			lastReject = &smtp.SMTPError{Code: 554, Message: "no recipients"}
		}
		// The connection is fine; the transaction is reset next time.
		return result{m: m, err: lastReject}
	}
	wc, err := c.c.Data()
	if err != nil {
		return fail(fmt.Errorf("DATA: %w", err))
	}
	if _, err := wc.Write(m.Raw); err != nil {
		return fail(fmt.Errorf("DATA: %w", err))
	}
	if err := wc.Close(); err != nil {
		return fail(fmt.Errorf("DATA: %w", err))
	}
	return result{m: m, rejected: rejected}
}

// dial connects to the relay, says EHLO, secures the connection as
// configured and authenticates when a username is set.
func (w *Worker) dial(ctx context.Context) (*conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", w.relay.addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	var c *smtp.Client
	switch w.relay.tls {
	case "implicit":
		tc := tls.Client(raw, w.relay.tlsConf)
		raw = tc
		c = smtp.NewClient(tc)
		err = c.Hello(w.relay.helo)
	case "none":
		c = smtp.NewClient(raw)
		err = c.Hello(w.relay.helo)
	default: // starttls
		c, err = smtp.NewClientStartTLS(raw, w.relay.tlsConf)
		if err == nil {
			err = c.Hello(w.relay.helo)
		}
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = 3 * time.Minute
	if w.relay.username != "" {
		pass, err := w.relay.password()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("relay password: %w", err)
		}
		var mech sasl.Client
		switch {
		case c.SupportsAuth("PLAIN"):
			mech = sasl.NewPlainClient("", w.relay.username, pass)
		case c.SupportsAuth("LOGIN"):
			mech = sasl.NewLoginClient(w.relay.username, pass)
		default:
			raw.Close()
			return nil, errors.New("relay offers neither AUTH PLAIN nor LOGIN")
		}
		if err := c.Auth(mech); err != nil {
			raw.Close()
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return &conn{raw: raw, c: c}, nil
}
