package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// The writer's connection to PostgreSQL waits for an answer after
// every few statements, thousands of times a second. Through Go's
// network poller each of those waits is a read that fails with EAGAIN,
// the goroutine parked, epoll_wait on another thread, and futex
// wake-ups handing the goroutine back to a thread: measured on a batch
// ingest of 1,000 gen-mails, 11 read, 8 write, 7 epoll_pwait, 8 futex
// and 13 nanosleep calls per message. A blocking socket waits in the
// kernel's recv instead, on the writer's own thread, which the kernel
// wakes directly when PostgreSQL answers (what libpq does).

// pgBlockingDial returns a pgconn.DialFunc whose connections are
// blocking sockets (blockingConn), dialled with dial.
func pgBlockingDial(dial pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		bc, err := newBlockingConn(c)
		if err != nil {
			// Not a socket this can take over (a test's pipe, say):
			// the poller's connection works as well, only slower.
			return c, nil
		}
		return bc, nil
	}
}

// blockingConn is a net.Conn on a socket in blocking mode, read and
// written with plain system calls, each of which holds its goroutine's
// thread until it returns. A deadline is kept by a timer that shuts
// the socket down when it passes, which ends the connection (not only
// the operation, as the poller's deadlines do): pgx sets a deadline to
// interrupt an operation whose context ended, and then closes the
// connection anyway.
type blockingConn struct {
	fd     int
	local  net.Addr
	remote net.Addr

	mu     sync.Mutex
	timer  *time.Timer
	closed bool
	// expired is set once a deadline shut the socket down.
	expired bool
	// busy counts the reads and writes under way: the descriptor is
	// closed when the last of them ends, so that none of them can
	// touch a descriptor number reused meanwhile.
	busy int
}

// acquire marks a read or write under way; false once closed.
func (b *blockingConn) acquire() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.busy++
	return true
}

func (b *blockingConn) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.busy--
	if b.closed && b.busy == 0 {
		syscall.Close(b.fd)
	}
}

// newBlockingConn takes over c's socket: it duplicates the descriptor,
// closes c (which removes it from the poller) and puts the duplicate
// in blocking mode.
func newBlockingConn(c net.Conn) (*blockingConn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.New("store: not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(f uintptr) {
		fd, derr = syscall.Dup(int(f))
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("store: dup socket: %w", derr)
	}
	b := &blockingConn{fd: fd, local: c.LocalAddr(), remote: c.RemoteAddr()}
	c.Close()
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("store: blocking socket: %w", err)
	}
	return b, nil
}

func (b *blockingConn) err(op string, err error) error {
	b.mu.Lock()
	expired, closed := b.expired, b.closed
	b.mu.Unlock()
	switch {
	case expired:
		err = os.ErrDeadlineExceeded
	case closed:
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: b.remote.Network(), Source: b.local, Addr: b.remote, Err: err}
}

// Read reads from the socket, waiting in the kernel.
func (b *blockingConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !b.acquire() {
		return 0, b.err("read", net.ErrClosed)
	}
	defer b.release()
	for {
		n, err := syscall.Read(b.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, b.err("read", err)
		case n == 0:
			b.mu.Lock()
			expired := b.expired
			b.mu.Unlock()
			if expired {
				return 0, b.err("read", os.ErrDeadlineExceeded)
			}
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write writes all of p to the socket.
func (b *blockingConn) Write(p []byte) (int, error) {
	if !b.acquire() {
		return 0, b.err("write", net.ErrClosed)
	}
	defer b.release()
	done := 0
	for done < len(p) {
		n, err := syscall.Write(b.fd, p[done:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return done, b.err("write", err)
		}
		done += n
	}
	return done, nil
}

// Close closes the socket.
func (b *blockingConn) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return net.ErrClosed
	}
	b.closed = true
	if b.timer != nil {
		b.timer.Stop()
	}
	// shutdown ends a read or write blocked on another thread, which
	// close alone would not; the last of them closes the descriptor.
	syscall.Shutdown(b.fd, syscall.SHUT_RDWR)
	if b.busy == 0 {
		return syscall.Close(b.fd)
	}
	return nil
}

func (b *blockingConn) LocalAddr() net.Addr  { return b.local }
func (b *blockingConn) RemoteAddr() net.Addr { return b.remote }

// SetDeadline arranges for the socket to be shut down at t (zero: never).
func (b *blockingConn) SetDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return net.ErrClosed
	}
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if t.IsZero() || b.expired {
		return nil
	}
	d := time.Until(t)
	if d <= 0 {
		b.expireLocked()
		return nil
	}
	b.timer = time.AfterFunc(d, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.closed {
			b.expireLocked()
		}
	})
	return nil
}

func (b *blockingConn) expireLocked() {
	b.expired = true
	syscall.Shutdown(b.fd, syscall.SHUT_RDWR)
}

// SetReadDeadline is SetDeadline: one deadline serves both directions.
func (b *blockingConn) SetReadDeadline(t time.Time) error { return b.SetDeadline(t) }

// SetWriteDeadline is SetDeadline.
func (b *blockingConn) SetWriteDeadline(t time.Time) error { return b.SetDeadline(t) }
