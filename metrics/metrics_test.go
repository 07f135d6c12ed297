package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestMetricsExposed(t *testing.T) {
	m := New()
	m.Message("support", "smtp", "created", 2, 3*time.Millisecond)
	m.Message("support", "smtp", "duplicate", 0, time.Millisecond)
	m.SMTPRejection("unknown_recipient")
	m.IMAPPoll("billing", "error")
	m.ReadStore(func(context.Context) (StoreStats, error) {
		return StoreStats{OutboxQueued: 7, OutboxOldestQueued: 90 * time.Second, OutboxFailed: 2, FailedMessages: 3, IMAPSetAside: 1, Conflicts: 4}, nil
	})
	m.Delivery("sent")
	m.APIRequest(404)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`deskmail_messages_received_total{channel="support",source="smtp"} 2`,
		`deskmail_message_actions_total{action="created",channel="support"} 1`,
		`deskmail_parse_warnings_total 2`,
		`deskmail_smtp_rejections_total{reason="unknown_recipient"} 1`,
		`deskmail_imap_polls_total{channel="billing",result="error"} 1`,
		`deskmail_outbox_queued 7`,
		`deskmail_outbox_oldest_queued_seconds 90`,
		`deskmail_outbox_failed 2`,
		`deskmail_store_conflicts_total 4`,
		`deskmail_failed_messages 3`,
		`deskmail_imap_set_aside 1`,
		`deskmail_api_requests_total{code="404"} 1`,
		`deskmail_pipeline_seconds_count 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("missing %s", want)
		}
	}
}

func TestNilIsSafe(t *testing.T) {
	var m *Metrics
	m.Message("a", "b", "c", 1, time.Second)
	m.SMTPRejection("x")
	m.Batch(3)
	if m.Gather() != nil {
		t.Fatal("nil families expected")
	}
}

// TestREADMETableIsExact compares README's metrics table with what the
// registry reports once every method has been called: no metric is
// missing from the table, and the table names no metric that does not
// exist.
func TestREADMETableIsExact(t *testing.T) {
	m := New()
	m.Message("c", "smtp", "created", 1, time.Millisecond)
	m.Failed("parse")
	m.Batch(1)
	m.SMTPSession()
	m.SMTPRejection("too_big")
	m.SMTPAuthLockout("user")
	m.IMAPPoll("c", "ok")
	m.IMAPError("c", "auth")
	m.Delivery("sent")
	m.APIRequest(200)
	m.APILoginFailure("bad_key")
	m.APILoginLockout("key")
	m.ReadStore(func(context.Context) (StoreStats, error) { return StoreStats{}, nil })
	reported := map[string]bool{}
	for _, f := range m.Gather() {
		if strings.HasPrefix(f.Name, "deskmail_") {
			reported[f.Name] = true
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(deskmail_[a-z_]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = true
	}
	for n := range reported {
		if !documented[n] {
			t.Errorf("%s is reported but not in README's metrics table", n)
		}
	}
	for n := range documented {
		if !reported[n] {
			t.Errorf("README's metrics table lists %s, which is not reported", n)
		}
	}
}

// TestExpositionFormat checks the text format details the Prometheus
// client used to write: HELP and TYPE lines, label values escaped,
// cumulative histogram buckets with +Inf, _sum and _count, and the
// runtime and process gauges.
func TestExpositionFormat(t *testing.T) {
	m := New()
	m.IMAPPoll(`a"b\c`, "ok")
	m.Batch(1)
	m.Batch(3)
	m.Batch(3)
	m.Batch(5000)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	body := rec.Body.String()
	for _, want := range []string{
		"# HELP deskmail_imap_polls_total IMAP polls by channel and result (ok, error).\n# TYPE deskmail_imap_polls_total counter\n",
		`deskmail_imap_polls_total{channel="a\"b\\c",result="ok"} 1` + "\n",
		"# TYPE deskmail_commit_batch_messages histogram\n",
		`deskmail_commit_batch_messages_bucket{le="1"} 1` + "\n",
		`deskmail_commit_batch_messages_bucket{le="2"} 1` + "\n",
		`deskmail_commit_batch_messages_bucket{le="4"} 3` + "\n",
		`deskmail_commit_batch_messages_bucket{le="512"} 3` + "\n",
		`deskmail_commit_batch_messages_bucket{le="+Inf"} 4` + "\n",
		"deskmail_commit_batch_messages_sum 5007\n",
		"deskmail_commit_batch_messages_count 4\n",
		"deskmail_smtp_sessions_total 0\n",
		"# TYPE process_cpu_seconds_total counter\n",
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q in:\n%s", want, body)
		}
	}
	if strings.Contains(body, "deskmail_smtp_rejections_total") {
		t.Error("a labelled counter appears before its first increment")
	}
}

// TestExpositionParsesWithPrometheusParser reads a full scrape, every
// family used at least once, with the Prometheus project's own text
// parser (the one its server uses for this format): the hand-written
// writer must produce what Prometheus accepts, with the same values.
func TestExpositionParsesWithPrometheusParser(t *testing.T) {
	m := New()
	m.Message("support", "smtp", "created", 2, 3*time.Millisecond)
	m.IMAPPoll(`we"ird\name`+"\nx", "error")
	m.Batch(3)
	m.Batch(700)
	m.ReadStore(func(context.Context) (StoreStats, error) {
		return StoreStats{OutboxQueued: 7}, nil
	})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("Prometheus parser refuses the exposition: %v\n%s", err, rec.Body.String())
	}
	polls := fams["deskmail_imap_polls_total"]
	if polls == nil || polls.GetType() != dto.MetricType_COUNTER || len(polls.Metric) != 1 {
		t.Fatalf("deskmail_imap_polls_total: %v", polls)
	}
	var channel string
	for _, l := range polls.Metric[0].Label {
		if l.GetName() == "channel" {
			channel = l.GetValue()
		}
	}
	if channel != `we"ird\name`+"\nx" || polls.Metric[0].Counter.GetValue() != 1 {
		t.Errorf("label or value changed on the way: %q %v", channel, polls.Metric[0].Counter.GetValue())
	}
	h := fams["deskmail_commit_batch_messages"]
	if h == nil || h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("deskmail_commit_batch_messages: %v", h)
	}
	if hist := h.Metric[0].Histogram; hist.GetSampleCount() != 2 || hist.GetSampleSum() != 703 {
		t.Errorf("histogram count %d sum %v", hist.GetSampleCount(), hist.GetSampleSum())
	}
	if q := fams["deskmail_outbox_queued"]; q == nil || q.Metric[0].Gauge.GetValue() != 7 {
		t.Errorf("deskmail_outbox_queued: %v", q)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
}
