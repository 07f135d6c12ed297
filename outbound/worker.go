package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/internal/lazyregexp"
	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// Worker delivers queued mail through the configured relays. Build it
// with Outbox.Worker, start it with Run; Kick wakes it after a commit
// that queued mail.
type Worker struct {
	// metrics counts delivery results (nil: not counted).
	metrics *metrics.Metrics
	o       *Outbox
	st      *store.Store
	log     *slog.Logger
	kick    chan struct{}
	// relay is outbound.relay (addr "" when none is configured);
	// byName maps the names of channels with their own relay to it,
	// byChannel their store ids (read when Run starts), and byFrom
	// their addresses (lower case). A mail goes through the relay of
	// its channel, else of the channel whose address is its envelope
	// sender, else outbound.relay.
	relay     *relay
	byName    map[string]*relay
	byChannel map[int64]*relay
	byFrom    map[string]*relay

	// conns is the size of outbound.relay's connection pool.
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
	// verp gives each mail its signed envelope sender (envelopeSender).
	verp bool
	// owner is the instance the worker claims mail as ("" for none).
	owner string

	now  func() time.Time
	rand func() float64
}

// relay is one SMTP relay and the state of its connection pool.
type relay struct {
	name     string // "outbound.relay" or "channel <name>", for logs
	addr     string
	tls      string // starttls, implicit, none
	username string
	password func() (string, error)
	helo     string
	tlsConf  *tls.Config
	conns    int // pool size; 0 means the worker's conns

	// After a failed connection, attempts for this relay fail at once
	// with the same error until downUntil, so a relay that is down
	// does not hold every delivery slot while each attempt times out.
	mu        sync.Mutex
	downUntil time.Time
	downErr   error
}

func newRelay(name, addr, mode, username string, password func() (string, error), helo string, conns int) *relay {
	r := &relay{name: name, addr: addr, tls: strings.ToLower(mode), username: username, password: password, helo: helo, conns: conns}
	if r.tls == "" {
		r.tls = "starttls"
	}
	if r.helo == "" {
		r.helo = "localhost"
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		r.tlsConf = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return r
}

// down returns the last connection error while the relay is held down.
func (r *relay) down(now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.downUntil) {
		return r.downErr
	}
	return nil
}

func (r *relay) setDown(until time.Time, err error) {
	r.mu.Lock()
	r.downUntil, r.downErr = until, err
	r.mu.Unlock()
}

// Worker builds the delivery worker for st. It does not start it.
func (o *Outbox) Worker(st *store.Store, logger *slog.Logger) *Worker {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	oc := o.cfg.Outbound
	helo := o.cfg.SMTP.Hostname
	w := &Worker{
		o: o, st: st, log: logger.With("component", "outbox"), kick: make(chan struct{}, 1),
		relay:  newRelay("outbound.relay", oc.Relay, oc.TLS, oc.Username, oc.Password.Value, helo, 0),
		byFrom: map[string]*relay{}, byName: map[string]*relay{}, byChannel: map[int64]*relay{},
		conns: oc.Connections, maxAttempts: oc.MaxAttempts, retryFor: oc.RetryFor.Duration,
		minBackoff: time.Minute, maxBackoff: 12 * time.Hour,
		attemptTimeout: 5 * time.Minute, idle: 30 * time.Second, poll: 30 * time.Second,
		now: time.Now, rand: rand.Float64, verp: oc.VERPEnabled(),
	}
	for _, ch := range o.cfg.Channels {
		rc := ch.Relay
		if rc == nil || rc.Address == "" {
			continue
		}
		r := newRelay("channel "+ch.Name, rc.Address, rc.TLS, rc.Username, rc.Password.Value, helo, rc.Connections)
		w.byName[ch.Name] = r
		for _, a := range ch.Addresses {
			w.byFrom[strings.ToLower(a)] = r
		}
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

// WithMetrics makes the worker count delivery results in m.
func (w *Worker) WithMetrics(m *metrics.Metrics) *Worker {
	w.metrics = m
	return w
}

// WithOwner makes the worker claim mail as the instance id (a row of
// the instances table its process keeps fresh): if the process dies
// mid-delivery, another instance takes over the mail it claimed as
// soon as its heartbeat is older than store.InstanceLive, instead of
// at the end of the claim's lease (twice the attempt timeout).
func (w *Worker) WithOwner(id string) *Worker {
	w.owner = id
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

// errNoRelay marks mail whose channel has no relay: it stays queued,
// without counting attempts, until one is configured.
var errNoRelay = errors.New("no outbound relay configured for this mail's channel")

// result is the outcome of one delivery attempt.
type result struct {
	m   *store.OutboxMail
	err error
	// refused are the recipients the relay refused with 5xx at RCPT
	// (when err is nil, the others got the mail).
	refused []refusal
}

// refusal is one recipient refused at RCPT.
type refusal struct {
	rcpt string
	err  error
}

// relayOf is the relay that delivers m: its channel's own relay, found
// by the channel id or else by the envelope sender (the channel
// address it was written with), else outbound.relay.
func (w *Worker) relayOf(m *store.OutboxMail) *relay {
	if m.ChannelID != nil {
		if r, ok := w.byChannel[*m.ChannelID]; ok {
			return r
		}
	}
	if r, ok := w.byFrom[strings.ToLower(m.MailFrom)]; ok {
		return r
	}
	return w.relay
}

// relays lists the distinct relays that have an address.
func (w *Worker) relays() []*relay {
	var out []*relay
	seen := map[*relay]bool{}
	for _, r := range append([]*relay{w.relay}, slices.Collect(maps.Values(w.byFrom))...) {
		if r.addr != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *relay) int { return strings.Compare(a.name, b.name) })
	return out
}

// Run delivers mail until ctx ends, then waits for attempts in flight
// to stop, records their outcome and returns nil. With no relay
// configured at all it only waits: mail stays queued (so does mail of
// a channel without a relay when only other channels have one). It
// returns an error only when a relay password cannot be read.
//
// Goroutines: Run is the scheduler; for each relay it starts a pool of
// senders (outbound.connections, or the channel relay's connections),
// each owning one connection to that relay, and stops them all before
// returning.
func (w *Worker) Run(ctx context.Context) error {
	relays := w.relays()
	if len(relays) == 0 {
		w.log.Warn("no outbound relay configured: mail stays queued")
		<-ctx.Done()
		return nil
	}
	total := 0
	for _, r := range relays {
		if r.username != "" {
			if _, err := r.password(); err != nil {
				return fmt.Errorf("%s password: %w", r.name, err)
			}
		}
		if r.conns <= 0 {
			r.conns = w.conns
		}
		total += r.conns
	}
	if len(w.byName) > 0 {
		if err := w.readChannelIDs(ctx); err != nil {
			// Routing by envelope sender still works.
			w.log.Error("reading channel ids failed; channel relays are chosen by envelope sender", "err", err)
		}
	}
	// Slots beyond the connections keep claims and results batched:
	// one transaction (one fsync) serves many messages. Each pool's
	// queue holds every slot, so handing out a claim never blocks.
	capacity := max(8*total, 32)
	pools := map[*relay]chan *store.OutboxMail{}
	results := make(chan result, capacity)
	var wg sync.WaitGroup
	for _, r := range relays {
		jobs := make(chan *store.OutboxMail, capacity)
		pools[r] = jobs
		for range r.conns {
			wg.Go(func() { w.sender(ctx, r, jobs, results) })
		}
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
				jobs, ok := pools[w.relayOf(m)]
				if !ok {
					// Recorded by the next step, right away.
					pending = append(pending, result{m: m, err: errNoRelay})
					wait = 0
					continue
				}
				jobs <- m
				inflight++
			}
			// When every slot is busy, a finished attempt wakes us;
			// otherwise sleep until the next mail is due.
			if len(claimed) < free && len(pending) == 0 {
				if next, ok, err := w.nextDue(ctx); err != nil {
					if ctx.Err() == nil { // not a shutdown
						w.log.Error("reading the outbox schedule failed", "err", err)
					}
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
	for _, jobs := range pools {
		close(jobs)
	}
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

// readChannelIDs fills byChannel from the store's channels.
func (w *Worker) readChannelIDs(ctx context.Context) error {
	return w.st.Read(ctx, func(tx *store.Tx) error {
		chs, err := tx.Channels()
		if err != nil {
			return err
		}
		for _, ch := range chs {
			if r, ok := w.byName[ch.Name]; ok {
				w.byChannel[ch.ID] = r
			}
		}
		return nil
	})
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
		got, err = tx.ClaimOutbox(w.owner, now, limit, func(attempt int) time.Time {
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
		// Recipients that do not exist are flagged bouncing in the
		// same transaction, so no further mail is queued to them.
		var flagged []string
		for _, f := range r.refused {
			if !isUnknownRecipient(f.err) {
				continue
			}
			reason := fmt.Sprintf("relay refused %s (Message-ID %s): %v", f.rcpt, m.MessageID, f.err)
			var status string
			var se *smtp.SMTPError
			if errors.As(f.err, &se) && se.EnhancedCode[0] > 0 {
				status = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
			}
			if _, err := tx.MarkBouncing(strings.ToLower(f.rcpt), store.BounceFlag{Reason: reason, Status: status}); err != nil {
				return err
			}
			flagged = append(flagged, f.rcpt)
		}
		flagNote := ""
		if len(flagged) > 0 {
			flagNote = "; flagged as bouncing: " + strings.Join(flagged, ", ")
		}
		if r.err == nil {
			note := ""
			if len(r.refused) > 0 {
				texts := make([]string, len(r.refused))
				for i, f := range r.refused {
					texts[i] = f.err.Error()
				}
				note = "refused by the relay: " + strings.Join(texts, "; ")
				if err := w.history(tx, m, note+flagNote); err != nil {
					return err
				}
			}
			if err := tx.MarkOutboxSent(m.ID, now, note); err != nil {
				return err
			}
			w.metrics.Delivery("sent")
			w.log.Debug("sent", "id", m.ID, "ticket", ticketOf(m), "message_id", m.MessageID)
			continue
		}
		if errors.Is(r.err, errNoRelay) {
			if err := tx.ReleaseOutbox(m.ID, now.Add(w.poll), r.err.Error()); err != nil {
				return err
			}
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
			if err := w.history(tx, m, errText+flagNote); err != nil {
				return err
			}
			w.metrics.Delivery("failed")
			w.log.Warn("delivery failed", "id", m.ID, "ticket", ticketOf(m), "to", m.RcptTo, "err", errText)
			continue
		}
		next := now.Add(w.backoff(m.Attempts))
		if errors.Is(r.err, errInterrupted) {
			next = now // not the relay's fault: go again at the next start
		}
		if err := tx.RetryOutbox(m.ID, next, errText); err != nil {
			return err
		}
		w.metrics.Delivery("retry")
		w.log.Info("delivery deferred", "id", m.ID, "ticket", ticketOf(m), "attempt", m.Attempts, "next", next, "err", errText)
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
// is final: a 5xx reply from the relay to MAIL, RCPT or DATA (RFC 5321
// §4.2.1). Everything else — 4xx replies, refused or dropped
// connections, TLS errors, timeouts, our own shutdown, and any reply
// while connecting (greeting, EHLO, STARTTLS, AUTH: a problem of the
// relay or of our credentials, not of the message) — is temporary.
func isPermanent(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code >= 500 && se.Code <= 599
	}
	return false
}

// unknownUser matches the texts of relays that say "no such mailbox"
// without an enhanced status code.
var unknownUser = lazyregexp.New(`(?i)\b(user unknown|unknown user|no such (user|mailbox|recipient|address)|unknown (recipient|mailbox|address)|(mailbox|user|recipient|address) (not found|does not exist|doesn't exist)|invalid (recipient|mailbox)|recipient not found|unrouteable address)\b`)

// isUnknownRecipient reports whether a refusal at RCPT says the
// address does not exist, so the contact should be flagged bouncing:
// an enhanced status 5.1.x (RFC 3463 §3.2: addressing status, except
// 5.1.7 and 5.1.8, which are about our sender address), or, from a
// relay that gives no detail (X.0.0 or none), a 550/551/553 reply whose
// text says the user is unknown. Policy refusals (5.7.x), full
// mailboxes (5.2.2) and the like do not flag the address.
func isUnknownRecipient(err error) bool {
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code < 500 || se.Code > 599 {
		return false
	}
	ec := se.EnhancedCode
	if ec[0] == 5 && ec[1] == 1 {
		return ec[2] != 7 && ec[2] != 8
	}
	if ec[0] == 5 && ec[1] != 0 {
		return false
	}
	switch se.Code {
	case 550, 551, 553:
		return unknownUser.MatchString(se.Message)
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
func (w *Worker) sender(ctx context.Context, r *relay, jobs <-chan *store.OutboxMail, results chan<- result) {
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
			results <- w.safeDeliver(ctx, r, &cur, m)
			idle.Reset(w.idle)
		case <-idle.C:
			cur.close()
			cur = nil
		}
	}
}

// safeDeliver runs deliver and turns a panic into a temporary failure
// of that message, so one bad message cannot stop the worker.
func (w *Worker) safeDeliver(ctx context.Context, rl *relay, cur **conn, m *store.OutboxMail) (r result) {
	defer func() {
		if p := recover(); p != nil {
			(*cur).close()
			*cur = nil
			r = result{m: m, err: fmt.Errorf("panic during delivery: %v", p)}
			w.log.Error("panic during delivery", "id", m.ID, "panic", p)
		}
	}()
	return w.deliver(ctx, rl, cur, m)
}

// deliver makes one attempt through r: MAIL, RCPT for each recipient,
// DATA, on the sender's connection (reset with RSET) or a new one.
func (w *Worker) deliver(ctx context.Context, r *relay, cur **conn, m *store.OutboxMail) result {
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
		if err := r.down(w.now()); err != nil {
			return result{m: m, err: err}
		}
		c, err := w.dial(actx, r)
		if err != nil {
			if ctx.Err() != nil {
				return result{m: m, err: fmt.Errorf("%w: relay %s: %v", errInterrupted, r.addr, err)}
			}
			// %v: a reply while connecting is never the message's fault
			// (see isPermanent).
			err = fmt.Errorf("relay %s: %v", r.addr, err)
			r.setDown(w.now().Add(min(w.minBackoff, 10*time.Second)), err)
			return result{m: m, err: err}
		}
		r.setDown(time.Time{}, nil)
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
	if err := c.c.Mail(w.envelopeSender(m), nil); err != nil {
		return fail(fmt.Errorf("MAIL FROM: %w", err))
	}
	var refused []refusal
	for _, rcpt := range m.RcptTo {
		if err := c.c.Rcpt(rcpt, nil); err != nil {
			if !isPermanent(err) {
				return fail(fmt.Errorf("RCPT TO <%s>: %w", rcpt, err))
			}
			refused = append(refused, refusal{rcpt: rcpt, err: fmt.Errorf("RCPT TO <%s>: %w", rcpt, err)})
		}
	}
	if len(refused) == len(m.RcptTo) {
		var err error = &smtp.SMTPError{Code: 554, Message: "no recipients"}
		if len(refused) > 0 {
			err = refused[len(refused)-1].err
			if len(refused) > 1 {
				texts := make([]string, len(refused))
				for i, f := range refused {
					texts[i] = f.err.Error()
				}
				err = fmt.Errorf("every recipient refused: %s: %w", strings.Join(texts[:len(texts)-1], "; "), err)
			}
		}
		// The connection is fine; the transaction is reset next time.
		return result{m: m, err: err, refused: refused}
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
	return result{m: m, refused: refused}
}

// envelopeSender is the MAIL FROM of an attempt: the channel address
// the mail was written with, plus-addressed with the signed bounce
// token of this outbox row (VERP), so that a delivery status report
// sent back to it proves which mail failed (threading.Signer.
// BounceToken). The row keeps the plain channel address, which routes
// it to its channel's relay; every attempt computes the same sender.
func (w *Worker) envelopeSender(m *store.OutboxMail) string {
	if !w.verp || m.ID <= 0 || w.o.signer == nil || !strings.Contains(m.MailFrom, "@") {
		return m.MailFrom
	}
	return threading.ReplyAddress(m.MailFrom, w.o.signer.BounceToken(m.ID))
}

// dial connects to relay r, says EHLO, secures the connection as
// configured and authenticates when a username is set.
func (w *Worker) dial(ctx context.Context, r *relay) (*conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	var c *smtp.Client
	switch r.tls {
	case "implicit":
		tc := tls.Client(raw, r.tlsConf)
		raw = tc
		c = smtp.NewClient(tc)
		err = c.Hello(r.helo)
	case "none":
		c = smtp.NewClient(raw)
		err = c.Hello(r.helo)
	default: // starttls
		c, err = smtp.NewClientStartTLS(raw, r.tlsConf)
		if err == nil {
			err = c.Hello(r.helo)
		}
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = 3 * time.Minute
	if r.username != "" {
		pass, err := r.password()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("relay password: %w", err)
		}
		var mech sasl.Client
		switch {
		case c.SupportsAuth("PLAIN"):
			mech = sasl.NewPlainClient("", r.username, pass)
		case c.SupportsAuth("LOGIN"):
			mech = sasl.NewLoginClient(r.username, pass)
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

// ticketOf is a mail's ticket id as logged: a value (0 for none), never
// a pointer.
func ticketOf(m *store.OutboxMail) int64 {
	if m.TicketID == nil {
		return 0
	}
	return *m.TicketID
}

// DeliveryChanges names the settings a Worker reads that differ
// between the configurations a and b, sorted: outbound.relay and its
// connection settings, outbound.verp (the envelope sender),
// smtp.hostname (the EHLO name), and for each channel with its own relay, channels.<name>.relay and
// channels.<name>.addresses (the addresses route mail to that relay).
// A running Worker keeps what it was built with, so a reload that
// changes any of them must start a new Worker for the next delivery
// to use them. Templates, DKIM and sending switches are read when mail
// is queued (by the Outbox), not by the Worker.
func DeliveryChanges(a, b *config.Config) []string {
	va, vb := deliverySettings(a), deliverySettings(b)
	var out []string
	for k, v := range va {
		if w, ok := vb[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range vb {
		if _, ok := va[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// deliverySettings flattens the settings a Worker reads into
// comparable strings, keyed by their configuration path. Secrets are
// compared by where they come from (a file or variable is read at
// each connection).
func deliverySettings(cfg *config.Config) map[string]string {
	secret := func(s config.Secret) string { return s.Inline + "\x00" + s.File + "\x00" + s.Env }
	oc := cfg.Outbound
	m := map[string]string{
		"outbound.relay":        oc.Relay,
		"outbound.tls":          oc.TLS,
		"outbound.username":     oc.Username,
		"outbound.password":     secret(oc.Password),
		"outbound.connections":  fmt.Sprint(oc.Connections),
		"outbound.max_attempts": fmt.Sprint(oc.MaxAttempts),
		"outbound.retry_for":    oc.RetryFor.Duration.String(),
		"outbound.verp":         fmt.Sprint(oc.VERPEnabled()),
		"smtp.hostname":         cfg.SMTP.Hostname,
	}
	for _, ch := range cfg.Channels {
		rc := ch.Relay
		if rc == nil || rc.Address == "" {
			continue
		}
		p := "channels." + ch.Name + "."
		m[p+"relay"] = fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%d", rc.Address, rc.TLS, rc.Username, secret(rc.Password), rc.Connections)
		addrs := make([]string, len(ch.Addresses))
		for i, a := range ch.Addresses {
			addrs[i] = strings.ToLower(a)
		}
		slices.Sort(addrs)
		m[p+"addresses"] = strings.Join(addrs, ",")
	}
	return m
}
