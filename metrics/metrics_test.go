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
)

func TestMetricsExposed(t *testing.T) {
	m := New()
	m.Message("support", "smtp", "created", 2, 3*time.Millisecond)
	m.Message("support", "smtp", "duplicate", 0, time.Millisecond)
	m.SMTPRejection("unknown_recipient")
	m.IMAPPoll("billing", "error")
	m.ReadStore(func(context.Context) (StoreStats, error) {
		return StoreStats{OutboxQueued: 7, OutboxOldestQueued: 90 * time.Second, OutboxFailed: 2, FailedMessages: 3, IMAPSetAside: 1}, nil
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
	if m.Registry() != nil {
		t.Fatal("nil registry expected")
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
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	reported := map[string]bool{}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "deskmail_") {
			reported[f.GetName()] = true
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
