package poller

import (
	"testing"

	"github.com/deskmail/deskmail/internal/imaptest"
)

// startDovecot runs a throw-away Dovecot (imaptest.Dovecot) with the
// test user.
func startDovecot(t testing.TB) *backend {
	t.Helper()
	d := imaptest.Dovecot(t, testUser, testPassword)
	return &backend{host: d.Host, port: d.Port, user: testUser, pass: testPassword, tls: "none", dovecot: true, delim: d.Delim}
}

func TestDovecotNewMailIdle(t *testing.T) { testNewMailIdle(t, startDovecot(t)) }

func TestDovecotPostActions(t *testing.T) {
	// Dovecot has MOVE and UIDPLUS: the fallbacks run in-process only.
	testPostActions(t, false, func(t *testing.T, o memOptions) *backend { return startDovecot(t) })
}

func TestDovecotCrashBetweenCommitAndAck(t *testing.T) {
	testCrashBetweenCommitAndAck(t, startDovecot(t))
}

func TestDovecotUIDValidityChange(t *testing.T) { testUIDValidityChange(t, startDovecot(t)) }

func TestDovecotWrongPassword(t *testing.T) { testWrongPassword(t, startDovecot(t)) }

func TestDovecotMalformedToFailedFolder(t *testing.T) {
	testMalformedToFailedFolder(t, startDovecot(t))
}

// BenchmarkDovecotDrain10k drains 10,000 waiting messages from a real
// Dovecot (target ≥ 1,000 msg/s, peak memory < 200 MB). Filling the
// mailbox takes a few minutes; run it with -benchtime 1x.
func BenchmarkDovecotDrain10k(b *testing.B) {
	for b.Loop() {
		rate, heap, hwm := drainMailbox(b, startDovecot(b), 10000)
		b.ReportMetric(rate, "msg/s")
		b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(hwm)/(1<<20), "VmHWM-MB")
	}
}
