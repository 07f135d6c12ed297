package receiver

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/deskmail/deskmail/config"
)

// rateFloor sets a data-rate floor small enough for a fast test: 200
// bytes a second over 600 ms of waiting, with a read timeout far above
// the window so that only the floor can end the session.
func rateFloor(relays ...string) func(*config.SMTPConfig) {
	return func(s *config.SMTPConfig) {
		s.MinDataRate = 200
		s.DataRateWindow.Duration = 600 * time.Millisecond
		s.ReadTimeout.Duration = 20 * time.Second
		s.TrustedRelays = relays
	}
}

// trickle writes s one byte every 50 ms (20 bytes a second: a tenth of
// the floor) until the server answers, and returns that reply line and
// how long it took.
func trickle(t *testing.T, nc net.Conn, r *bufio.Reader, s string) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	lines := make(chan string, 1)
	go func() {
		line, _ := r.ReadString('\n')
		lines <- line
	}()
	for i := 0; ; i = (i + 1) % len(s) {
		select {
		case line := <-lines:
			return line, time.Since(start)
		case <-time.After(50 * time.Millisecond): // the client's pace
		}
		if time.Since(start) > 15*time.Second {
			t.Fatal("no reply to a trickling client after 15 s")
		}
		if _, err := nc.Write([]byte{s[i]}); err != nil {
			return <-lines, time.Since(start)
		}
	}
}

// TestTricklingClientGets421 is issue 22's check: a client that sends
// slower than smtp.min_data_rate, in commands or in DATA, is told
// 421 4.4.2 within about one window and the connection is closed —
// trusted relays included; a client at a normal pace is not.
func TestTricklingClientGets421(t *testing.T) {
	for _, tc := range []struct {
		name   string
		relays []string
		data   bool
	}{
		{"commands", nil, false},
		{"data", nil, true},
		{"trusted relay, commands", []string{"127.0.0.0/8"}, false},
		{"trusted relay, data", []string{"127.0.0.0/8"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpt{smtp: rateFloor(tc.relays...)})
			// A normal client is not cut off, across several windows.
			c := h.dial()
			for i := range 3 {
				msg := message("fast@customer.example", "support@example.com", "fast", "fast-"+string(rune('a'+i))+"@customer.example", "quick")
				if err := sendOn(c, "fast@customer.example", []string{"support@example.com"}, msg); err != nil {
					t.Fatalf("fast client, message %d: %v", i, err)
				}
				time.Sleep(250 * time.Millisecond) // a pause between transactions
			}
			c.Close()

			tp, nc := h.raw()
			defer nc.Close()
			cmd(t, tp, "EHLO client.test.example")
			if tc.data {
				cmd(t, tp, "MAIL FROM:<slow@customer.example>")
				cmd(t, tp, "RCPT TO:<support@example.com>")
				if code, _ := cmd(t, tp, "DATA"); code != 354 {
					t.Fatalf("DATA: %d", code)
				}
			}
			line, took := trickle(t, nc, tp.R, "MAIL FROM:<slow@customer.example> and so on, forever ")
			// Between commands go-smtp first answers the partial line
			// it had buffered (501), then gives the 421.
			replies := []string{line}
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				l, err := tp.R.ReadString('\n')
				if err != nil {
					if isTimeout(err) {
						t.Error("connection still open after the 421")
					}
					break
				}
				replies = append(replies, l)
			}
			got421 := false
			for _, l := range replies {
				got421 = got421 || strings.HasPrefix(l, "421 4.4.2 ")
			}
			if !got421 || len(replies) > 2 {
				t.Errorf("trickling client got %q, want 421 4.4.2 and the close", replies)
			}
			if took > 3*time.Second {
				t.Errorf("first reply after %v, want about one window (600 ms)", took)
			}
			if !strings.Contains(h.logs.String(), "client too slow") {
				t.Error("no log line for the slow client")
			}
		})
	}
}
