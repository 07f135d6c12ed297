package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// apiDaemon is `deskmail serve` (the built binary) with one admin
// agent and her API key.
type apiDaemon struct {
	t        *testing.T
	bin, dir string
	cfg      string
	proc     *daemonProc
	smtp     string
	http     string
	key      string
}

func startAPIDaemon(t *testing.T, extra string) *apiDaemon {
	t.Helper()
	return startAPIDaemonIn(t, buildBinary(t), t.TempDir(), "deskmail.db", extra)
}

// startAPIDaemonIn is startAPIDaemon with the binary, working
// directory and database path given.
func startAPIDaemonIn(t *testing.T, bin, dir, db, extra string) *apiDaemon {
	t.Helper()
	d := &apiDaemon{t: t, bin: bin, dir: dir}
	d.cfg = filepath.Join(d.dir, "deskmail.yaml")
	conf := "database: " + db + "\nagents:\n  - {email: alice@acme.test, name: Alice Agent, role: admin}\n" +
		"channels:\n  - name: support\n    addresses: [support@acme.test]\n" + extra
	if err := os.WriteFile(d.cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d.proc, d.smtp, d.http = startServe(t, d.bin, d.dir, "--config", d.cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	d.key = strings.TrimSpace(deskmailCmd(t, d.bin, d.dir, "agents", "key", "alice@acme.test", "--config", d.cfg))
	return d
}

// clientFrom is an HTTP client whose connections leave from the
// loopback address src (Linux routes all of 127.0.0.0/8 to lo), so one
// test can play several client addresses.
func clientFrom(src string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}}
}

// getTickets lists tickets with key through base, with an optional
// client-written X-Forwarded-For, and returns the status code.
func getTickets(t *testing.T, c *http.Client, base, key, xff string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v2/tickets", nil)
	req.SetBasicAuth(key, "X")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestFailedLoginLimitBehindProxy runs the built binary behind a real
// reverse proxy (httputil.ReverseProxy appending the client to
// X-Forwarded-For, as nginx's $proxy_add_x_forwarded_for does) on
// 127.0.0.1, the only trusted proxy. Clients connect from other
// loopback addresses: 30 bad keys from 127.0.0.2 block 127.0.0.2, not
// a valid key from 127.0.0.3; a forged X-Forwarded-For naming the
// victim changes nothing; sent straight to deskmail from an untrusted
// peer, X-Forwarded-For is ignored.
func TestFailedLoginLimitBehindProxy(t *testing.T) {
	d := startAPIDaemon(t, "http:\n  trusted_proxies: [127.0.0.1/32]\n")
	backend, _ := url.Parse("http://" + d.http)
	proxy := &http.Server{Handler: &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(backend)
		pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
		pr.SetXForwarded()
	}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go proxy.Serve(ln)
	t.Cleanup(func() { proxy.Close() })
	front := "http://" + ln.Addr().String()
	attacker, victim, other := clientFrom("127.0.0.2"), clientFrom("127.0.0.3"), clientFrom("127.0.0.4")

	for i := range 30 {
		// Forged hops naming the victim and the proxy itself: the proxy
		// appends 127.0.0.2, the rightmost untrusted hop, so they count
		// against the attacker.
		if code := getTickets(t, attacker, front, fmt.Sprintf("%02d-wrong-key", i), "127.0.0.3, 127.0.0.1"); code != http.StatusUnauthorized {
			t.Fatalf("bad key %d through the proxy: %d, want 401", i, code)
		}
	}
	if code := getTickets(t, attacker, front, "31-wrong-key", ""); code != http.StatusTooManyRequests {
		t.Fatalf("31st bad key from the attacker: %d, want 429", code)
	}
	if code := getTickets(t, attacker, front, d.key, ""); code != http.StatusTooManyRequests {
		t.Fatalf("the blocked address with a valid key: %d, want 429", code)
	}
	if code := getTickets(t, victim, front, d.key, ""); code != http.StatusOK {
		t.Fatalf("valid key from another client through the proxy: %d, want 200\n%s", code, d.proc.stderr.String())
	}

	// Straight to deskmail from 127.0.0.4 (not a trusted proxy): every
	// request names a new X-Forwarded-For, and all count against the peer.
	direct := "http://" + d.http
	for i := range 30 {
		if code := getTickets(t, other, direct, fmt.Sprintf("d%02d-bad-key", i), fmt.Sprintf("198.51.100.%d", i+1)); code != http.StatusUnauthorized {
			t.Fatalf("direct bad key %d: %d, want 401", i, code)
		}
	}
	if code := getTickets(t, other, direct, d.key, "198.51.100.200"); code != http.StatusTooManyRequests {
		t.Fatalf("untrusted peer with a fresh X-Forwarded-For: %d, want 429 (the header must be ignored)", code)
	}
	if code := getTickets(t, victim, front, d.key, ""); code != http.StatusOK {
		t.Fatalf("victim after the direct attack: %d, want 200", code)
	}

	// Ten wrong keys with the prefix of alice's key (from a client with
	// failures to spare): the 10th locks the prefix, her key still works.
	for i := 1; i <= 10; i++ {
		code := getTickets(t, victim, front, d.key[:8]+fmt.Sprintf("-guess-%d", i), "")
		if want := map[bool]int{true: http.StatusTooManyRequests, false: http.StatusUnauthorized}[i == 10]; code != want {
			t.Fatalf("guess %d at alice's key prefix: %d, want %d", i, code, want)
		}
	}
	if code := getTickets(t, victim, front, d.key, ""); code != http.StatusOK {
		t.Fatalf("alice's key while its prefix is locked: %d, want 200", code)
	}
	resp, err := http.Get(direct + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range []string{`deskmail_api_login_failures_total{reason="bad_key"} 70`, `deskmail_api_login_failures_total{reason="address_blocked"} 3`,
		`deskmail_api_login_lockouts_total{scope="address"} 2`, `deskmail_api_login_lockouts_total{scope="key"} 1`} {
		if !strings.Contains(string(body), w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	for _, w := range []string{`msg="api: failed login" client=127.0.0.2`, `msg="api: client address blocked after failed logins" client=127.0.0.4`,
		`msg="api: key prefix locked after failed logins" client=127.0.0.3`} {
		if !strings.Contains(d.proc.stderr.String(), w) {
			t.Errorf("log lacks %s", w)
		}
	}
}
