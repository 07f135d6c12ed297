package metrics

import (
	"io"
	"net/http/httptest"
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
	m.OutboxDepth(7)
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
