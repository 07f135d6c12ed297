package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// literal is an imap.LiteralReader over bytes.
type literal struct {
	*bytes.Reader
}

func (l literal) Size() int64 { return l.Reader.Size() }

// memIMAP starts imapmemserver behind imapserver.New on 127.0.0.1:0
// (as ingest/poller's tests do) with user "support" / "secret", an
// INBOX holding two messages, one of them seen, and an Archive folder.
func memIMAP(t *testing.T) int {
	t.Helper()
	u := imapmemserver.NewUser("support", "secret")
	for _, f := range []string{"INBOX", "Archive"} {
		if err := u.Create(f, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, flags := range [][]imap.Flag{{imap.FlagSeen}, nil} {
		raw := testMail("a@customer.example", "support@example.com", "hello", fmt.Sprintf("m%d@customer.example", i))
		if _, err := u.Append("INBOX", literal{bytes.NewReader([]byte(raw))}, &imap.AppendOptions{Flags: flags}); err != nil {
			t.Fatal(err)
		}
	}
	return serveMemIMAP(t, u)
}

// serveMemIMAP serves one imapmemserver user on 127.0.0.1:0 and
// returns the port.
func serveMemIMAP(t *testing.T, u *imapmemserver.User) int {
	t.Helper()
	mem := imapmemserver.New()
	mem.AddUser(u)
	return serveIMAP(t, func() imapserver.Session { return mem.NewSession() }, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}, imap.CapUIDPlus: {}})
}

// serveIMAP serves IMAP sessions from newSession on 127.0.0.1:0 (clear
// text, logins allowed) until the test ends and returns the port.
func serveIMAP(t *testing.T, newSession func() imapserver.Session, caps imap.CapSet) int {
	t.Helper()
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return newSession(), nil, nil
		},
		InsecureAuth: true,
		Caps:         caps,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func TestChannelsTest(t *testing.T) {
	port := memIMAP(t)
	dir := t.TempDir()
	cfgFor := func(name, password string, folders string) string {
		p := filepath.Join(dir, name+".yaml")
		y := fmt.Sprintf(`database: %s
channels:
  - name: mailbox
    addresses: [support@example.com]
    imap:
      host: 127.0.0.1
      port: %d
      tls: none
      username: support
      password: %q
      folders: %s
  - name: web
    addresses: [web@example.com]
`, filepath.Join(dir, "d.db"), port, password, folders)
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	channels := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"channels"}, args...), nil, &out, &errb)
		return code, out.String(), errb.String()
	}

	good := cfgFor("good", "secret", "[INBOX, Archive]")
	code, out, errOut := channels("test", "mailbox", "--config", good)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"IDLE yes, MOVE yes, UIDPLUS yes", "INBOX", "Archive", "ok: mailbox"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// INBOX: 2 messages, 1 unseen.
	var inbox []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "INBOX") {
			inbox = strings.Fields(l)
		}
	}
	if len(inbox) < 3 || inbox[1] != "2" || inbox[2] != "1" {
		t.Errorf("INBOX line %q, want 2 messages, 1 unseen", inbox)
	}
	if _, err := os.Stat(filepath.Join(dir, "d.db")); err == nil {
		t.Error("a password channel test created the database")
	}

	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"wrong password", cfgFor("badpw", "nope", "[INBOX]"), "refused the user name or password"},
		{"missing folder", cfgFor("nofolder", "secret", "[INBOX, Tickets]"), "folder does not exist"},
	} {
		code, _, errOut := channels("test", "mailbox", "--config", tc.cfg)
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if code == 0 || len(lines) != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want one line with %q and a non-zero exit", tc.name, code, errOut, tc.want)
		}
	}

	// Unreachable server: a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	unreachable := cfgFor("down", "secret", "[INBOX]")
	data, _ := os.ReadFile(unreachable)
	os.WriteFile(unreachable, []byte(strings.Replace(string(data), fmt.Sprintf("port: %d", port), fmt.Sprintf("port: %d", closed), 1)), 0o600)
	if code, _, errOut := channels("test", "mailbox", "--config", unreachable); code == 0 || !strings.Contains(errOut, "could not be reached") {
		t.Errorf("unreachable: exit %d, stderr %q", code, errOut)
	}

	// Usage errors name the IMAP channels.
	if code, _, errOut := channels("test", "web", "--config", good); code != 2 || !strings.Contains(errOut, "IMAP channels: mailbox") {
		t.Errorf("SMTP-only channel: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := channels("test", "nosuch", "--config", good); code != 2 {
		t.Errorf("unknown channel: exit %d, want 2", code)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, nil, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(out.String(), "deskmail ") || !strings.Contains(out.String(), "database schema ") || !strings.Contains(out.String(), "go go1.") {
		t.Errorf("version output:\n%s", out.String())
	}
}
