package store

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// blockingPair returns a blockingConn dialled to a loopback listener
// and the listener's end of the connection.
func blockingPair(t *testing.T) (*blockingConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	var d net.Dialer
	c, err := pgBlockingDial(d.DialContext)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	bc, ok := c.(*blockingConn)
	if !ok {
		t.Fatalf("dial returned a %T, not a blocking socket", c)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { bc.Close(); peer.Close() })
	return bc, peer
}

func TestBlockingConnReadWrite(t *testing.T) {
	bc, peer := blockingPair(t)
	big := []byte(strings.Repeat("0123456789abcdef", 1<<16)) // 1 MiB: several partial writes
	errc := make(chan error, 1)
	go func() {
		_, err := bc.Write(big)
		errc <- err
	}()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if string(got) != string(big) {
		t.Fatal("the peer read other bytes than were written")
	}
	if _, err := peer.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(bc, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
	peer.Close()
	if n, err := bc.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want 0, io.EOF", n, err)
	}
	if bc.RemoteAddr().String() != peer.LocalAddr().String() {
		t.Fatalf("RemoteAddr %v, want %v", bc.RemoteAddr(), peer.LocalAddr())
	}
}

// A deadline ends a read blocked in the kernel, as pgx relies on to
// interrupt a statement whose context ended.
func TestBlockingConnDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   func() time.Time
	}{
		{"future", func() time.Time { return time.Now().Add(50 * time.Millisecond) }},
		{"past", func() time.Time { return time.Unix(1, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bc, _ := blockingPair(t)
			errc := make(chan error, 1)
			go func() {
				_, err := bc.Read(make([]byte, 10))
				errc <- err
			}()
			time.Sleep(20 * time.Millisecond) // let the read block
			if err := bc.SetDeadline(tc.at()); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("read ended with %v, want os.ErrDeadlineExceeded", err)
				}
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("%v is not a net.Error timeout", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the deadline did not end the blocked read")
			}
		})
	}
}

// A deadline cleared before it passes leaves the connection working.
func TestBlockingConnDeadlineCleared(t *testing.T) {
	bc, peer := blockingPair(t)
	if err := bc.SetDeadline(time.Now().Add(30 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := bc.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if _, err := bc.Write([]byte("ok")); err != nil {
		t.Fatalf("write after a cleared deadline: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
}

// Close ends a read blocked on another goroutine; later reads and
// writes fail with net.ErrClosed.
func TestBlockingConnClose(t *testing.T) {
	bc, _ := blockingPair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := bc.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("the blocked read returned no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the blocked read")
	}
	if _, err := bc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
	if _, err := bc.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
	if err := bc.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
}

// The PostgreSQL writer runs on a blocking socket; a write whose
// context ends while PostgreSQL works stops at its next statement and
// commits nothing (statements themselves are not interrupted, as on
// SQLite), and the writer goes on working.
func TestPGWriterBlockingSocket(t *testing.T) {
	if !pgCluster.Available(t) {
		t.Skip("PostgreSQL is not available")
	}
	s := openKind(t, postgresStore, Options{})
	conn, err := s.writer.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Raw(func(dc any) error {
		if c := dc.(*stdlib.Conn).Conn().PgConn().Conn(); !isBlocking(c) {
			t.Errorf("the writer's connection is a %T, not a blocking socket", c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = s.Write(ctx, func(tx *Tx) error {
		if _, err := tx.exec(`SELECT pg_sleep(0.4)`); err != nil {
			return err
		}
		return tx.PutSetting("cancelled", "committed")
	})
	if err == nil {
		t.Fatal("a write whose context ended in pg_sleep committed")
	}
	if err := s.Write(context.Background(), func(tx *Tx) error {
		if _, err := tx.exec(`SELECT no_such_column FROM settings`); err == nil {
			t.Error("a bad statement succeeded")
		}
		return errors.New("roll back")
	}); err == nil {
		t.Fatal("a write whose function failed succeeded")
	}
	if err := s.Write(context.Background(), func(tx *Tx) error {
		return tx.PutSetting("after", "yes")
	}); err != nil {
		t.Fatalf("write after a cancelled and a failed one: %v", err)
	}
	for key, want := range map[string]string{"cancelled": "", "after": "yes"} {
		var v string
		if err := s.Read(context.Background(), func(tx *Tx) error {
			var err error
			v, _, err = tx.Setting(key)
			return err
		}); err != nil || v != want {
			t.Fatalf("setting %s = %q, %v; want %q", key, v, err, want)
		}
	}
}

// isBlocking reports whether c is a blockingConn (pgx may wrap it in
// TLS, which this test's cluster does not use).
func isBlocking(c net.Conn) bool {
	_, ok := c.(*blockingConn)
	return ok
}
