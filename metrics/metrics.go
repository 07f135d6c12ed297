// Package metrics defines deskmail's metrics in one place and serves
// them in the Prometheus text exposition format (version 0.0.4). A
// *Metrics is built once in cmd/deskmail and handed to each component;
// every method is safe on a nil *Metrics, so tests and one-shot
// commands simply pass nil.
//
// It writes the format itself instead of linking the Prometheus client
// library: that library (with procfs, protobuf and client_model)
// registered its default collectors at program start, which cost every
// `deskmail ingest -` process — one per mail behind an MTA pipe, which
// never serves metrics — about a millisecond of CPU.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Metrics holds every metric.
type Metrics struct {
	start    time.Time
	families []*family

	received      *family
	actions       *family
	parseWarnings *family
	failed        *family
	latency       *family
	batchSize     *family

	smtpSessions     *family
	smtpRejections   *family
	smtpAuthLockouts *family

	imapPolls  *family
	imapErrors *family

	deliveries *family
	// read reads the database gauges (see ReadStore).
	read atomic.Pointer[func(context.Context) (StoreStats, error)]

	apiRequests      *family
	apiLoginFailures *family
	consoleSignIns   *family
	apiLoginLockouts *family
}

// New creates the metrics (with a few Go runtime and process gauges).
func New() *Metrics {
	m := &Metrics{start: time.Now()}
	add := func(f *family) *family {
		m.families = append(m.families, f)
		return f
	}
	m.received = add(counter("deskmail_messages_received_total",
		"Messages handed to the pipeline, by channel and source (smtp, imap, pipe, api).", "channel", "source"))
	m.actions = add(counter("deskmail_message_actions_total",
		"What the pipeline did with each message (created, appended, reopened, followup_created, duplicate, ignored, bounce).", "channel", "action"))
	m.parseWarnings = add(counter("deskmail_parse_warnings_total", "Warnings recorded while parsing messages."))
	m.failed = add(counter("deskmail_messages_failed_total",
		"Messages kept raw because they could not be parsed or threaded, by stage.", "stage"))
	m.latency = add(histogram("deskmail_pipeline_seconds",
		"Time from a message entering the pipeline to its commit.", exponentialBuckets(0.0005, 2, 16)))
	m.batchSize = add(histogram("deskmail_commit_batch_messages", "Messages per group commit.", exponentialBuckets(1, 2, 10)))
	m.smtpSessions = add(counter("deskmail_smtp_sessions_total", "SMTP sessions accepted."))
	m.smtpRejections = add(counter("deskmail_smtp_rejections_total", "SMTP commands or sessions refused, by reason.", "reason"))
	m.smtpAuthLockouts = add(counter("deskmail_smtp_auth_lockouts_total",
		"User names and client addresses locked after failed SMTP AUTH, by scope (user, address).", "scope"))
	m.imapPolls = add(counter("deskmail_imap_polls_total", "IMAP polls by channel and result (ok, error).", "channel", "result"))
	m.imapErrors = add(counter("deskmail_imap_errors_total",
		"IMAP errors by channel and kind (connect, auth, fetch, post_action).", "channel", "kind"))
	m.deliveries = add(counter("deskmail_outbox_deliveries_total", "Outbound delivery attempts by result (sent, retry, failed).", "result"))
	m.apiRequests = add(counter("deskmail_api_requests_total", "API requests by HTTP status code.", "code"))
	m.apiLoginFailures = add(counter("deskmail_api_login_failures_total",
		"Failed API logins by reason (no_key, bad_key, address_blocked, key_locked).", "reason"))
	m.consoleSignIns = add(counter("deskmail_console_signin_failures_total",
		"Failed web console sign-ins by reason (bad_password, locked).", "reason"))
	m.apiLoginLockouts = add(counter("deskmail_api_login_lockouts_total",
		"Client addresses and key prefixes locked after failed API logins, by scope (address, key).", "scope"))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write(m.expose(r.Context()))
	})
}

// Family is one metric as Gather reports it.
type Family struct {
	Name string
	// Type is "counter", "gauge" or "histogram".
	Type    string
	Samples []Sample
}

// Sample is one series of a family: its label values in the order of
// the label names' sorting, and its value (a histogram's count).
type Sample struct {
	Labels []string
	Value  float64
}

// Gather returns every metric's current values, sorted by name (for
// tests); nil on a nil *Metrics.
func (m *Metrics) Gather() []Family {
	if m == nil {
		return nil
	}
	return m.gather(context.Background())
}

// Message records one message through the pipeline.
func (m *Metrics) Message(channel, source, action string, warnings int, took time.Duration) {
	if m == nil {
		return
	}
	m.received.add(1, channel, source)
	m.actions.add(1, channel, action)
	m.parseWarnings.add(float64(warnings))
	m.latency.observe(took.Seconds())
}

// Failed counts a message kept raw because a stage failed
// ("parse", "thread", "empty").
func (m *Metrics) Failed(stage string) {
	if m == nil {
		return
	}
	m.failed.add(1, stage)
}

// Batch records the size of one group commit.
func (m *Metrics) Batch(n int) {
	if m == nil {
		return
	}
	m.batchSize.observe(float64(n))
}

// SMTPSession counts an accepted SMTP session.
func (m *Metrics) SMTPSession() {
	if m == nil {
		return
	}
	m.smtpSessions.add(1)
}

// SMTPRejection counts a refusal by reason (unknown_recipient,
// too_big, too_many_recipients, rate_limited, too_many_connections,
// auth_failed, timeout, store_failure, ...).
func (m *Metrics) SMTPRejection(reason string) {
	if m == nil {
		return
	}
	m.smtpRejections.add(1, reason)
}

// SMTPAuthLockout counts a temporary lockout after repeated failed
// SMTP AUTH: scope "user" (one user name, from any address) or
// "address" (one client address, any user name).
func (m *Metrics) SMTPAuthLockout(scope string) {
	if m == nil {
		return
	}
	m.smtpAuthLockouts.add(1, scope)
}

// IMAPPoll counts a poll result ("ok" or "error").
func (m *Metrics) IMAPPoll(channel, result string) {
	if m == nil {
		return
	}
	m.imapPolls.add(1, channel, result)
}

// IMAPError counts an IMAP error by kind.
func (m *Metrics) IMAPError(channel, kind string) {
	if m == nil {
		return
	}
	m.imapErrors.add(1, channel, kind)
}

// StoreStats are the gauges read from the database.
type StoreStats struct {
	// OutboxQueued is outbound mail waiting for delivery.
	OutboxQueued int
	// OutboxOldestQueued is the age of the oldest queued mail (0 when
	// none is queued).
	OutboxOldestQueued time.Duration
	// OutboxFailed is outbound mail given up as failed.
	OutboxFailed int
	// FailedMessages is incoming mail kept raw because it could not be
	// parsed or threaded.
	FailedMessages int
	// IMAPSetAside is mailbox messages the server would not hand over,
	// set aside after repeated failures.
	IMAPSetAside int
	// Conflicts counts the batches this process's store ran again
	// because PostgreSQL aborted them for a conflict with another
	// transaction (store.ErrConflict): a counter, not read from the
	// database.
	Conflicts int64
}

// ReadStore makes every scrape read the database gauges with read, so
// they are exact at scrape time (mail queued by `deskmail ingest` in
// another process counts too). A read that fails leaves them out of
// that scrape. Without ReadStore they are not reported.
func (m *Metrics) ReadStore(read func(ctx context.Context) (StoreStats, error)) {
	if m == nil {
		return
	}
	m.read.Store(&read)
}

// storeGauges reads the database gauges for one scrape (none without
// ReadStore, or when the read fails).
func (m *Metrics) storeGauges(ctx context.Context) []*family {
	read := m.read.Load()
	if read == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := (*read)(ctx)
	if err != nil {
		return nil
	}
	conflicts := counter("deskmail_store_conflicts_total", "Batches run again because PostgreSQL aborted them for a conflict with another transaction (a deadlock between instances), by this process.")
	conflicts.get(nil).value = float64(s.Conflicts)
	return []*family{
		gauge("deskmail_outbox_queued", "Outbound messages waiting for delivery (read from the database at each scrape).", float64(s.OutboxQueued)),
		gauge("deskmail_outbox_oldest_queued_seconds", "Age of the oldest outbound message waiting for delivery; 0 when none waits.", s.OutboxOldestQueued.Seconds()),
		gauge("deskmail_outbox_failed", "Outbound messages given up as failed.", float64(s.OutboxFailed)),
		gauge("deskmail_failed_messages", "Incoming messages kept raw because they could not be parsed or threaded (deskmail status lists them).", float64(s.FailedMessages)),
		gauge("deskmail_imap_set_aside", "Mailbox messages the IMAP server would not hand over, set aside after repeated failures.", float64(s.IMAPSetAside)),
		conflicts,
	}
}

// Delivery counts a delivery attempt ("sent", "retry", "failed").
func (m *Metrics) Delivery(result string) {
	if m == nil {
		return
	}
	m.deliveries.add(1, result)
}

// APIRequest counts an API response by status code.
func (m *Metrics) APIRequest(code int) {
	if m == nil {
		return
	}
	m.apiRequests.add(1, strconv.Itoa(code))
}

// APILoginFailure counts a refused API login by reason: no_key,
// bad_key, address_blocked (the client address is over its limit),
// key_locked (the key prefix is locked).
func (m *Metrics) APILoginFailure(reason string) {
	if m == nil {
		return
	}
	m.apiLoginFailures.add(1, reason)
}

// ConsoleSignInFailure counts a failed web console sign-in, by reason
// (bad_password: unknown account or wrong password; locked: refused
// while the address or account is locked).
func (m *Metrics) ConsoleSignInFailure(reason string) {
	if m == nil {
		return
	}
	m.consoleSignIns.add(1, reason)
}

// APILoginLockout counts a lock set after failed API logins, by scope
// (address, key).
func (m *Metrics) APILoginLockout(scope string) {
	if m == nil {
		return
	}
	m.apiLoginLockouts.add(1, scope)
}
