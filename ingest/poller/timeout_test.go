package poller

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A server that accepts the connection and then says nothing: the
// poller gives up on the greeting, records the error and retries.
func TestSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never written to
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	b := &backend{host: "127.0.0.1", port: ln.Addr().(*net.TCPAddr).Port, user: testUser, pass: testPassword, tls: "none"}
	h := newHarness(t, b)
	h.opts.commandTimeout = 100 * time.Millisecond
	h.start()
	eventually(t, 10*time.Second, "two timeouts in channel health", func() bool {
		hl := h.health()
		return hl != nil && hl.ConsecutiveFailures >= 2
	})
	h.stop()
	hl := h.health()
	t.Logf("health: %q", hl.LastError)
	if !strings.Contains(hl.LastError, "support") || !strings.Contains(hl.LastError, "greeting") || !strings.Contains(hl.LastError, "timed out") {
		t.Errorf("last error %q should name the channel, the greeting and the timeout", hl.LastError)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) < 2 {
		t.Errorf("%d connections, want a retry", len(conns))
	}
}

// Shutting down while a server holds the connection without a
// greeting ends the poller at once, not when the watchdog gives up
// (2 minutes by default).
func TestShutdownDuringSilentGreeting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // held open, never written to
		}
	}()
	t.Cleanup(func() { ln.Close() })
	b := &backend{host: "127.0.0.1", port: ln.Addr().(*net.TCPAddr).Port, user: testUser, pass: testPassword, tls: "none"}
	h := newHarness(t, b)
	h.start()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("the poller did not connect")
	}
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the poller did not stop within 30s while waiting for a greeting")
	}
}

// A server that stops answering in the middle of a FETCH: the poller
// gives up on the connection, records the error, retries, and takes
// the mail once the server answers again. Waiting on purpose (IDLE
// longer than the timeout) is not a timeout.
func TestServerSilentMidCommand(t *testing.T) {
	var stall atomic.Bool
	stall.Store(true)
	b := memServer(t, memOptions{stallBodies: &stall})
	b.appendMsg(t, "INBOX", message("stall-1@example.net", "mo@example.net", "Where is my parcel"), time.Now())
	h := newHarness(t, b, "existing: import", "poll_interval: 1s")
	h.opts.commandTimeout = 200 * time.Millisecond
	h.start()
	eventually(t, 10*time.Second, "two timeouts in channel health", func() bool {
		hl := h.health()
		return hl != nil && hl.ConsecutiveFailures >= 2
	})
	hl := h.health()
	t.Logf("health: %q", hl.LastError)
	if !strings.Contains(hl.LastError, "INBOX") || !strings.Contains(hl.LastError, "fetch") || !strings.Contains(hl.LastError, "timed out") {
		t.Errorf("last error %q should name the folder, the fetch and the timeout", hl.LastError)
	}
	stall.Store(false)
	eventually(t, 10*time.Second, "the ticket", func() bool { return len(h.tickets()) == 1 })
	eventually(t, 10*time.Second, "a successful poll", func() bool { hl := h.health(); return hl.ConsecutiveFailures == 0 })
	lastErr := *h.health().LastErrorAt
	// A 1s IDLE (poll_interval) is five timeouts of silence.
	since := time.Now()
	eventually(t, 10*time.Second, "a poll after a full IDLE", func() bool {
		hl := h.health()
		return hl.LastOKAt != nil && hl.LastOKAt.Sub(since) > 900*time.Millisecond
	})
	h.stop()
	if hl := h.health(); hl.ConsecutiveFailures != 0 || !hl.LastErrorAt.Equal(lastErr) {
		t.Errorf("an error while idle: %+v", hl)
	}
}
