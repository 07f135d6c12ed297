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
