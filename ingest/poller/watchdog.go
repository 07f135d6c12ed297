package poller

import (
	"net"
	"sync"
	"time"
)

// watchdog is the connection under an IMAP client: it closes the
// connection when the server sends nothing for longer than timeout
// while the poller expects something from it, so that a server that
// stops answering in the middle of a command (or never greets) cannot
// hang a poller; the pending command then fails and the poller
// reconnects with backoff.
//
// go-imap's client bounds only the reading of a response it has
// started to receive (and the greeting); between two responses of a
// command it waits without a deadline, hence this.
//
// The clock restarts at every byte read or written: a client command
// gives the server timeout to start answering, and a long FETCH
// stays alive as long as bytes flow. While the session waits on
// purpose (IDLE, the poll interval, a batch being committed by the
// pipeline) it pauses the watchdog.
type watchdog struct {
	net.Conn
	timeout time.Duration

	mu     sync.Mutex
	last   time.Time
	paused bool
	fired  bool
	closed bool
	timer  *time.Timer
}

func newWatchdog(c net.Conn, timeout time.Duration) *watchdog {
	w := &watchdog{Conn: c, timeout: timeout, last: time.Now()}
	w.timer = time.AfterFunc(timeout, w.check)
	return w
}

// Read implements net.Conn.
func (w *watchdog) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if n > 0 {
		w.touch()
	}
	return n, err
}

// Write implements net.Conn.
func (w *watchdog) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if n > 0 {
		w.touch()
	}
	return n, err
}

// Close implements net.Conn.
func (w *watchdog) Close() error {
	w.mu.Lock()
	w.closed = true
	w.timer.Stop()
	w.mu.Unlock()
	return w.Conn.Close()
}

func (w *watchdog) touch() {
	w.mu.Lock()
	w.last = time.Now()
	w.mu.Unlock()
}

// check runs when the timer fires: it closes a connection silent for
// timeout, else sets the timer for the rest of the interval.
func (w *watchdog) check() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	if w.paused {
		w.timer.Reset(w.timeout)
		w.mu.Unlock()
		return
	}
	if idle := time.Since(w.last); idle < w.timeout {
		w.timer.Reset(w.timeout - idle)
		w.mu.Unlock()
		return
	}
	w.fired, w.closed = true, true
	w.mu.Unlock()
	w.Conn.Close()
}

// pause stops the clock while the session waits on purpose; resume
// starts it again from now. Both are safe on a nil watchdog.
func (w *watchdog) pause() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.paused = true
	w.mu.Unlock()
}

func (w *watchdog) resume() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.paused, w.last = false, time.Now()
	w.mu.Unlock()
}

// timedOut reports whether the watchdog closed the connection.
func (w *watchdog) timedOut() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}
