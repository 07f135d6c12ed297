package receiver

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/metrics"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// authFrom opens a STARTTLS session from the loopback address ip (any
// 127.0.0.x works on Linux), tries AUTH PLAIN and returns its reply
// code (235 on success) and how long the answer took.
func authFrom(t *testing.T, h *harness, ip, user, password string) (int, time.Duration) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", h.addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", ip, err)
	}
	c, err := smtp.NewClientStartTLS(nc, h.clientTLS())
	if err != nil {
		t.Fatalf("STARTTLS from %s: %v", ip, err)
	}
	defer c.Close()
	start := time.Now()
	err = c.Auth(sasl.NewPlainClient("", user, password))
	took := time.Since(start)
	if err == nil {
		return 235, took
	}
	code, enh := smtpCode(err)
	if code == 454 && enh != (smtp.EnhancedCode{4, 7, 0}) {
		t.Errorf("locked reply %v, want 454 4.7.0", err)
	}
	return code, took
}

// counters gathers m's counters as name/label values… → value.
func counters(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	for _, f := range m.Gather() {
		for _, s := range f.Samples {
			key := f.Name
			for _, v := range s.Labels {
				key += "/" + v
			}
			got[key] = s.Value
		}
	}
	return got
}

// TestAuthGuessingFromManyAddresses is issue 22's check: password
// guesses for one user spread over 10 client addresses are slowed
// (each answer waits longer) and then locked out for the user name,
// whatever the address and even with the right password; a correct
// password from a trusted relay lifts the lock, and so does expiry.
// One address guessing many user names is locked too.
func TestAuthGuessingFromManyAddresses(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := metrics.New()
	h := newHarness(t, harnessOpt{tls: true, auth: true,
		smtp: func(s *config.SMTPConfig) {
			s.TrustedRelays = []string{"127.0.0.1/32"}
			s.AuthLockoutAfter = 5
			s.AuthLockout.Duration = time.Hour
		},
		options: func(o *Options) {
			o.Now = clock.now
			o.AuthDelay = 40 * time.Millisecond
			o.Metrics = m
		}})

	// Ten addresses, one wrong guess each, for the same user.
	var codes []int
	var took []time.Duration
	for i := range 10 {
		code, d := authFrom(t, h, fmt.Sprintf("127.0.0.%d", 10+i), "alice", fmt.Sprintf("guess-%d", i))
		codes = append(codes, code)
		took = append(took, d)
	}
	want := []int{535, 535, 535, 535, 535, 454, 454, 454, 454, 454}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("replies to 10 guesses from 10 addresses: %v, want %v", codes, want)
	}
	// Slowed: the 5th guess waited 40ms·2² after four failures.
	if took[4] < 160*time.Millisecond || took[0] > 150*time.Millisecond {
		t.Errorf("answer times %v: want the first fast, the fifth ≥ 160ms", took[:5])
	}
	// Locked: the right password from an untrusted address is refused.
	if code, _ := authFrom(t, h, "127.0.0.30", "alice", "alice-pw"); code != 454 {
		t.Errorf("right password while locked, untrusted address: %d, want 454", code)
	}
	// Another user is not affected.
	if code, _ := authFrom(t, h, "127.0.0.31", "relay", "s3cret-relay"); code != 235 {
		t.Errorf("another user while alice is locked: %d, want 235", code)
	}
	// A correct password from the trusted relay lifts the lock.
	if code, _ := authFrom(t, h, "127.0.0.1", "alice", "alice-pw"); code != 235 {
		t.Errorf("right password from the trusted relay: %d, want 235", code)
	}
	if code, _ := authFrom(t, h, "127.0.0.32", "alice", "alice-pw"); code != 235 {
		t.Errorf("right password after the relay lifted the lock: %d, want 235", code)
	}

	// Locked again; after the lock expires the right password works.
	for i := range 5 {
		authFrom(t, h, fmt.Sprintf("127.0.0.%d", 40+i), "alice", "again")
	}
	if code, _ := authFrom(t, h, "127.0.0.50", "alice", "alice-pw"); code != 454 {
		t.Errorf("right password while locked again: %d, want 454", code)
	}
	clock.add(time.Hour + time.Second)
	if code, _ := authFrom(t, h, "127.0.0.51", "alice", "alice-pw"); code != 235 {
		t.Errorf("right password after the lock expired: %d, want 235", code)
	}

	// One address trying many user names is locked as an address.
	for i := range 5 {
		authFrom(t, h, "127.0.0.60", fmt.Sprintf("user%d", i), "x")
	}
	if code, _ := authFrom(t, h, "127.0.0.60", "relay", "s3cret-relay"); code != 454 {
		t.Errorf("right password from a locked address: %d, want 454", code)
	}

	got := counters(t, m)
	if got["deskmail_smtp_auth_lockouts_total/user"] != 2 || got["deskmail_smtp_auth_lockouts_total/address"] != 1 ||
		got["deskmail_smtp_rejections_total/auth_locked"] < 7 {
		t.Errorf("metrics: user lockouts %v (want 2), address lockouts %v (want 1), auth_locked %v",
			got["deskmail_smtp_auth_lockouts_total/user"], got["deskmail_smtp_auth_lockouts_total/address"], got["deskmail_smtp_rejections_total/auth_locked"])
	}
	if logs := h.logs.String(); !strings.Contains(logs, "user name locked after repeated failed authentication") ||
		!strings.Contains(logs, "lockout lifted by a correct password from a trusted relay") {
		t.Error("lockout and lift not logged")
	}
}
