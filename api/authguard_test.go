package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/api"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncLog is a log buffer safe for the server's goroutines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestFailedLoginsLimitedPerKeyPrefix: wrong keys sharing a prefix
// (alice's real key's, here), each from a different client address,
// are answered at once three times, then after doubling delays, and
// the 10th locks the prefix: 429 for a wrong key from a fresh address,
// while alice's valid key is still accepted. The lock lifts when it
// expires, and every failure is logged.
func TestFailedLoginsLimitedPerKeyPrefix(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	const base = 20 * time.Millisecond
	log := &syncLog{}
	h := newHarness(t, hopts{guard: api.NewAuthGuard(clock.now, base), trustLoopback: true, log: log})
	real := h.keys[alice]
	try := func(key string, from int) (resp, time.Duration) {
		req, _ := http.NewRequest("GET", h.url+"/api/v2/tickets", nil)
		req.SetBasicAuth(key, "X")
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", from))
		start := time.Now()
		r := h.send(req)
		return r, time.Since(start)
	}
	for i := 1; i <= 9; i++ {
		r, took := try(real[:8]+fmt.Sprintf("guess-%d", i), i)
		want(t, r, http.StatusUnauthorized)
		var min time.Duration
		if i > 3 {
			min = base << (i - 4)
		}
		if took < min {
			t.Errorf("failure %d answered after %v, want at least %v", i, took, min)
		}
	}
	r, _ := try(real[:8]+"guess-10", 10)
	want(t, r, http.StatusTooManyRequests)
	if ra := r.hdr.Get("Retry-After"); ra != "900" {
		t.Errorf("lock Retry-After %q, want 900", ra)
	}
	r, _ = try(real[:8]+"guess-11", 11)
	want(t, r, http.StatusTooManyRequests)
	// Another prefix from a fresh address is not affected.
	r, _ = try("other-prefix-key", 12)
	want(t, r, http.StatusUnauthorized)
	// The valid key is accepted while its prefix is locked.
	r, _ = try(real, 13)
	want(t, r, http.StatusOK)

	// The valid key cleared the prefix: a wrong one is answered at once.
	r, _ = try(real[:8]+"guess-12", 14)
	want(t, r, http.StatusUnauthorized)
	// Lock it again, then let the lock expire.
	for i := 2; i <= 10; i++ {
		try(real[:8]+fmt.Sprintf("again-%d", i), 20+i)
	}
	r, _ = try(real[:8]+"again-11", 40)
	want(t, r, http.StatusTooManyRequests)
	clock.add(15*time.Minute + time.Second)
	r, _ = try(real[:8]+"after-expiry", 41)
	want(t, r, http.StatusUnauthorized)

	logText := log.String()
	// The delays (timing only bounds them from below): none for the
	// first three failures, doubling from the fourth.
	for _, w := range []string{`msg="api: failed login" client=198.51.100.1 key_prefix=` + real[:8],
		"failures=3 delay=0s", "failures=4 delay=20ms", "failures=9 delay=640ms",
		`msg="api: key prefix locked after failed logins" client=198.51.100.10`} {
		if !strings.Contains(logText, w) {
			t.Errorf("log lacks %q:\n%s", w, logText)
		}
	}
	// Fresh counts after another prefix, a valid key and the expiry.
	if n := strings.Count(logText, "failures=1 delay=0s"); n != 4 {
		t.Errorf("%d failures counted as a prefix's first, want 4 (first guess, other prefix, after the valid key, after expiry):\n%s", n, logText)
	}
	if strings.Contains(logText, real) {
		t.Error("the log contains the whole valid key")
	}
}
