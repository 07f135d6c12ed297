package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// postfixMaster is the part of master.cf every instance has: the
// services Postfix itself needs, none of them chrooted (the throw-away
// queue has no copy of /etc), and postlogd for maillog_file.
const postfixMaster = `pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// postfixInstance is a throw-away Postfix: its own config_directory,
// queue_directory, data_directory and maillog_file under one temporary
// directory, its smtpd on a free loopback port, its master process a
// child of the test (postfix start-fg), stopped at cleanup. It shares
// nothing with a system Postfix but the installed programs.
type postfixInstance struct {
	t       *testing.T
	dir     string // config_directory
	smtpd   string // host:port of its smtpd
	maillog string
	proc    *mtaProc // postfix start-fg, whose child is the master
}

// startPostfix writes into dir (empty) main.cf (the instance's own settings, then
// mainExtra), master.cf (smtpd on a free loopback port, the standard
// services, then masterExtra) and the transport map, and starts
// Postfix.
func startPostfix(t *testing.T, dir, mainExtra, masterExtra, transport string) *postfixInstance {
	t.Helper()
	mustRoot(t, "Postfix")
	conf := filepath.Join(dir, "conf")
	p := &postfixInstance{t: t, dir: conf, maillog: filepath.Join(dir, "maillog")}
	p.smtpd = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	// Postfix's processes reach their directories as the postfix user.
	openUp(t, dir)
	for _, d := range []string{conf, filepath.Join(dir, "queue")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	uid, gid := lookupIDs(t, "postfix")
	if err := os.Chown(data, uid, gid); err != nil {
		t.Fatal(err)
	}
	defaults := func(name string) string {
		out, err := exec.Command("postconf", "-d", "-h", name).Output()
		if err != nil {
			t.Fatalf("postconf -d %s: %v (is Debian's postfix installed? .ci/run installs it)", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
command_directory = %[2]s
daemon_directory = %[3]s
meta_directory = %[4]s
shlib_directory = %[5]s
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.postfix.test
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
# Bounces to the test's customers go nowhere.
default_transport = error:this test delivers no outside mail
`, dir, defaults("command_directory"), defaults("daemon_directory"), defaults("meta_directory"), defaults("shlib_directory"))
	master := p.smtpd + " inet n - n - - smtpd\n" + postfixMaster + masterExtra
	for name, text := range map[string]string{"main.cf": main + mainExtra, "master.cf": master} {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.setTransport(transport)

	out := filepath.Join(dir, "start-fg.out")
	p.proc = startMTA(t, exec.Command("postfix", "-c", conf, "start-fg"), out,
		func(int) []string { return []string{"postfix", "-c", conf, "stop"} })
	t.Cleanup(p.stop)
	p.proc.waitListening(t, p.smtpd, out, p.log)
	return p
}

// postfix runs `postfix -c DIR ARGS…`.
func (p *postfixInstance) postfix(args ...string) {
	p.t.Helper()
	if out, err := exec.Command("postfix", append([]string{"-c", p.dir}, args...)...).CombinedOutput(); err != nil {
		p.t.Fatalf("postfix %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// setTransport writes and postmaps the transport map; a running
// instance needs `postfix reload` afterwards.
func (p *postfixInstance) setTransport(text string) {
	p.t.Helper()
	f := filepath.Join(p.dir, "transport")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		p.t.Fatal(err)
	}
	if out, err := exec.Command("postmap", "-c", p.dir, "hash:"+f).CombinedOutput(); err != nil {
		p.t.Fatalf("postmap: %v\n%s", err, out)
	}
}

// stop stops the instance (postfix stop), killing its process group if
// it does not go.
func (p *postfixInstance) stop() {
	if p.proc.exited() {
		return
	}
	exec.Command("postfix", "-c", p.dir, "stop").Run()
	select {
	case <-p.proc.done:
		return
	case <-time.After(20 * time.Second):
	}
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(p.dir), "queue", "pid", "master.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	p.proc.cmd.Process.Kill()
	<-p.proc.done
	p.t.Errorf("Postfix did not stop with postfix stop")
}

func (p *postfixInstance) name() string     { return "Postfix" }
func (p *postfixInstance) addr() string     { return p.smtpd }
func (p *postfixInstance) attempts() mtaLog { return parsePostfixLog(p.log()) }
func (p *postfixInstance) flush()           { p.postfix("flush") }

// log returns the instance's maillog.
func (p *postfixInstance) log() string {
	b, _ := os.ReadFile(p.maillog)
	return string(b)
}

// queueEmpty tells whether the instance's queue holds no mail.
func (p *postfixInstance) queueEmpty() bool {
	out, _ := exec.Command("postqueue", "-c", p.dir, "-p").CombinedOutput()
	return strings.Contains(string(out), "Mail queue is empty")
}

var (
	pfMessageID = regexp.MustCompile(`(?m)postfix/cleanup\[\d+\]: ([0-9A-F]+): message-id=<([^>]*)>`)
	pfDelivery  = regexp.MustCompile(`(?m)postfix/\w+\[\d+\]: ([0-9A-F]+): to=<([^>]*)>, (?:orig_to=<[^>]*>, )?relay=([^,]*), .*?dsn=([0-9.]+), status=(\w+) (.*)$`)
)

func parsePostfixLog(text string) mtaLog {
	l := mtaLog{qid: map[string]string{}}
	for _, m := range pfMessageID.FindAllStringSubmatch(text, -1) {
		l.qid[m[2]] = m[1]
	}
	for _, m := range pfDelivery.FindAllStringSubmatch(text, -1) {
		l.deliveries = append(l.deliveries, mtaAttempt{qid: m[1], rcpt: m[2], relay: m[3], dsn: m[4], status: m[5], text: m[6]})
	}
	return l
}

// postfixRecipes returns README's Postfix recipes ("Routing a domain's
// mail from Postfix"): the main.cf lines, the transport map, the pipe
// service's master.cf lines, the recipient-limit main.cf line, and the
// pipe's transport map entry.
func postfixRecipes(t *testing.T) (mainCf, transport, pipeMaster, pipeMain, pipeTransport string) {
	t.Helper()
	section := readmeSection(t, "### Routing a domain's mail from Postfix")
	b := fencedBlocks(section)
	if len(b) != 4 || !strings.Contains(b[0], "transport_maps") || !strings.Contains(b[1], "smtp:[127.0.0.1]:2525") ||
		!strings.Contains(b[2], " pipe\n") || !strings.Contains(b[3], "deskmail_destination_recipient_limit") {
		t.Fatalf("README's Postfix section does not have its four blocks (main.cf, transport, master.cf, main.cf): %q", b)
	}
	m := regexp.MustCompile("in the transport map `([^`]+)`").FindStringSubmatch(section)
	if m == nil {
		t.Fatal("README's Postfix section names no transport map entry for the pipe")
	}
	return b[0], b[1], b[2], b[3], m[1] + "\n"
}

// TestPostfixSMTPTransport puts a real Postfix in front of `deskmail
// serve` with README's main.cf lines and transport map (the SMTP
// receiver as Postfix's smtp transport) and runs frontScenario: swaks
// mails, 2,000 at full speed without one 4xx, deskmail stopped in the
// middle and Postfix flushed once it is back; every mail stored once.
func TestPostfixSMTPTransport(t *testing.T) {
	bin := buildBinary(t)
	mainCf, transport, _, _, _ := postfixRecipes(t)
	pdir := t.TempDir()
	cfg, port := frontServeConfig(t)
	pf := startPostfix(t, pdir,
		replaceAll(t, "main.cf lines", mainCf, "hash:/etc/postfix/transport", "hash:"+filepath.Join(pdir, "conf", "transport")), "",
		replaceAll(t, "transport map", transport, "]:2525", fmt.Sprintf("]:%d", port)))

	frontScenario(t, pf, bin, cfg, 2000)
}

// waitStatus waits until the maillog shows a delivery of the mail whose
// Message-ID is id to rcpt with status, and returns that line.
func (p *postfixInstance) waitStatus(id, rcpt, status string) mtaAttempt {
	p.t.Helper()
	var found mtaAttempt
	waitFor(p.t, fmt.Sprintf("Postfix: %s to %s %s", id, rcpt, status), 60*time.Second, func() bool {
		l := parsePostfixLog(p.log())
		for _, dl := range l.deliveries {
			if qid, ok := l.qid[id]; ok && dl.qid == qid && dl.rcpt == rcpt && dl.status == status {
				found = dl
				return true
			}
		}
		return false
	})
	return found
}

// TestPostfixPipe puts a real Postfix in front of `deskmail ingest`
// with README's pipe recipe: the master.cf service (run as nobody
// here, README's user=deskmail), the recipient limit, and the transport
// map entry for both support addresses, plus one for an address that
// is no support address. While the database cannot be written,
// deskmail exits 75 and Postfix defers; after that is fixed a flush
// delivers the mail once. Then, with swaks: a new mail, its reply, a Bcc
// to the second channel's address (lands there), a mail to both
// addresses (one ticket; the second copy is a duplicate), the null
// sender (an empty --sender), the unknown address (exit 67: Postfix
// bounces it, 5.1.1); then 100 mails at full speed. Every mail is one
// ticket or one reply, exactly once.
func TestPostfixPipe(t *testing.T) {
	bin := buildBinary(t)
	openUp(t, filepath.Dir(bin))
	mainCf, _, pipeMaster, pipeMain, pipeTransport := postfixRecipes(t)
	pdir, ddir := t.TempDir(), t.TempDir()
	openUp(t, ddir)
	dbDir := filepath.Join(ddir, "db")
	if err := os.Mkdir(dbDir, 0o755); err != nil { // root's: nobody cannot write it yet
		t.Fatal(err)
	}
	cfg := filepath.Join(ddir, "deskmail.yaml")
	src := fmt.Sprintf("database: %s\nchannels:\n  - name: support\n    addresses: [support@example.com]\n  - name: help\n    addresses: [help@example.com]\n",
		filepath.Join(dbDir, "deskmail.db"))
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	transport := pipeTransport + replaceAll(t, "pipe transport entry", pipeTransport, "support@", "help@") + "nobody@example.com deskmail:\n"
	pf := startPostfix(t, pdir,
		replaceAll(t, "main.cf lines", mainCf, "hash:/etc/postfix/transport", "hash:"+filepath.Join(pdir, "conf", "transport"))+pipeMain,
		replaceAll(t, "master.cf lines", pipeMaster, "/usr/local/bin/deskmail", bin, "/etc/deskmail/deskmail.yaml", cfg, "user=deskmail", "user=nobody"),
		transport)

	swaks(t, pf.smtpd, "eve@customer.example", "support@example.com",
		customerMail("Eve <eve@customer.example>", "support@example.com", "Early bird", "pp-0@customer.example", ""))
	if dl := pf.waitStatus("pp-0@customer.example", "support@example.com", "deferred"); !strings.HasPrefix(dl.dsn, "4.") {
		t.Errorf("database not writable: Postfix says %s %s, want a 4.x.x deferral", dl.dsn, dl.text)
	}
	uid, gid := lookupIDs(t, "nobody")
	if err := os.Chown(dbDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	flushUntil(t, pf.flush, "the deferred mail", 60*time.Second, func() bool {
		d := pf.attempts().deliveries // pp-0's only, so far
		return len(d) >= 2 && d[len(d)-1].status == "sent"
	})

	swaks(t, pf.smtpd, "ann@customer.example", "support@example.com",
		customerMail("Ann <ann@customer.example>", "support@example.com", "Printer on fire", "pp-1@customer.example", ""))
	pf.waitStatus("pp-1@customer.example", "support@example.com", "sent")
	swaks(t, pf.smtpd, "ann@customer.example", "support@example.com",
		customerMail("Ann <ann@customer.example>", "support@example.com", "Re: Printer on fire", "pp-2@customer.example", "pp-1@customer.example"))
	swaks(t, pf.smtpd, "bob@customer.example", "help@example.com",
		customerMail("Bob <bob@customer.example>", "partner@other.example", "Quote via Bcc", "pp-3@customer.example", ""))
	swaks(t, pf.smtpd, "cat@customer.example", "support@example.com,help@example.com",
		customerMail("Cat <cat@customer.example>", "support@example.com, help@example.com", "Two addresses", "pp-4@customer.example", ""))
	swaks(t, pf.smtpd, "<>", "support@example.com",
		customerMail("Mailer <mailer@customer.example>", "support@example.com", "From the null sender", "pp-5@customer.example", ""))
	swaks(t, pf.smtpd, "dan@customer.example", "nobody@example.com",
		customerMail("Dan <dan@customer.example>", "nobody@example.com", "Wrong address", "pp-6@customer.example", ""))
	if dl := pf.waitStatus("pp-6@customer.example", "nobody@example.com", "bounced"); dl.dsn != "5.1.1" || !strings.Contains(dl.text, "not a support address") {
		t.Errorf("unknown address: Postfix says %s %s, want 5.1.1 and deskmail's reason", dl.dsn, dl.text)
	}
	actions := map[string]string{}
	for _, c := range []struct{ id, rcpt string }{{"pp-2", "support@example.com"}, {"pp-3", "help@example.com"},
		{"pp-4", "support@example.com"}, {"pp-4", "help@example.com"}, {"pp-5", "support@example.com"}} {
		dl := pf.waitStatus(c.id+"@customer.example", c.rcpt, "sent")
		m := regexp.MustCompile(`"action":"(\w+)"`).FindStringSubmatch(dl.text)
		if m == nil {
			t.Fatalf("Postfix's log does not show deskmail's output for %s: %s", c.id, dl.text)
		}
		actions[c.id+" "+c.rcpt] = m[1]
	}
	if a := actions["pp-4 support@example.com"] + " " + actions["pp-4 help@example.com"]; a != "created duplicate" && a != "duplicate created" {
		t.Errorf("mail to both addresses: deskmail said %q, want one created and one duplicate", a)
	}
	if actions["pp-2 support@example.com"] != "appended" {
		t.Errorf("the reply: %q, want appended", actions["pp-2 support@example.com"])
	}

	const bulk = 100
	mails := make([]mtaMail, bulk)
	for i := range mails {
		from := fmt.Sprintf("c%d@customer.example", i)
		to := []string{"support@example.com", "help@example.com"}[i%2]
		mails[i] = mtaMail{from, to, customerMail(from, to, fmt.Sprintf("Pipe %d", i), fmt.Sprintf("pipe-%d@customer.example", i), "")}
	}
	start := time.Now()
	if err := sendAll(pf.smtpd, mails, 4, 0); err != nil {
		t.Fatalf("sending into Postfix: %v", err)
	}
	waitFor(t, "Postfix to deliver the 100 through the pipe", 120*time.Second, func() bool {
		time.Sleep(50 * time.Millisecond)
		return pf.queueEmpty()
	})
	t.Logf("100 mails through Postfix's pipe into deskmail ingest: %v (%.0f msg/s)", time.Since(start).Round(time.Millisecond), bulk/time.Since(start).Seconds())
	lg := parsePostfixLog(pf.log())
	checkOnce(t, lg, "pipe-%d@customer.example", bulk)
	checkOnce(t, lg, "pp-%d@customer.example", 6) // pp-6, refused, was bounced
	for _, dl := range lg.deliveries {
		// Only the refused recipient, and the notice to its sender
		// (which this instance delivers nowhere).
		if dl.status == "bounced" && dl.rcpt != "nobody@example.com" && dl.rcpt != "dan@customer.example" {
			t.Errorf("Postfix bounced %s to %s: %s", dl.qid, dl.rcpt, dl.text)
		}
	}

	// Read back only now: a root-owned -shm file would stop nobody's writes.
	tickets := ticketSubjects(t, bin, cfg)
	// "Two addresses" is delivered once per recipient, in parallel:
	// the first copy committed makes the ticket, in its channel.
	for subject, channel := range map[string]string{"Early bird": "support", "Printer on fire": "support",
		"Quote via Bcc": "help", "Two addresses": "", "From the null sender": "support"} {
		if ids := tickets[subject]; len(ids) != 1 {
			t.Errorf("%q: tickets %v, want one", subject, ids)
		} else if s := showTicket(t, bin, cfg, ids[0]); s.Channel != channel && channel != "" {
			t.Errorf("%q landed in channel %q, want %q", subject, s.Channel, channel)
		}
	}
	for i := range bulk {
		if ids := tickets[fmt.Sprintf("Pipe %d", i)]; len(ids) != 1 {
			t.Errorf("Pipe %d: tickets %v, want one", i, ids)
		}
	}
	if len(tickets) != 5+bulk {
		t.Errorf("%d tickets, want %d", len(tickets), 5+bulk)
	}
	if s := showTicket(t, bin, cfg, tickets["Printer on fire"][0]); len(s.Conversations) != 2 {
		t.Errorf("the reply: %d conversations, want 2", len(s.Conversations))
	}
}
