package main

import (
	"fmt"
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
)

// eximCIRoot is where .ci/run unpacks Debian's exim4-daemon-light: the
// package conflicts with postfix (both are the system's MTA), so the
// test runs the binary of the unpacked package instead.
const eximCIRoot = "/opt/deskmail-ci/exim4"

// eximBinary finds an exim4 binary: $DESKMAIL_EXIM, the one .ci/run
// unpacks, or an installed one.
func eximBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DESKMAIL_EXIM"); p != "" {
		return p
	}
	for _, p := range []string{filepath.Join(eximCIRoot, "usr/sbin/exim4"), "/usr/sbin/exim4"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("no exim4 binary: .ci/run unpacks Debian's exim4-daemon-light into %s (or set DESKMAIL_EXIM)", eximCIRoot)
	return ""
}

// eximInstance is a throw-away Exim daemon (exim -bdf, a child of the
// test) with its own configuration file (-C), spool and log directory,
// listening on a free loopback port. Debian's binary looks its user
// Debian-exim up before it reads any configuration; when the system has
// no such user (the package is not installed), Exim runs in a private
// mount namespace in which /etc/passwd and /etc/group are copies that
// add it (as nobody's ids), so the system's own files are not touched.
type eximInstance struct {
	t     *testing.T
	bin   string
	conf  string
	dir   string
	smtpd string
	wrap  []string // prefix of every Exim command
	proc  *mtaProc // exim -bdf
}

// eximConfig is the instance's configuration around README's lines:
// the relay domain and the test's ACL (accept example.com from
// loopback), the main-section lines, README's router, a router that
// fails any other address, the smtp transport Debian names remote_smtp.
const eximConfig = `exim_path = %[1]s
primary_hostname = mx.exim.test
spool_directory = %[2]s/spool
log_file_path = %[2]s/log/%%slog
pid_file_path = %[2]s/exim.pid
keep_environment =
tls_advertise_hosts =
local_interfaces = <; %[3]s
domainlist relay_to_domains = example.com
hostlist relay_from_hosts = <; 127.0.0.1
acl_smtp_rcpt = acl_check_rcpt
%[4]s
begin acl
acl_check_rcpt:
  accept hosts = +relay_from_hosts
         domains = +relay_to_domains
  deny   message = relaying not permitted

begin routers
%[5]s
fail_others:
  driver = redirect
  allow_fail
  data = :fail: no such address here

begin transports
remote_smtp:
  driver = smtp

begin retry
*   *   F,2h,15m; G,16h,1h,1.5; F,4d,6h
`

// startExim writes the configuration (README's main-section lines and
// router into eximConfig) and starts the daemon.
func startExim(t *testing.T, mainLines, router string) *eximInstance {
	t.Helper()
	mustRoot(t, "Exim")
	dir := t.TempDir()
	e := &eximInstance{t: t, bin: eximBinary(t), dir: dir, conf: filepath.Join(dir, "exim.conf")}
	port := freePort(t)
	e.smtpd = fmt.Sprintf("127.0.0.1:%d", port)
	openUp(t, dir)
	uid, gid := lookupIDs(t, "nobody")
	for _, d := range []string{"spool", "log"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dir, d), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(eximConfig, e.bin, dir, fmt.Sprintf("127.0.0.1.%d", port), mainLines, router)
	if err := os.WriteFile(e.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := user.Lookup("Debian-exim"); err != nil {
		files := map[string]string{"passwd": fmt.Sprintf("Debian-exim:x:%d:%d::/nonexistent:/usr/sbin/nologin\n", uid, gid),
			"group": fmt.Sprintf("Debian-exim:x:%d:\n", gid)}
		for name, line := range files {
			sys, err := os.ReadFile("/etc/" + name)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), append(sys, line...), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		e.wrap = []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"`,
			"sh", filepath.Join(dir, "passwd"), filepath.Join(dir, "group")}
	}

	out := filepath.Join(dir, "daemon.out")
	e.proc = startMTA(t, e.command("-bdf"), out, func(pid int) []string { return []string{"kill", strconv.Itoa(pid)} })
	t.Cleanup(e.stop)
	e.proc.waitListening(t, e.smtpd, out, func() string { return e.log("main") + e.log("panic") })
	return e
}

// command is `exim -C CONF ARGS…` (in the namespace when needed).
func (e *eximInstance) command(args ...string) *exec.Cmd {
	argv := append(append(append([]string{}, e.wrap...), e.bin, "-C", e.conf), args...)
	return exec.Command(argv[0], argv[1:]...)
}

// exim runs one Exim command and returns its output.
func (e *eximInstance) exim(args ...string) string {
	e.t.Helper()
	out, err := e.command(args...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("exim %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// stop ends the daemon with SIGTERM (SIGKILL if it does not go).
func (e *eximInstance) stop() {
	if e.proc.exited() {
		return
	}
	e.proc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.proc.done:
		return
	case <-time.After(20 * time.Second):
	}
	e.proc.cmd.Process.Kill()
	<-e.proc.done
	e.t.Errorf("Exim did not stop on SIGTERM")
}

// log returns one of Exim's logs ("main", "reject", "panic").
func (e *eximInstance) log(which string) string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "log", which+"log"))
	return string(b)
}

var (
	eximReceived = regexp.MustCompile(`(?m)^\S+ \S+ (\S+) <= .* id=(\S+)`)
	eximDelivery = regexp.MustCompile(`(?m)^\S+ \S+ (\S+) (=>|->|==|\*\*) (\S+) (.*)$`)
	eximStatus   = map[string]string{"=>": "sent", "->": "sent", "==": "deferred", "**": "bounced"}
)

func (e *eximInstance) name() string { return "Exim" }
func (e *eximInstance) addr() string { return e.smtpd }

// flush forces delivery of the whole queue: eight queue runners
// (exim -qff) at once, since one delivers a message at a time and each
// skips the messages another has locked.
func (e *eximInstance) flush() {
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if out, err := e.command("-qff").CombinedOutput(); err != nil {
				e.t.Errorf("exim -qff: %v\n%s", err, out)
			}
		})
	}
	wg.Wait()
}

// attempts parses the main log: "<=" names a message's id, "=>" and
// "->" are deliveries, "==" deferrals and "**" failures.
func (e *eximInstance) attempts() mtaLog {
	text := e.log("main")
	l := mtaLog{qid: map[string]string{}}
	for _, m := range eximReceived.FindAllStringSubmatch(text, -1) {
		l.qid[m[2]] = m[1]
	}
	for _, m := range eximDelivery.FindAllStringSubmatch(text, -1) {
		l.deliveries = append(l.deliveries, mtaAttempt{qid: m[1], rcpt: m[3], status: eximStatus[m[2]], text: m[4]})
	}
	return l
}

func (e *eximInstance) queueEmpty() bool {
	return strings.TrimSpace(e.exim("-bpc")) == "0"
}

// eximRecipe returns README's Exim lines: the main-section lines and the
// router.
func eximRecipe(t *testing.T) (mainLines, router string) {
	t.Helper()
	b := fencedBlocks(readmeSection(t, "### Routing a domain's mail from Exim"))
	if len(b) != 2 || !strings.Contains(b[0], "smtp_accept_queue_per_connection") || !strings.Contains(b[1], "driver = manualroute") {
		t.Fatalf("README's Exim section does not have its two blocks (main section, router): %q", b)
	}
	return b[0], b[1]
}

// TestEximSMTPTransport puts a real Exim (Debian's exim4-daemon-light)
// in front of `deskmail serve` with README's main-section lines and
// router, and runs frontScenario: swaks mails, 300 at full speed
// without one 4xx, deskmail stopped in the middle and Exim's queue run
// (exim -qff, eight runners) once it is back; every mail stored once.
func TestEximSMTPTransport(t *testing.T) {
	bin := buildBinary(t)
	mainLines, router := eximRecipe(t)
	cfg, port := frontServeConfig(t)
	e := startExim(t, mainLines, replaceAll(t, "Exim router", router, "127.0.0.1::2525", fmt.Sprintf("127.0.0.1::%d", port)))
	frontScenario(t, e, bin, cfg, 300)
}
