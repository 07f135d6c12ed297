// Package metrics defines deskmail's Prometheus metrics in one place.
// A *Metrics is built once in cmd/deskmail on its own registry and
// handed to each component; every method is safe on a nil *Metrics, so
// tests and one-shot commands simply pass nil.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector.
type Metrics struct {
	reg *prometheus.Registry

	received      *prometheus.CounterVec
	actions       *prometheus.CounterVec
	parseWarnings prometheus.Counter
	failed        *prometheus.CounterVec
	latency       prometheus.Histogram
	batchSize     prometheus.Histogram

	smtpSessions     prometheus.Counter
	smtpRejections   *prometheus.CounterVec
	smtpAuthLockouts *prometheus.CounterVec

	imapPolls  *prometheus.CounterVec
	imapErrors *prometheus.CounterVec

	deliveries *prometheus.CounterVec
	store      *storeCollector

	apiRequests      *prometheus.CounterVec
	apiLoginFailures *prometheus.CounterVec
	apiLoginLockouts *prometheus.CounterVec
}

// New creates the collectors on a fresh registry (with Go and process
// collectors).
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_messages_received_total",
			Help: "Messages handed to the pipeline, by channel and source (smtp, imap, pipe, api)."}, []string{"channel", "source"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_message_actions_total",
			Help: "What the pipeline did with each message (created, appended, reopened, followup_created, duplicate, ignored, bounce)."}, []string{"channel", "action"}),
		parseWarnings: prometheus.NewCounter(prometheus.CounterOpts{Name: "deskmail_parse_warnings_total",
			Help: "Warnings recorded while parsing messages."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_messages_failed_total",
			Help: "Messages kept raw because they could not be parsed or threaded, by stage."}, []string{"stage"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "deskmail_pipeline_seconds",
			Help: "Time from a message entering the pipeline to its commit.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "deskmail_commit_batch_messages",
			Help: "Messages per group commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		smtpSessions: prometheus.NewCounter(prometheus.CounterOpts{Name: "deskmail_smtp_sessions_total",
			Help: "SMTP sessions accepted."}),
		smtpRejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_smtp_rejections_total",
			Help: "SMTP commands or sessions refused, by reason."}, []string{"reason"}),
		smtpAuthLockouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_smtp_auth_lockouts_total",
			Help: "User names and client addresses locked after failed SMTP AUTH, by scope (user, address)."}, []string{"scope"}),
		imapPolls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_imap_polls_total",
			Help: "IMAP polls by channel and result (ok, error)."}, []string{"channel", "result"}),
		imapErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_imap_errors_total",
			Help: "IMAP errors by channel and kind (connect, auth, fetch, post_action)."}, []string{"channel", "kind"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_outbox_deliveries_total",
			Help: "Outbound delivery attempts by result (sent, retry, failed)."}, []string{"result"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_api_requests_total",
			Help: "API requests by HTTP status code."}, []string{"code"}),
		apiLoginFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_api_login_failures_total",
			Help: "Failed API logins by reason (no_key, bad_key, address_blocked, key_locked)."}, []string{"reason"}),
		apiLoginLockouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deskmail_api_login_lockouts_total",
			Help: "Client addresses and key prefixes locked after failed API logins, by scope (address, key)."}, []string{"scope"}),
	}
	reg.MustRegister(m.received, m.actions, m.parseWarnings, m.failed, m.latency, m.batchSize, m.smtpSessions, m.smtpRejections,
		m.smtpAuthLockouts, m.imapPolls, m.imapErrors, m.deliveries, m.apiRequests, m.apiLoginFailures, m.apiLoginLockouts)
	m.store = newStoreCollector()
	reg.MustRegister(m.store)
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry exposes the registry (for tests that gather values).
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Message records one message through the pipeline.
func (m *Metrics) Message(channel, source, action string, warnings int, took time.Duration) {
	if m == nil {
		return
	}
	m.received.WithLabelValues(channel, source).Inc()
	m.actions.WithLabelValues(channel, action).Inc()
	m.parseWarnings.Add(float64(warnings))
	m.latency.Observe(took.Seconds())
}

// Failed counts a message kept raw because a stage failed
// ("parse", "thread", "empty").
func (m *Metrics) Failed(stage string) {
	if m == nil {
		return
	}
	m.failed.WithLabelValues(stage).Inc()
}

// Batch records the size of one group commit.
func (m *Metrics) Batch(n int) {
	if m == nil {
		return
	}
	m.batchSize.Observe(float64(n))
}

// SMTPSession counts an accepted SMTP session.
func (m *Metrics) SMTPSession() {
	if m == nil {
		return
	}
	m.smtpSessions.Inc()
}

// SMTPRejection counts a refusal by reason (unknown_recipient,
// too_big, too_many_recipients, rate_limited, too_many_connections,
// auth_failed, timeout, store_failure, ...).
func (m *Metrics) SMTPRejection(reason string) {
	if m == nil {
		return
	}
	m.smtpRejections.WithLabelValues(reason).Inc()
}

// SMTPAuthLockout counts a temporary lockout after repeated failed
// SMTP AUTH: scope "user" (one user name, from any address) or
// "address" (one client address, any user name).
func (m *Metrics) SMTPAuthLockout(scope string) {
	if m == nil {
		return
	}
	m.smtpAuthLockouts.WithLabelValues(scope).Inc()
}

// IMAPPoll counts a poll result ("ok" or "error").
func (m *Metrics) IMAPPoll(channel, result string) {
	if m == nil {
		return
	}
	m.imapPolls.WithLabelValues(channel, result).Inc()
}

// IMAPError counts an IMAP error by kind.
func (m *Metrics) IMAPError(channel, kind string) {
	if m == nil {
		return
	}
	m.imapErrors.WithLabelValues(channel, kind).Inc()
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
}

// ReadStore makes every scrape read the database gauges with read, so
// they are exact at scrape time (mail queued by `deskmail ingest` in
// another process counts too). A read that fails leaves them out of
// that scrape. Without ReadStore they are not reported.
func (m *Metrics) ReadStore(read func(ctx context.Context) (StoreStats, error)) {
	if m == nil {
		return
	}
	m.store.read.Store(&read)
}

// storeCollector reports StoreStats read at collection time.
type storeCollector struct {
	read                                           atomic.Pointer[func(context.Context) (StoreStats, error)]
	queued, oldest, outboxFailed, failed, setAside *prometheus.Desc
}

func newStoreCollector() *storeCollector {
	return &storeCollector{
		queued:       prometheus.NewDesc("deskmail_outbox_queued", "Outbound messages waiting for delivery (read from the database at each scrape).", nil, nil),
		oldest:       prometheus.NewDesc("deskmail_outbox_oldest_queued_seconds", "Age of the oldest outbound message waiting for delivery; 0 when none waits.", nil, nil),
		outboxFailed: prometheus.NewDesc("deskmail_outbox_failed", "Outbound messages given up as failed.", nil, nil),
		failed:       prometheus.NewDesc("deskmail_failed_messages", "Incoming messages kept raw because they could not be parsed or threaded (deskmail status lists them).", nil, nil),
		setAside:     prometheus.NewDesc("deskmail_imap_set_aside", "Mailbox messages the IMAP server would not hand over, set aside after repeated failures.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queued, c.oldest, c.outboxFailed, c.failed, c.setAside} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	read := c.read.Load()
	if read == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := (*read)(ctx)
	if err != nil {
		return
	}
	for _, g := range []struct {
		d *prometheus.Desc
		v float64
	}{{c.queued, float64(s.OutboxQueued)}, {c.oldest, s.OutboxOldestQueued.Seconds()}, {c.outboxFailed, float64(s.OutboxFailed)},
		{c.failed, float64(s.FailedMessages)}, {c.setAside, float64(s.IMAPSetAside)}} {
		ch <- prometheus.MustNewConstMetric(g.d, prometheus.GaugeValue, g.v)
	}
}

// Delivery counts a delivery attempt ("sent", "retry", "failed").
func (m *Metrics) Delivery(result string) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(result).Inc()
}

// APIRequest counts an API response by status code.
func (m *Metrics) APIRequest(code int) {
	if m == nil {
		return
	}
	m.apiRequests.WithLabelValues(strconv.Itoa(code)).Inc()
}

// APILoginFailure counts a refused API login by reason: no_key,
// bad_key, address_blocked (the client address is over its limit),
// key_locked (the key prefix is locked).
func (m *Metrics) APILoginFailure(reason string) {
	if m == nil {
		return
	}
	m.apiLoginFailures.WithLabelValues(reason).Inc()
}

// APILoginLockout counts a lock set after failed API logins, by scope
// (address, key).
func (m *Metrics) APILoginLockout(scope string) {
	if m == nil {
		return
	}
	m.apiLoginLockouts.WithLabelValues(scope).Inc()
}
