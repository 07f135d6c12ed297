package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/internal/testtool"
)

// buildBinary returns the real deskmail binary, built on first use
// into a temporary directory shared by the package's tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the real binary; skipped with -short")
	}
	testBinary.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			testBinary.err = fmt.Errorf("go tool not found: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "deskmail-bin-")
		if err != nil {
			testBinary.err = err
			return
		}
		bin := filepath.Join(dir, "deskmail")
		out, err := exec.Command(goBin, "build", "-o", bin, "github.com/deskmail/deskmail/cmd/deskmail").CombinedOutput()
		if err != nil {
			testBinary.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		testBinary.path = bin
	})
	if testBinary.err != nil {
		t.Fatal(testBinary.err)
	}
	return testBinary.path
}

// testBinary is the deskmail binary built once per test process (a
// link of the whole program costs seconds of CPU; 27 tests exec it).
// Tests must not modify it; TestMain removes its directory.
var testBinary struct {
	once sync.Once
	path string
	err  error
}

// TestMain runs the package's tests, stops the PostgreSQL cluster
// (pg_test.go) and removes the shared binary.
func TestMain(m *testing.M) {
	code := m.Run()
	pgCluster.Stop()
	if benchPG.c != nil {
		benchPG.c.Stop()
	}
	if testBinary.path != "" {
		os.RemoveAll(filepath.Dir(testBinary.path))
	}
	os.Exit(code)
}

// daemonProc is a running `deskmail serve`.
type daemonProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan error
}

// startServe starts `deskmail serve ARGS…` in dir and waits until it
// reports its SMTP and HTTP addresses.
func startServe(t *testing.T, bin, dir string, args ...string) (p *daemonProc, smtpAddr, httpAddr string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	p = &daemonProc{t: t, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var copied sync.WaitGroup
	copied.Go(func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.stdout.Write([]byte(sc.Text() + "\n"))
		}
	})
	go func() {
		copied.Wait()
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := p.stdout.String()
		smtpAddr, _ = afterPrefix(s, "deskmail: SMTP listening on ")
		httpAddr, _ = afterPrefix(s, "deskmail: HTTP listening on ")
		if smtpAddr == "" && httpAddr == "" { // log.format: json
			smtpAddr, httpAddr = jsonAddr(p.stderr.String(), "SMTP listening"), jsonAddr(p.stderr.String(), "HTTP listening")
		}
		if smtpAddr != "" && httpAddr != "" {
			return p, smtpAddr, httpAddr
		}
		select {
		case err := <-p.done:
			t.Fatalf("deskmail serve exited (%v)\nstdout:\n%s\nstderr:\n%s", err, s, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("deskmail serve did not report its addresses\nstdout:\n%s\nstderr:\n%s", s, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and requires exit status 0.
func (p *daemonProc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Fatalf("deskmail serve after SIGTERM: %v\nstderr:\n%s", err, p.stderr.String())
		}
	case <-time.After(60 * time.Second):
		p.t.Fatalf("deskmail serve did not stop after SIGTERM\nstderr:\n%s", p.stderr.String())
	}
}

// deskmailCmd runs a one-shot subcommand in dir and returns its stdout.
func deskmailCmd(t *testing.T, bin, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("deskmail %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// smtpSend sends one message with go-smtp's client.
func smtpSend(addr, from, to, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	if err := sendData(c, msg); err != nil {
		return err
	}
	return c.Quit()
}

// TestNewUser does what README tells a new user: run `deskmail serve`
// with no configuration, send a mail (go-smtp's client, and swaks when
// installed), see the ticket with `deskmail tickets list`, read
// `deskmail status`, then stop the daemon with SIGTERM.
func TestNewUser(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	p, smtpAddr, httpAddr := startServe(t, bin, dir, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")

	if err := smtpSend(smtpAddr, "alice@example.com", "support@localhost",
		testMail("alice@example.com", "support@localhost", "Printer broken", "printer-1@example.com")); err != nil {
		t.Fatalf("send with go-smtp: %v", err)
	}
	swaksSent := false
	if swaks, err := exec.LookPath("swaks"); err == nil {
		out, err := exec.Command(swaks, "--server", smtpAddr, "--to", "support@localhost", "--from", "bob@example.com",
			"--header", "Subject: Screen flickers", "--timeout", "20").CombinedOutput()
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		swaksSent = true
	}

	// SIGHUP without a configuration file changes nothing.
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the SIGHUP log line", 10*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "nothing to reload")
	})

	resp, err := http.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}

	// Metrics move: messages, and API requests by status (401 without a key).
	if resp, err := http.Get("http://" + httpAddr + "/api/v2/tickets"); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp, err = http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`deskmail_message_actions_total{action="created",channel="default"}`, `deskmail_api_requests_total{code="401"} 1`, "deskmail_outbox_queued"} {
		if !strings.Contains(string(metricsText), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	list := deskmailCmd(t, bin, dir, "tickets", "list", "--db", "deskmail.db")
	if !strings.Contains(list, "Printer broken") {
		t.Errorf("tickets list lacks the ticket:\n%s", list)
	}
	if swaksSent && !strings.Contains(list, "Screen flickers") {
		t.Errorf("tickets list lacks the mail sent with swaks:\n%s", list)
	}
	var tickets []map[string]any
	if err := json.Unmarshal([]byte(deskmailCmd(t, bin, dir, "tickets", "list", "--db", "deskmail.db", "--json")), &tickets); err != nil {
		t.Fatal(err)
	}
	want := 1
	if swaksSent {
		want = 2
	}
	if len(tickets) != want {
		t.Errorf("%d tickets, want %d", len(tickets), want)
	}
	status := deskmailCmd(t, bin, dir, "status", "--db", "deskmail.db")
	healthy := false
	for _, l := range strings.Split(status, "\n") {
		f := strings.Fields(l)
		// CHANNEL KIND HEALTH TODAY …
		healthy = healthy || len(f) >= 4 && f[0] == "default" && f[1] == "smtp" && f[2] == "ok" && f[3] == strconv.Itoa(want)
	}
	if !healthy || !strings.Contains(status, "outbox:") {
		t.Errorf("status output:\n%s", status)
	}
	// The pipeline logs one line per message, without the body.
	logs := p.stderr.String()
	if !strings.Contains(logs, "message_id=printer-1@example.com") || strings.Contains(logs, "Hello.") {
		t.Errorf("log lines per message missing, or the body was logged:\n%s", logs)
	}

	p.stop()
	if !swaksSent {
		testtool.Missing(t, "swaks not installed (apt-get install swaks): only go-smtp's client was tried")
	}
}

// TestServeSIGHUP reloads the real binary with kill -HUP: a support
// address added to the file is accepted afterwards; a broken file is
// refused and the old configuration kept.
func TestServeSIGHUP(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "deskmail.yaml")
	v1 := "database: deskmail.db\nchannels:\n  - name: support\n    addresses: [support@example.com]\n"
	if err := os.WriteFile(cfgFile, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	p, smtpAddr, _ := startServe(t, bin, dir, "--config", cfgFile, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	mail := func(to, id string) error {
		return smtpSend(smtpAddr, "carol@customer.example", to, testMail("carol@customer.example", to, "Hi "+id, id+"@customer.example"))
	}
	var se *smtp.SMTPError
	if err := mail("sales@example.com", "s0"); !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("sales@ before the reload: %v, want 550", err)
	}
	hup := func(n int, what string) {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, what, 20*time.Second, func() bool {
			s := p.stderr.String()
			return strings.Count(s, "reload: configuration applied")+strings.Count(s, "reload refused") >= n
		})
	}
	os.WriteFile(cfgFile, []byte(strings.Replace(v1, "[support@example.com]", "[support@example.com, sales@example.com]", 1)), 0o600)
	hup(1, "the reload")
	if err := mail("sales@example.com", "s1"); err != nil {
		t.Fatalf("sales@ after the reload: %v\n%s", err, p.stderr.String())
	}
	os.WriteFile(cfgFile, []byte("database: deskmail.db\nchannels:\n  - name: support\n    adresses: [support@example.com]\n"), 0o600)
	hup(2, "the refused reload")
	if !strings.Contains(p.stderr.String(), "deskmail.yaml:4:") {
		t.Errorf("the refused reload does not name FILE:LINE:\n%s", p.stderr.String())
	}
	if err := mail("sales@example.com", "s2"); err != nil {
		t.Fatalf("sales@ after a refused reload: %v", err)
	}
	p.stop()
}
