package receiver

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/config"
)

// siteDefaults puts back the shipped limits (testConfig raises them)
// with the given trusted relays.
func siteDefaults(relays ...string) func(*config.SMTPConfig) {
	return func(s *config.SMTPConfig) {
		s.RatePerMinute = 600
		s.MaxConnectionsPerIP = 20
		s.MaxConnections = 200
		s.RelaySenderRatePerMinute = 6000
		s.TrustedRelays = relays
	}
}

// TestTrustedRelayCarriesTheSite is issue 21's measurement: 8 loopback
// clients send 800 mails from 800 senders as fast as they can. With
// the shipped limits and loopback trusted (the default), every mail is
// accepted; the same load from an untrusted address is capped by the
// per-address limit, as before.
func TestTrustedRelayCarriesTheSite(t *testing.T) {
	blast := func(h *harness, prefix string) (accepted, refused int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				c := h.dial()
				defer c.Close()
				for i := range 100 {
					from := fmt.Sprintf("%s-%d-%d@customer.example", prefix, w, i)
					err := sendOn(c, from, []string{"support@example.com"}, message(from, "support@example.com", "x", prefix+"-"+from, "x"))
					mu.Lock()
					if err == nil {
						accepted++
					} else if code, _ := smtpCode(err); code == 450 {
						refused++
						c.Reset()
					} else {
						t.Errorf("%s: %v", from, err)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return accepted, refused
	}

	// A frozen clock: no token comes back while the test runs.
	frozen := func(o *Options) { o.Now = func() time.Time { return time.Unix(1_800_000_000, 0) } }
	h := newHarness(t, harnessOpt{quiet: true, smtp: siteDefaults(config.DefaultTrustedRelays...), options: frozen})
	if a, r := blast(h, "trusted"); a != 800 || r != 0 {
		t.Errorf("from a trusted relay: %d accepted, %d refused; want all 800 accepted", a, r)
	}
	u := newHarness(t, harnessOpt{quiet: true, smtp: siteDefaults("10.0.0.0/8"), options: frozen})
	if a, r := blast(u, "untrusted"); a != 600 || r != 200 {
		t.Errorf("from an untrusted address: %d accepted, %d refused; want 600 and 200 (rate_per_minute)", a, r)
	}
}

// TestTrustedRelayLimits checks what a trusted relay is exempt from
// and what still applies: no per-address connection or rate limit,
// but the per-sender limit (relay_sender_rate_per_minute) and the
// overall connection limit hold, and the Received: header and the
// logs name the real peer.
func TestTrustedRelayLimits(t *testing.T) {
	h := newHarness(t, harnessOpt{smtp: func(s *config.SMTPConfig) {
		s.TrustedRelays = []string{"127.0.0.1"}
		s.MaxConnectionsPerIP = 2
		s.MaxConnections = 6
		s.RatePerMinute = 3
		s.RelaySenderRatePerMinute = 5
	}})
	// Five connections from one address, over max_connections_per_ip.
	for range 5 {
		_, nc := h.raw()
		defer nc.Close()
	}
	// The sixth fills max_connections; the seventh is refused.
	_, six := h.raw()
	defer six.Close()
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := io.ReadAll(nc)
	nc.Close()
	if !strings.HasPrefix(string(line), "421 4.7.0 Too many connections,") {
		t.Errorf("over max_connections got %q, want 421 4.7.0", line)
	}
	six.Close()
	waitFor(t, func() bool { return h.srv.conns.count() == 5 })

	// Ten mails from ten senders, over rate_per_minute (3).
	c := h.dial()
	defer c.Close()
	for i := range 10 {
		from := fmt.Sprintf("c%d@customer.example", i)
		if err := sendOn(c, from, []string{"support@example.com"}, message(from, "support@example.com", "x", fmt.Sprintf("relay-%d@customer.example", i), "x")); err != nil {
			t.Fatalf("mail %d from a trusted relay: %v", i, err)
		}
	}
	// One sender: 5 pass, the sixth is refused with the sender limit.
	for i := range 6 {
		err := sendOn(c, "busy@customer.example", []string{"support@example.com"}, message("busy@customer.example", "support@example.com", "x", fmt.Sprintf("busy-%d@customer.example", i), "x"))
		switch {
		case i < 5 && err != nil:
			t.Fatalf("mail %d from one sender: %v", i, err)
		case i == 5:
			if code, _ := smtpCode(err); code != 450 || !strings.Contains(err.Error(), "this sender") {
				t.Errorf("6th mail from one sender through a relay: %v, want 450 (sender limit)", err)
			}
		}
	}
	r, ok := h.rawByMessageID("relay-0@customer.example")
	if !ok {
		t.Fatal("mail from the relay not stored")
	}
	if !strings.HasPrefix(r.data, "Received: from client.test.example ([127.0.0.1])") || !strings.Contains(r.envelope, `"client_ip":"127.0.0.1"`) {
		t.Errorf("Received/envelope do not name the peer:\n%.200s\n%s", r.data, r.envelope)
	}
	if !strings.Contains(h.logs.String(), "client=127.0.0.1 from=c0@customer.example") {
		t.Errorf("log does not name the peer:\n%s", h.logs.String())
	}
}
