package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Helpers for the tests that put a real MTA (Postfix, Exim) in front of
// the built deskmail binary, the way README's deployment recipes do.

// readmeSection returns the README section under heading (the whole
// line, "### Routing a domain's mail from Postfix"), up to the next
// heading of the same or a higher level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	start := strings.Index(readme, "\n"+heading+"\n")
	if start < 0 {
		t.Fatalf("README has no heading %q", heading)
	}
	section := readme[start+len(heading)+2:]
	level := strings.Index(heading, " ")
	inFence := false
	for off := 0; off < len(section); {
		line, _, _ := strings.Cut(section[off:], "\n")
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if n := len(line) - len(strings.TrimLeft(line, "#")); !inFence && n > 0 && n <= level && strings.HasPrefix(line[n:], " ") {
			return section[:off]
		}
		off += len(line) + 1
	}
	return section
}

// fencedBlocks returns the contents of the ``` blocks of a README
// section, in order.
func fencedBlocks(section string) []string {
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```[a-z]*\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// replaceAll applies old→new pairs to s and fails the test when one of
// the old strings is not in s: the README recipe changed under the test.
func replaceAll(t *testing.T, what, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("README's %s no longer contains %q:\n%s", what, pairs[i], s)
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// freePort returns a loopback TCP port that was free a moment ago, for
// servers whose port must be written into another program's
// configuration before they start (and kept across a restart).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// mtaProc is an MTA's daemon process, a child of the test.
type mtaProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // its exit, set before done is closed
}

// startMTA starts cmd with its output in the file out, and a watchdog
// (its own session, so it outlives a killed test binary) that runs
// stop(pid of cmd) once the test process is gone: an MTA's daemons
// detach from the test, and a test killed before its cleanup must not
// leave them running. The watchdog itself ends with the test process.
func startMTA(t *testing.T, cmd *exec.Cmd, out string, stop func(pid int) []string) *mtaProc {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &mtaProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	dog := exec.Command("sh", append([]string{"-c", `while kill -0 "$0" 2>/dev/null; do sleep 1; done; exec "$@" >/dev/null 2>&1`,
		strconv.Itoa(os.Getpid())}, stop(cmd.Process.Pid)...)...)
	dog.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := dog.Start(); err != nil {
		t.Fatal(err)
	}
	go dog.Wait()
	return p
}

// exited tells whether the process has exited.
func (p *mtaProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitListening waits until addr accepts connections, failing the test
// with the output file out and logs() if the process exits or 30
// seconds pass first.
func (p *mtaProc) waitListening(t *testing.T, addr, out string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if p.exited() {
			b, _ := os.ReadFile(out)
			t.Fatalf("%s exited: %v\n%s\n%s", strings.Join(p.cmd.Args, " "), p.err, b, logs())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer on %s\n%s", strings.Join(p.cmd.Args, " "), addr, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flushUntil runs flush, and again every 5 seconds, until cond holds
// or d passes: a mail whose deferral is already in the log may not yet
// be in the deferred queue when the first flush looks.
func flushUntil(t *testing.T, flush func(), what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		flush()
		for next := time.Now().Add(5 * time.Second); time.Now().Before(next) && !cond(); {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// mustRoot fails the test unless it runs as root: the MTAs start as
// root and drop privileges themselves (CI runs as root).
func mustRoot(t *testing.T, mta string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("%s runs as root (it drops privileges itself); run the tests as root as CI does", mta)
	}
}

// lookupIDs returns the numeric uid and gid of a system user.
func lookupIDs(t *testing.T, name string) (int, int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// openUp makes dir and its parents up to the test's temporary root
// traversable by other users (the MTA runs deskmail as an unprivileged
// user), since t.TempDir creates them 0700.
func openUp(t *testing.T, dir string) {
	t.Helper()
	root := os.TempDir()
	for d := dir; strings.HasPrefix(d, root+string(os.PathSeparator)); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// swaks sends one message with swaks: data is the whole message, to a
// comma-separated envelope recipient list, from the envelope sender
// ("<>" for the null sender). It fails the test unless the server
// answers 250 to the data.
func swaks(t *testing.T, server, from, to, data string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "mail.eml")
	if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("swaks", "--server", server, "--from", from, "--to", to,
		"--data", f, "--timeout", "30", "--helo", "client.example").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks --from %s --to %s: %v\n%s", from, to, err, out)
	}
}

// mtaMail is one message for sendAll: its envelope and its text.
type mtaMail struct {
	from, to, data string
}

// sendAll sends mails over conns parallel SMTP connections (several
// transactions on each, pause between two on one connection) and
// returns the first error.
func sendAll(addr string, mails []mtaMail, conns int, pause time.Duration) error {
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for w := range conns {
		wg.Go(func() {
			c, err := smtp.Dial(addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Hello("client.example"); err != nil {
				errs <- err
				return
			}
			for i := w; i < len(mails); i += conns {
				if i >= conns {
					time.Sleep(pause)
				}
				m := mails[i]
				if err := c.Mail(m.from, nil); err != nil {
					errs <- fmt.Errorf("mail %d MAIL: %w", i, err)
					return
				}
				if err := c.Rcpt(m.to, nil); err != nil {
					errs <- fmt.Errorf("mail %d RCPT: %w", i, err)
					return
				}
				if err := sendData(c, m.data); err != nil {
					errs <- fmt.Errorf("mail %d DATA: %w", i, err)
					return
				}
			}
			if err := c.Quit(); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// customerMail is a customer's new mail (reply empty) or a reply to
// the message whose Message-ID is reply.
func customerMail(from, to, subject, id, reply string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s>\r\n", from, to, subject, id)
	if reply != "" {
		fmt.Fprintf(&b, "In-Reply-To: <%s>\r\nReferences: <%s>\r\n", reply, reply)
	}
	b.WriteString("Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, it is about " + subject + ".\r\n")
	return b.String()
}

// metricSum scrapes /metrics and sums the samples of a metric whose
// labels contain every one of labels (`action="duplicate"`).
func metricSum(t *testing.T, httpAddr, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, l := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(l, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		match := true
		for _, lb := range labels {
			match = match && strings.Contains(rest, lb)
		}
		if i := strings.LastIndexByte(rest, ' '); match && i >= 0 {
			v, _ := strconv.ParseFloat(rest[i+1:], 64)
			sum += v
		}
	}
	return sum
}

// ticketSubjects lists the database's tickets (`tickets list --json`)
// and counts them by subject, with their ids.
func ticketSubjects(t *testing.T, bin, cfg string) map[string][]int64 {
	t.Helper()
	var list []shown
	out := deskmailCmd(t, bin, filepath.Dir(cfg), "tickets", "list", "--config", cfg, "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("tickets list: %v", err)
	}
	m := map[string][]int64{}
	for _, tk := range list {
		m[tk.Subject] = append(m[tk.Subject], tk.ID)
	}
	return m
}

// showTicket is `tickets show ID --json`.
func showTicket(t *testing.T, bin, cfg string, id int64) shown {
	t.Helper()
	var s shown
	out := deskmailCmd(t, bin, filepath.Dir(cfg), "tickets", "show", strconv.FormatInt(id, 10), "--config", cfg, "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("tickets show %d: %v\n%s", id, err, out)
	}
	return s
}

// mtaAttempt is one delivery attempt in an MTA's log; status is "sent",
// "deferred" or "bounced".
type mtaAttempt struct {
	qid, rcpt, relay, dsn, status, text string
}

// mtaLog is what an MTA's log says: the queue id of each Message-ID,
// and every delivery attempt, in order.
type mtaLog struct {
	qid        map[string]string
	deliveries []mtaAttempt
}

// frontMTA is a real MTA running in front of `deskmail serve`.
type frontMTA interface {
	name() string
	addr() string     // its SMTP listener
	attempts() mtaLog // its log so far
	queueEmpty() bool
	flush() // deliver all queued mail now
}

// frontServeConfig writes the configuration of a `deskmail serve`
// behind an MTA, with the two support addresses README's recipes
// name, on a free SMTP port (kept across a restart).
func frontServeConfig(t *testing.T) (cfg string, port int) {
	t.Helper()
	dir := t.TempDir()
	port = freePort(t)
	cfg = filepath.Join(dir, "deskmail.yaml")
	src := fmt.Sprintf("database: %s\nsmtp:\n  listen: 127.0.0.1:%d\nchannels:\n  - name: support\n    addresses: [support@example.com]\n  - name: help\n    addresses: [help@example.com]\n",
		filepath.Join(dir, "deskmail.db"), port)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, port
}

// frontScenario starts `deskmail serve --config cfg` (whose SMTP port
// the MTA m delivers to) and sends mail into m: with swaks a new mail,
// a reply, a reply to the confirmation's support+token@ address, a Bcc
// to the second channel's address and a mail to both addresses; then
// bulk mails at full speed over 8 connections, all of which deskmail
// accepts without one 4xx; then 300 more (100 replies, 200 new) during
// which deskmail is stopped: the MTA queues what it cannot deliver and,
// once deskmail is started again and the MTA flushed, delivers it.
// Every mail is one ticket or one reply, exactly once.
func frontScenario(t *testing.T, m frontMTA, bin, cfg string, bulk int) {
	t.Helper()
	ddir := filepath.Dir(cfg)
	d, _, httpAddr := startServe(t, bin, ddir, "--config", cfg, "--http-listen", "127.0.0.1:0")
	// One by one with swaks.
	first := customerMail("Ann <ann@customer.example>", "support@example.com", "Printer on fire", "pf-1@customer.example", "")
	swaks(t, m.addr(), "ann@customer.example", "support@example.com", first)
	swaks(t, m.addr(), "bob@customer.example", "help@example.com",
		customerMail("Bob <bob@customer.example>", "partner@other.example", "Quote via Bcc", "pf-2@customer.example", ""))
	swaks(t, m.addr(), "cat@customer.example", "support@example.com,help@example.com",
		customerMail("Cat <cat@customer.example>", "support@example.com, help@example.com", "Two addresses", "pf-3@customer.example", ""))
	waitFor(t, "the three new mails", 60*time.Second, func() bool {
		return metricSum(t, httpAddr, "deskmail_message_actions_total") >= 3
	})
	swaks(t, m.addr(), "ann@customer.example", "support@example.com",
		customerMail("Ann <ann@customer.example>", "support@example.com", "Re: Printer on fire", "pf-4@customer.example", "pf-1@customer.example"))
	waitFor(t, "the reply", 60*time.Second, func() bool {
		return metricSum(t, httpAddr, "deskmail_message_actions_total", `action="appended"`) >= 1
	})
	// A reply to the confirmation's Reply-To (support+t1.…@): the MTA
	// must route it as support@.
	var outbox []struct {
		TicketID int64  `json:"ticket_id"`
		Raw      string `json:"raw"`
	}
	if err := json.Unmarshal([]byte(deskmailCmd(t, bin, ddir, "outbox", "list", "--config", cfg, "--json")), &outbox); err != nil {
		t.Fatal(err)
	}
	printer := ticketSubjects(t, bin, cfg)["Printer on fire"]
	var replyTo string
	for _, o := range outbox {
		if m := regexp.MustCompile(`(?m)^Reply-To: .*<(support\+t[^>]+)>`).FindStringSubmatch(o.Raw); m != nil && len(printer) == 1 && o.TicketID == printer[0] {
			replyTo = m[1]
		}
	}
	if replyTo == "" {
		t.Fatalf("no confirmation of %v with a support+… reply address in the outbox: %v", printer, outbox)
	}
	swaks(t, m.addr(), "ann@customer.example", replyTo,
		customerMail("Ann <ann@customer.example>", replyTo, "More about my printer", "pf-5@customer.example", ""))
	waitFor(t, "the reply to the reply address", 60*time.Second, func() bool {
		return metricSum(t, httpAddr, "deskmail_message_actions_total", `action="appended"`) >= 2
	})
	tickets := ticketSubjects(t, bin, cfg)
	// "Two addresses" is in the channel of the recipient the MTA
	// names first (Postfix sorts them: help@).
	for subject, channel := range map[string]string{"Printer on fire": "support", "Quote via Bcc": "help", "Two addresses": ""} {
		if ids := tickets[subject]; len(ids) != 1 {
			t.Errorf("%q: tickets %v, want one", subject, ids)
		} else if s := showTicket(t, bin, cfg, ids[0]); s.Channel != channel && channel != "" {
			t.Errorf("%q landed in channel %q, want %q", subject, s.Channel, channel)
		}
	}
	if len(tickets) != 3 {
		t.Errorf("tickets after the swaks mails: %v, want 3", tickets)
	}
	if s := showTicket(t, bin, cfg, tickets["Printer on fire"][0]); len(s.Conversations) != 3 {
		t.Errorf("the two replies: ticket has %d conversations, want 3", len(s.Conversations))
	}

	// bulk mails at full speed.
	mails := make([]mtaMail, bulk)
	for i := range mails {
		from := fmt.Sprintf("c%d@customer.example", i%500)
		to := []string{"support@example.com", "help@example.com"}[i%2]
		mails[i] = mtaMail{from, to, customerMail(from, to, fmt.Sprintf("Bulk %d", i), fmt.Sprintf("bulk-%d@customer.example", i), "")}
	}
	start := time.Now()
	if err := sendAll(m.addr(), mails, 8, 0); err != nil {
		t.Fatalf("sending into %s: %v", m.name(), err)
	}
	accepted := time.Since(start)
	waitFor(t, fmt.Sprintf("deskmail to commit the %d mails", bulk), 120*time.Second, func() bool {
		return metricSum(t, httpAddr, "deskmail_message_actions_total", `action="created"`) >= float64(3+bulk)
	})
	stored := time.Since(start)
	t.Logf("%d mails through %s: it accepted them in %v (%.0f msg/s), deskmail had committed all of them %v after the first was sent (%.0f msg/s)", bulk, m.name(),
		accepted.Round(time.Millisecond), float64(bulk)/accepted.Seconds(), stored.Round(time.Millisecond), float64(bulk)/stored.Seconds())
	waitFor(t, m.name()+"'s queue to empty", 60*time.Second, m.queueEmpty)
	lg := m.attempts()
	for _, dl := range lg.deliveries {
		if dl.status != "sent" {
			t.Errorf("%s's delivery %s to %s: %s %s, want every mail sent at the first attempt", m.name(), dl.qid, dl.rcpt, dl.status, dl.text)
		}
	}
	checkOnce(t, lg, "bulk-%d@customer.example", bulk)
	if n := metricSum(t, httpAddr, "deskmail_smtp_rejections_total"); n != 0 {
		t.Errorf("deskmail refused %v SMTP commands, want none", n)
	}
	if n := metricSum(t, httpAddr, "deskmail_message_actions_total", `action="duplicate"`); n != 0 {
		t.Errorf("%v duplicates, want none", n)
	}
	tickets = ticketSubjects(t, bin, cfg)
	for i := range bulk {
		if ids := tickets[fmt.Sprintf("Bulk %d", i)]; len(ids) != 1 {
			t.Fatalf("Bulk %d: tickets %v, want one", i, ids)
		}
	}

	// deskmail stops while the MTA delivers 300 more: 100 replies, 200 new.
	const replies, outage = 100, 200
	var more []mtaMail
	for i := range replies {
		from := fmt.Sprintf("c%d@customer.example", i%500)
		more = append(more, mtaMail{from, "support@example.com", customerMail(from, "support@example.com", fmt.Sprintf("Re: Bulk %d", i),
			fmt.Sprintf("reply-%d@customer.example", i), fmt.Sprintf("bulk-%d@customer.example", i))})
	}
	for i := range outage {
		from := fmt.Sprintf("o%d@customer.example", i)
		more = append(more, mtaMail{from, "help@example.com", customerMail(from, "help@example.com", fmt.Sprintf("Outage %d", i), fmt.Sprintf("outage-%d@customer.example", i), "")})
	}
	sent := make(chan error, 1)
	// One connection, paced, so that most of it is still to come
	// when deskmail stops.
	go func() { sent <- sendAll(m.addr(), more, 1, 20*time.Millisecond) }()
	sentBefore := len(lg.deliveries)
	waitFor(t, m.name()+" to deliver some of the 300", 60*time.Second, func() bool {
		return len(m.attempts().deliveries) >= sentBefore+30
	})
	d.stop()
	if err := <-sent; err != nil {
		t.Fatalf("sending into %s while deskmail is down: %v", m.name(), err)
	}
	waitFor(t, m.name()+" to try every one of the 300", 60*time.Second, func() bool {
		l := m.attempts()
		tried := map[string]bool{}
		for _, dl := range l.deliveries {
			tried[dl.qid] = true
		}
		for _, m := range more {
			if !tried[l.qid[messageID(m.data)]] {
				return false
			}
		}
		return true
	})
	deferred := 0
	for _, dl := range m.attempts().deliveries[sentBefore:] {
		if dl.status == "deferred" {
			deferred++
		}
	}
	if deferred == 0 || m.queueEmpty() {
		t.Fatalf("deskmail stopped too late: %s deferred no mail", m.name())
	}
	d, _, httpAddr = startServe(t, bin, ddir, "--config", cfg, "--http-listen", "127.0.0.1:0")
	flushUntil(t, m.flush, m.name()+"'s queue to empty after the flush", 90*time.Second, m.queueEmpty)
	lg = m.attempts()
	checkOnce(t, lg, "reply-%d@customer.example", replies)
	checkOnce(t, lg, "outage-%d@customer.example", outage)
	tickets = ticketSubjects(t, bin, cfg)
	if len(tickets) != 3+bulk+outage {
		t.Errorf("%d tickets, want %d", len(tickets), 3+bulk+outage)
	}
	for i := range outage {
		if ids := tickets[fmt.Sprintf("Outage %d", i)]; len(ids) != 1 {
			t.Errorf("Outage %d: tickets %v, want one", i, ids)
		}
	}
	for i := range replies {
		s := showTicket(t, bin, cfg, tickets[fmt.Sprintf("Bulk %d", i)][0])
		if len(s.Conversations) != 2 || s.Conversations[1].MessageID != fmt.Sprintf("reply-%d@customer.example", i) {
			t.Errorf("Bulk %d: conversations %+v, want the mail and its one reply", i, s.Conversations)
		}
	}
	t.Logf("deskmail stopped mid-stream: %s deferred %d delivery attempts; after the restart and flush every mail is stored once (%v duplicates offered again)",
		m.name(), deferred, metricSum(t, httpAddr, "deskmail_message_actions_total", `action="duplicate"`))
	d.stop()
}

// checkOnce requires that each mail whose Message-ID is idFormat
// (with 0…n-1) went through the MTA (one queue id) and was delivered
// to each of its recipients exactly once in the end: attempts deferred
// or not, one "sent", last.
func checkOnce(t *testing.T, lg mtaLog, idFormat string, n int) {
	t.Helper()
	byQID := map[string]map[string][]string{}
	for _, dl := range lg.deliveries {
		if byQID[dl.qid] == nil {
			byQID[dl.qid] = map[string][]string{}
		}
		byQID[dl.qid][dl.rcpt] = append(byQID[dl.qid][dl.rcpt], dl.status)
	}
	for i := range n {
		id := fmt.Sprintf(idFormat, i)
		qid, ok := lg.qid[id]
		if !ok || len(byQID[qid]) == 0 {
			t.Errorf("%s: no delivery in the MTA's log", id)
			continue
		}
		for rcpt, st := range byQID[qid] {
			sent := 0
			for _, s := range st {
				if s == "sent" {
					sent++
				}
			}
			if sent != 1 || st[len(st)-1] != "sent" {
				t.Errorf("%s (queue id %s) to %s: delivery attempts %v, want exactly one sent, last", id, qid, rcpt, st)
			}
		}
	}
}

// messageID returns the Message-ID header of a mail customerMail made.
func messageID(data string) string {
	_, rest, _ := strings.Cut(data, "Message-ID: <")
	id, _, _ := strings.Cut(rest, ">")
	return id
}
