package receiver

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// limitListener admits connections within the connection limits and
// wraps each in a trackedConn. Rejected clients get 421 4.7.0 and are
// closed before go-smtp sees them (on the implicit-TLS port they are
// closed without a reply: there is no TLS session to write it in).
type limitListener struct {
	net.Listener
	s           *Server
	implicitTLS bool
	closing     bool // guarded by s.conns.mu
	closeOnce   sync.Once
	closeErr    error
}

// Accept returns the next admitted connection.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, ip := clientKey(c.RemoteAddr())
		tc := &trackedConn{Conn: c, s: l.s, l: l, key: key, ip: ip, relay: l.s.trustedRelay(c.RemoteAddr())}
		if msg := l.s.conns.add(tc); msg != "" {
			l.s.opts.Metrics.SMTPRejection("too_many_connections")
			l.reject(c, msg)
			continue
		}
		if l.s.ipRate != nil && !tc.relay && !l.s.ipRate.ready(key) {
			l.s.conns.remove(tc)
			l.s.opts.Metrics.SMTPRejection("rate_limited")
			l.reject(c, "Too much mail from your address, try again later")
			continue
		}
		if d := l.s.cfg.MaxSession.Duration; d > 0 {
			tc.sessionEnd = time.Now().Add(d)
		}
		l.s.opts.Metrics.SMTPSession()
		return tc, nil
	}
}

// reject answers 421 and closes; the write has a short deadline so a
// client that does not read cannot stall the accept loop.
func (l *limitListener) reject(c net.Conn, msg string) {
	if !l.implicitTLS {
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.Write([]byte("421 4.7.0 " + msg + "\r\n"))
	}
	c.Close()
	l.s.log.Info("smtp: connection refused", "client", c.RemoteAddr().String(), "reason", msg)
}

// Close closes the listener once; later calls return nil (go-smtp's
// Shutdown closes it again).
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.Listener.Close() })
	return nil
}

// clientKey returns the key connection and rate limits count by (the
// IP address, or its /64 for IPv6) and the printable IP.
func clientKey(a net.Addr) (key, ip string) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String(), a.String()
	}
	addr := ap.Addr().Unmap()
	ip = addr.String()
	if addr.Is6() {
		p, err := addr.Prefix(64)
		if err == nil {
			return p.String(), ip
		}
	}
	return ip, ip
}

// trustedRelay reports whether the peer a is in smtp.trusted_relays.
func (s *Server) trustedRelay(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range s.relays {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// tracker counts live connections overall and per client key.
type tracker struct {
	mu     sync.Mutex
	max    int
	maxIP  int
	total  int
	perKey map[string]int
	conns  map[*trackedConn]struct{}
}

func newTracker(max, maxIP int) *tracker {
	return &tracker{max: max, maxIP: maxIP, perKey: map[string]int{}, conns: map[*trackedConn]struct{}{}}
}

// add registers c, or returns why it must be refused.
func (t *tracker) add(c *trackedConn) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.max > 0 && t.total >= t.max {
		return "Too many connections, try again later"
	}
	if t.maxIP > 0 && !c.relay && t.perKey[c.key] >= t.maxIP {
		return "Too many connections from your address, try again later"
	}
	t.total++
	t.perKey[c.key]++
	t.conns[c] = struct{}{}
	c.closing = c.l.closing
	return ""
}

// remove forgets c; it is called once per admitted connection.
func (t *tracker) remove(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[c]; !ok {
		return
	}
	delete(t.conns, c)
	t.total--
	if t.perKey[c.key] <= 1 {
		delete(t.perKey, c.key)
	} else {
		t.perKey[c.key]--
	}
}

// count returns the number of live connections.
func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// drain marks l closing and ends the idle sessions among its
// connections: their pending read fails at once, go-smtp answers 421
// and closes. Sessions inside DATA go on until their DATA is done.
func (t *tracker) drain(l *limitListener) {
	t.mu.Lock()
	l.closing = true
	var cs []*trackedConn
	for c := range t.conns {
		if c.l == l {
			cs = append(cs, c)
		}
	}
	t.mu.Unlock()
	for _, c := range cs {
		c.startClosing()
	}
}

// trackedConn is an admitted connection. It owns its deadlines: every
// Read and Write sets one (the read or write timeout from now, never
// past the end of the session), so both an idle client and a client
// that trickles bytes are dropped; go-smtp's own SetDeadline calls are
// ignored.
type trackedConn struct {
	net.Conn
	s          *Server
	l          *limitListener
	key, ip    string
	relay      bool      // the peer is a trusted relay (smtp.trusted_relays)
	sessionEnd time.Time // zero: unbounded

	mu      sync.Mutex
	inData  bool
	closing bool // guarded by s.conns.mu when set by tracker.add, then by mu
	once    sync.Once

	// The data-rate floor (smtp.min_data_rate over
	// smtp.data_rate_window), on the time spent waiting in Read only:
	// waited and got are this window's wait and bytes. Read runs on
	// one goroutine at a time, so these need no lock.
	waited time.Duration
	got    int64
	// dead is set once the client was too slow or timed out inside
	// DATA: the session is over. Every later Read fails: with EOF when
	// the 421 was already given as the reply to DATA (quiet), else
	// with a timeout, which go-smtp answers with 421 4.4.2 before it
	// closes. Guarded by mu.
	dead, quiet bool
}

// errTooSlow is the read error of a client under the data-rate floor.
type errTooSlow struct{}

func (errTooSlow) Error() string   { return "receiver: client sends slower than smtp.min_data_rate" }
func (errTooSlow) Timeout() bool   { return true }
func (errTooSlow) Temporary() bool { return false }

// Read reads with a fresh deadline: the read timeout from now, never
// past the end of the session, and never past the end of the current
// data-rate window. At the end of a window the client must have sent
// min_data_rate bytes a second of the time it was waited for;
// otherwise it is told 421 4.4.2 and the connection ends.
func (c *trackedConn) Read(b []byte) (int, error) {
	for {
		c.mu.Lock()
		if c.dead {
			quiet := c.quiet
			c.mu.Unlock()
			if quiet {
				return 0, io.EOF
			}
			return 0, errTooSlow{}
		}
		var d time.Time
		if c.closing && !c.inData {
			d = time.Unix(1, 0) // in the past: fail at once
		} else {
			d = c.deadline(c.s.cfg.ReadTimeout.Duration)
		}
		closing, inData := c.closing, c.inData
		start := time.Now()
		rate, window := c.s.minRate, c.s.cfg.DataRateWindow.Duration
		byWindow := false
		if rate > 0 && window > 0 {
			if w := start.Add(window - c.waited); d.IsZero() || w.Before(d) {
				d, byWindow = w, true
			}
		}
		err := c.Conn.SetReadDeadline(d)
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
		n, err := c.Conn.Read(b)
		timeout := false
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			timeout = true
		}
		if rate > 0 && window > 0 {
			c.waited += time.Since(start)
			c.got += int64(n)
			if c.waited >= window {
				if float64(c.got) < rate*c.waited.Seconds() {
					return n, c.tooSlow(inData)
				}
				c.waited, c.got = 0, 0
			}
			if timeout && byWindow && !c.isClosing() {
				if n > 0 {
					return n, nil
				}
				continue // a new window: read on
			}
		}
		if timeout && !closing {
			c.s.opts.Metrics.SMTPRejection("timeout")
			if inData {
				c.markDead(true)
			}
		}
		return n, err
	}
}

// tooSlow ends a session under the data-rate floor with a timeout
// error: between commands go-smtp answers it with 421 4.4.2 and
// closes (after answering a partial command line it had buffered);
// inside DATA the message's reply is readError's 421 4.4.2, and the
// next Read ends the session.
func (c *trackedConn) tooSlow(inData bool) error {
	c.s.opts.Metrics.SMTPRejection("too_slow")
	c.s.log.Info("smtp: client too slow; closing", "client", c.ip, "min_bytes_per_second", c.s.minRate,
		"window", c.s.cfg.DataRateWindow.String(), "bytes", c.got, "waited", c.waited.Round(time.Millisecond).String(), "in_data", inData)
	c.markDead(inData)
	return errTooSlow{}
}

// markDead makes every later Read fail; quiet: with EOF (the client
// has had its 421).
func (c *trackedConn) markDead(quiet bool) {
	c.mu.Lock()
	c.dead, c.quiet = true, quiet
	c.mu.Unlock()
}

// Write writes with a fresh deadline.
func (c *trackedConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(c.deadline(c.s.cfg.WriteTimeout.Duration)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *trackedConn) deadline(timeout time.Duration) time.Time {
	var d time.Time
	if timeout > 0 {
		d = time.Now().Add(timeout)
	}
	if !c.sessionEnd.IsZero() && (d.IsZero() || c.sessionEnd.Before(d)) {
		d = c.sessionEnd
	}
	return d
}

// SetDeadline is ignored: trackedConn sets its own deadlines.
func (c *trackedConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline is ignored: trackedConn sets its own deadlines.
func (c *trackedConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline is ignored: trackedConn sets its own deadlines.
func (c *trackedConn) SetWriteDeadline(time.Time) error { return nil }

// Close closes the connection and releases its place in the limits.
func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		c.s.conns.remove(c)
		err = c.Conn.Close()
	})
	return err
}

// setInData records whether the session is reading a message body.
// Leaving DATA on a closing connection makes the next read fail, so the
// session ends right after its reply is written.
func (c *trackedConn) setInData(v bool) {
	c.mu.Lock()
	c.inData = v
	c.mu.Unlock()
}

// startClosing ends the session at its next read, or interrupts a read
// in progress, unless the session is inside DATA.
func (c *trackedConn) startClosing() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	if !c.inData {
		c.Conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// isClosing reports whether the server is shutting this session down.
func (c *trackedConn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// snapshot returns the live connections.
func (t *tracker) snapshot() []*trackedConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		out = append(out, c)
	}
	return out
}
