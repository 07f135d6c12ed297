package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// cutProxy is a TCP proxy in front of an IMAP server that cuts the
// connection (both ways) when the client asks for the body of one UID,
// as a server that dies reading that message does.
type cutProxy struct {
	addr string
	uid  uint32
	cuts atomic.Int32
	// limit, when > 0, is how many times it cuts; then it passes all.
	limit atomic.Int32
	// holdAfter, when > 0: once it has cut that many times, a new
	// connection gets nothing (no greeting) until release is closed.
	holdAfter atomic.Int32
	release   chan struct{}
	closed    chan struct{}
}

// uidFetch matches a UID FETCH of bodies and captures its UID set.
var uidFetch = regexp.MustCompile(`(?i)^\S+ UID FETCH (\S+) .*BODY\.PEEK\[\]`)

func newCutProxy(t *testing.T, backend string, uid uint32) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{addr: ln.Addr().String(), uid: uid, release: make(chan struct{}), closed: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); close(p.closed); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c, backend) })
		}
	})
	return p
}

func (p *cutProxy) serve(c net.Conn, backend string) {
	defer c.Close()
	if h := p.holdAfter.Load(); h > 0 && p.cuts.Load() >= h {
		select {
		case <-p.release:
		case <-p.closed:
			return
		}
	}
	s, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer s.Close()
	go func() { io.Copy(c, s); c.Close() }()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if m := uidFetch.FindStringSubmatch(line); m != nil && setHas(m[1], p.uid) {
			if n, l := p.cuts.Add(1), p.limit.Load(); l <= 0 || n <= l {
				return // closes both connections
			}
		}
		if _, err := io.WriteString(s, line); err != nil {
			return
		}
	}
}

// setHas reports whether an IMAP sequence set ("1:4,7") holds n.
func setHas(set string, n uint32) bool {
	num := func(s string) uint32 {
		if s == "*" {
			return ^uint32(0)
		}
		v, _ := strconv.ParseUint(s, 10, 32)
		return uint32(v)
	}
	for _, r := range strings.Split(set, ",") {
		a, b, ok := strings.Cut(r, ":")
		if !ok {
			b = a
		}
		lo, hi := num(a), num(b)
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo <= n && n <= hi {
			return true
		}
	}
	return false
}

const setAsideConfig = `database: deskmail.db
channels:
  - name: support
    addresses: [support@example.com]
    imap:
      host: 127.0.0.1
      port: %s
      tls: none
      username: support
      password: secret
      existing: import
      failed_folder: Deskmail/Failed
      poll_interval: 1s
      set_aside_after: 1s
`

// TestServeDroppedFetchSetAside runs the built binary against an IMAP
// server whose connection drops whenever UID 2's body is fetched: the
// poller finds that message by fetching one by one, counts the drops
// per UID across a restart of the binary, sets it aside after three
// (moved to the failed folder, listed by `deskmail status` with its
// UID) and stores the three other messages as tickets (issue 13.6).
func TestServeDroppedFetchSetAside(t *testing.T) {
	forEachDatabase(t, droppedFetchSetAsideOn)
}

func droppedFetchSetAsideOn(t *testing.T, db string) {
	bin := buildBinary(t)
	dir := t.TempDir()
	u := imapmemserver.NewUser("support", "secret")
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		raw := testMail(fmt.Sprintf("c%d@customer.example", i), "support@example.com", fmt.Sprintf("Order %d", i), fmt.Sprintf("o%d@customer.example", i))
		if _, err := u.Append("INBOX", literal{bytes.NewReader([]byte(raw))}, &imap.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	port := serveMemIMAP(t, u)
	proxy := newCutProxy(t, fmt.Sprintf("127.0.0.1:%d", port), 2)
	_, proxyPort, _ := net.SplitHostPort(proxy.addr)
	cfgFile := writeConfigOn(t, dir, db, fmt.Sprintf(setAsideConfig, proxyPort))
	type status struct {
		Channels []struct {
			LastError string `json:"last_error"`
		} `json:"channels"`
		SetAside int `json:"imap_set_aside"`
		Messages []struct {
			Channel, Folder string
			UID             uint32 `json:"uid"`
			Attempts        int    `json:"attempts"`
			LastError       string `json:"last_error"`
			MovedTo         string `json:"moved_to"`
		} `json:"imap_set_aside_messages"`
	}
	readStatus := func() status {
		var st status
		out := deskmailCmd(t, bin, dir, "status", "--config", cfgFile, "--json")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		return st
	}
	args := []string{"--config", cfgFile, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}

	// First run: the batch breaks, then UID 2 alone breaks once
	// (attempt 1); after that the proxy holds every new connection
	// without a greeting, so no further attempt starts however slowly
	// the machine reads the status (and SIGTERM must still stop the
	// poller waiting for that greeting).
	proxy.holdAfter.Store(2)
	p, _, _ := startServe(t, bin, dir, args...)
	waitFor(t, "a first counted attempt", 60*time.Second, func() bool {
		st := readStatus()
		return len(st.Channels) == 1 && strings.Contains(st.Channels[0].LastError, "uid 2, attempt 1;")
	})
	p.stop()
	if st := readStatus(); st.SetAside != 0 {
		t.Fatalf("set aside before the restart: %+v", st)
	}
	if n := proxy.cuts.Load(); n != 2 {
		t.Fatalf("uid 2 fetched %d times in the first run, want 2 (in the batch, then alone)", n)
	}
	close(proxy.release)

	// Second run: two more counted attempts, then set aside without
	// another fetch.
	p, _, _ = startServe(t, bin, dir, args...)
	var st status
	waitFor(t, "uid 2 set aside and moved", 60*time.Second, func() bool {
		st = readStatus()
		return st.SetAside == 1 && len(st.Messages) == 1 && st.Messages[0].MovedTo != ""
	})
	waitFor(t, "the three other messages stored", 60*time.Second, func() bool {
		return strings.Count(deskmailCmd(t, bin, dir, "tickets", "list", "--config", cfgFile, "--json"), `"subject"`) >= 3
	})
	p.stop()
	// The count goes on across the restart: two more fetches reach
	// three attempts; a count reset at the restart would need three.
	if after := proxy.cuts.Load() - 2; after != 2 {
		t.Errorf("uid 2 fetched %d times after the restart, want 2 (the count goes on)", after)
	}
	m := st.Messages
	if len(m) != 1 || m[0].UID != 2 || m[0].Channel != "support" || m[0].Folder != "INBOX" || m[0].Attempts != 3 ||
		m[0].MovedTo != "Deskmail/Failed" || !strings.Contains(m[0].LastError, "EOF") {
		t.Errorf("set aside: %+v", m)
	}
	var tickets []struct {
		Subject string `json:"subject"`
	}
	if err := json.Unmarshal([]byte(deskmailCmd(t, bin, dir, "tickets", "list", "--config", cfgFile, "--json")), &tickets); err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, tk := range tickets {
		subjects = append(subjects, tk.Subject)
	}
	slices.Sort(subjects)
	if strings.Join(subjects, ",") != "Order 1,Order 3,Order 4" {
		t.Errorf("tickets %q, want Order 1, 3 and 4", subjects)
	}
	human := deskmailCmd(t, bin, dir, "status", "--config", cfgFile)
	if !regexp.MustCompile(`support\s+INBOX\s+2\s+3\s`).MatchString(human) || !strings.Contains(human, "Deskmail/Failed") {
		t.Errorf("status does not list uid 2:\n%s", human)
	}
	if !strings.Contains(p.stderr.String(), "set aside") || !strings.Contains(p.stderr.String(), "uid=2") {
		t.Errorf("the log does not record uid 2 set aside:\n%s", p.stderr.String())
	}
	t.Logf("status:\n%s", human)
}
