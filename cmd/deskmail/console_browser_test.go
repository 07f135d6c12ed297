package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/deskmail/deskmail/store"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The web console in a real browser: Debian's chromium, headless,
// driven by chromedp (.ci/run installs chromium). One browser serves
// the whole test; pages are screenshotted into
// $DESKMAIL_SCREENSHOTS (default: a temporary directory).

const consoleConfig = `database: deskmail.db
smtp:
  hostname: mx.acme.example
  rate_per_minute: 100000
threading:
  secret: "console e2e secret"
  hostname: mail.acme.example
agents:
  - {email: alice@acme.example, name: Alice Agent, role: admin}
  - {email: carol@acme.example, name: Carol Sales, group: sales}
outbound:
  relay: %s
  tls: none
channels:
  - name: support
    addresses: [support@acme.example]
    group: support
  - name: sales
    addresses: [sales@acme.example]
    group: sales
  - name: mailbox
    addresses: [help@acme.example]
    group: ops
    imap: {host: 127.0.0.1, port: %d, tls: none, username: help, password: secret, poll_interval: 1s, idle: false}
`

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// chromium finds Debian's chromium.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed (apt-get install --no-install-recommends chromium; .ci/run does)")
	return ""
}

// screenshotDir is where the test writes its screenshots.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("DESKMAIL_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestConsoleInBrowser runs the built binary with a relay sink and a
// mailbox channel whose IMAP server is down, sets a password with
// `deskmail agents password` (stdin), and in chromium: signs in, finds
// the ticket a customer's SMTP mail opened, replies — the relay sink
// gets the reply threaded (In-Reply-To/References name the customer's
// Message-ID) — opens a hostile mail whose script, handlers,
// javascript: link and CSS must not run (window.pwned stays unset),
// sees the failing channel on the ops page with the numbers of
// `deskmail status --json`, and has a POST without CSRF token refused;
// over plain HTTP, an agent of another group cannot read the ticket,
// and `deskmail agents deactivate` ends her session.
// Screenshots of the pages (desktop and phone) are written.
func TestConsoleInBrowser(t *testing.T) {
	forEachDatabase(t, consoleInBrowserOn)
}

func consoleInBrowserOn(t *testing.T, db string) {
	browserPath := chromium(t)
	shots := screenshotDir(t)
	if store.IsPostgres(db) {
		// The same pages again: kept apart from the SQLite run's.
		shots = filepath.Join(shots, "postgres")
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sink := newRelaySink(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := writeConfigOn(t, dir, db, fmt.Sprintf(consoleConfig, sink.addr, closedPort(t)))
	proc, smtpAddr, httpAddr := startServe(t, bin, dir, "--config", cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	base := "http://" + httpAddr
	const password = "a long console passphrase"
	for _, agent := range []string{"alice@acme.example", "carol@acme.example"} {
		cmd := exec.Command(bin, "agents", "password", agent, "--config", cfg)
		cmd.Dir, cmd.Stdin = dir, strings.NewReader(password+"\n")
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "password set for "+agent) {
			t.Fatalf("agents password: %v\n%s", err, out)
		}
	}

	custID := "printer-1@customer.example"
	customer := "From: Bob Customer <bob@customer.example>\nTo: support@acme.example\nSubject: Printer on fire\n" +
		"Message-ID: <" + custID + ">\nDate: " + time.Now().Format(time.RFC1123Z) + "\n\nThe printer is on fire.\nPlease help.\n"
	if err := smtpSend(smtpAddr, "bob@customer.example", "support@acme.example", strings.ReplaceAll(customer, "\n", "\r\n")); err != nil {
		t.Fatalf("SMTP: %v\n%s", err, proc.stderr.String())
	}
	xss := "From: Mallory <mallory@evil.example>\nTo: support@acme.example\nSubject: <img src=x onerror=window.pwned=1>Invoice\n" +
		"Message-ID: <xss-1@evil.example>\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n" +
		`<html><head><style>p{background:url("javascript:window.pwned=2")} body{behavior:url(x.htc)}</style><script>window.pwned=3</script></head><body>` +
		`<p id="bait" onclick="window.pwned=4" onmouseover="window.pwned=5">Click here</p>` +
		`<a id="jslink" href="javascript:window.pwned=6">open invoice</a>` +
		`<img src="x" onerror="window.pwned=7"><img src="https://tracker.evil.example/p.gif" alt="logo">` +
		`<svg><script>window.pwned=8</script><animate onbegin="window.pwned=9" attributeName="x"/></svg>` +
		`<iframe srcdoc="<script>parent.pwned=10</script>"></iframe>` +
		`<div style="width:expression(window.pwned=11)">styled</div><form action="javascript:window.pwned=12"><button id="fbtn">go</button></form>` +
		"</body></html>\n"
	if err := smtpSend(smtpAddr, "mallory@evil.example", "support@acme.example", strings.ReplaceAll(xss, "\n", "\r\n")); err != nil {
		t.Fatalf("SMTP: %v", err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browserPath), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// The first run starts the browser; it must not carry the timeout.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, proc.stderr.String())
		}
	}
	// text reads an element's text; a read that races with the page
	// being replaced (a redirect landing) is tried again.
	text := func(sel string) string {
		t.Helper()
		var err error
		for range 20 {
			var s string
			if s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel))); err == nil {
				return s
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Fatalf("text of %s: %v", sel, err)
		return ""
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Sign in.
	do("sign-in page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	shot("01-sign-in")
	do("sign in", chromedp.SendKeys(chromedp.CSS("#email"), "alice@acme.example"), chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("table.queue")))
	if queue := text("table.queue"); !strings.Contains(queue, "Printer on fire") || !strings.Contains(queue, "bob@customer.example") {
		t.Fatalf("queue: %s", queue)
	}
	shot("02-queue")

	// The ticket the SMTP mail opened; reply.
	do("open ticket", chromedp.Click(chromedp.Search(`//a[text()="Printer on fire"]`)), chromedp.WaitVisible(chromedp.CSS("#reply")))
	if conv := text(".conversation"); !strings.Contains(conv, "The printer is on fire.") {
		t.Fatalf("conversation: %s", conv)
	}
	do("reply", chromedp.SendKeys(chromedp.CSS("#reply-body"), "We are sending a technician.\nKeep away from it."),
		chromedp.Click(chromedp.CSS(`#reply button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	shot("03-ticket-after-reply")
	replies := waitReplies(t, sink, "bob@customer.example", "We are sending a technician.")
	m := replies[0]
	if got := m.ids("In-Reply-To"); len(got) != 1 || got[0] != custID {
		t.Errorf("In-Reply-To %v, want %s", got, custID)
	}
	if refs := m.ids("References"); !slices.Contains(refs, custID) {
		t.Errorf("References %v lack %s", refs, custID)
	}
	if !strings.Contains(m.Msg.Header.Get("Subject"), "Printer on fire") {
		t.Errorf("reply subject %q", m.Msg.Header.Get("Subject"))
	}

	// The hostile mail: nothing of it runs, even when clicked.
	do("queue again", chromedp.Navigate(base+"/tickets"), chromedp.WaitVisible(chromedp.CSS("table.queue")))
	do("open hostile ticket", chromedp.Click(chromedp.Search(`//a[contains(text(),"Invoice")]`)), chromedp.WaitVisible(chromedp.CSS("#mail-bait")))
	do("click bait", chromedp.Click(chromedp.CSS("#mail-bait")), chromedp.Click(chromedp.CSS("#mail-jslink")), chromedp.Sleep(300*time.Millisecond))
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.pwned !== "undefined"`))
	if err != nil {
		t.Fatal(err)
	}
	active, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(".conversation script, .conversation iframe, .conversation style, .conversation [onclick], .conversation [onerror], .conversation [style]").length`))
	if err != nil {
		t.Fatal(err)
	}
	if pwned || active != 0 {
		t.Fatalf("hostile mail ran: pwned=%v, %d active elements", pwned, active)
	}
	shot("04-hostile-mail")

	// A POST without the CSRF token is refused, even from the signed-in
	// browser.
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/tickets/1/reply", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "body=forged"}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusForbidden {
		t.Fatalf("POST without CSRF token: %d %v", status, err)
	}

	// The ops page shows the failing mailbox, with deskmail status's
	// numbers.
	waitFor(t, "the mailbox channel to fail", 20*time.Second, func() bool {
		var rep statusReport
		if err := json.Unmarshal([]byte(deskmailCmd(t, bin, dir, "status", "--config", cfg, "--json")), &rep); err != nil {
			t.Fatal(err)
		}
		for _, c := range rep.Channels {
			if c.Channel == "mailbox" && c.Failures > 0 {
				return true
			}
		}
		return false
	})
	do("ops page", chromedp.Navigate(base+"/ops"), chromedp.WaitVisible(chromedp.CSS("#channels")))
	health := text(`tr[data-channel="mailbox"] td:nth-child(3)`)
	opsHTML, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	for i := 0; err != nil && i < 20; i++ {
		time.Sleep(250 * time.Millisecond)
		opsHTML, err = chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	}
	if err != nil {
		t.Fatal(err)
	}
	if health != "FAILING" {
		t.Fatalf("mailbox health %q", health)
	}
	shot("05-ops")
	var rep statusReport
	if err := json.Unmarshal([]byte(deskmailCmd(t, bin, dir, "status", "--config", cfg, "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	nums := opsNumbers(opsHTML)
	for key, want := range map[string]int{"outbox.queued": rep.Outbox.Queued, "outbox.failed": rep.Outbox.Failed, "outbox.sent": rep.Outbox.Sent,
		"outbox.suppressed": rep.Outbox.Suppressed, "failed_messages": rep.FailedMessages, "imap_set_aside": rep.IMAPSetAside,
		"bounces.bouncing_contacts": rep.Bounces.BouncingContacts, "webhooks.queued": rep.Webhooks.Queued} {
		if got, ok := nums[key]; !ok || got != want {
			t.Errorf("ops %s = %d (shown: %v), deskmail status says %d", key, got, ok, want)
		}
	}
	if n := strings.Count(opsHTML, `<td data-label="Instance">`); n != len(rep.Instances) || n == 0 {
		t.Errorf("ops lists %d instances, deskmail status %d", n, len(rep.Instances))
	}
	for _, c := range rep.Channels {
		row := regexp.MustCompile(`(?s)<tr data-channel="` + c.Channel + `">.*?data-n="messages_today">(\d+)<`).FindStringSubmatch(opsHTML)
		if row == nil || row[1] != strconv.Itoa(c.MessagesToday) {
			t.Errorf("channel %s: today %v, deskmail status says %d", c.Channel, row, c.MessagesToday)
		}
	}

	// On a phone.
	do("phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/tickets"), chromedp.WaitVisible(chromedp.CSS("table.queue")))
	shot("06-queue-phone")
	do("phone ticket", chromedp.Navigate(base+"/tickets/1"), chromedp.WaitVisible(chromedp.CSS("#reply")))
	shot("07-ticket-phone")
	do("sign out", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(base+"/tickets"), chromedp.Click(chromedp.CSS("#signout")),
		chromedp.WaitVisible(chromedp.CSS("#login")))

	// Scoping over plain HTTP: carol (group sales) cannot read the
	// support ticket.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(t, resp)
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	resp, err = c.PostForm(base+"/login", url.Values{"csrf": {tok[1]}, "email": {"carol@acme.example"}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	resp, err = c.Get(base + "/tickets/1")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusForbidden || strings.Contains(body, "on fire") {
		t.Fatalf("carol reads a support ticket: %d", resp.StatusCode)
	}
	// Deactivating her ends her session at once.
	if out := deskmailCmd(t, bin, dir, "agents", "deactivate", "carol@acme.example", "--config", cfg); !strings.Contains(out, "deactivated") {
		t.Fatalf("agents deactivate: %s", out)
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = c.Get(base + "/tickets")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("deactivated agent's session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	t.Logf("screenshots in %s", shots)
	proc.stop()
}

// waitReplies waits for an agent reply to rcpt containing text at the
// relay.
func waitReplies(t *testing.T, sink *relaySink, rcpt, text string) []sunkMail {
	t.Helper()
	var out []sunkMail
	waitFor(t, "the reply at the relay", 20*time.Second, func() bool {
		out = out[:0]
		for _, m := range sink.mails(rcpt) {
			if strings.Contains(strings.ReplaceAll(m.Body, "=\r\n", ""), text) {
				out = append(out, m)
			}
		}
		return len(out) > 0
	})
	return out
}

var opsNumber = regexp.MustCompile(`data-n="([a-z_.]+)">(\d+)<`)

// opsNumbers reads the ops page's summary numbers (the first of each).
func opsNumbers(html string) map[string]int {
	out := map[string]int{}
	for _, m := range opsNumber.FindAllStringSubmatch(html, -1) {
		if _, ok := out[m[1]]; !ok {
			n, _ := strconv.Atoi(m[2])
			out[m[1]] = n
		}
	}
	return out
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
