// Package imaptest runs IMAP servers for tests: a throw-away Dovecot
// (Debian's dovecot-imapd) as a child process, for the interop tests
// of the pollers and of `deskmail import`. It is imported by tests only.
package imaptest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Server is a running test server: clear-text IMAP on Host:Port, one
// user with the password given, folders separated by Delim.
type Server struct {
	Host  string
	Port  int
	Delim rune
}

// Dovecot runs a throw-away Dovecot as a child process for the interop
// tests against a real server. They run when the dovecot binary is
// found, or fail when DESKMAIL_DOVECOT=1 demands them and it is
// missing; DESKMAIL_DOVECOT=0 skips them. It has its own
// configuration (no system config), base_dir, log and Maildir under
// t.TempDir(), one passwd-file user, IMAP without TLS on a free
// loopback port. As root, the mail user is "nobody" and Dovecot's own
// service users (dovecot, dovenull, created by the package) run the
// internal processes; otherwise everything runs as the current user.
func Dovecot(t testing.TB, username, password string) *Server {
	t.Helper()
	switch os.Getenv("DESKMAIL_DOVECOT") {
	case "0":
		t.Skip("DESKMAIL_DOVECOT=0")
	}
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		for _, p := range []string{"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if os.Getenv("DESKMAIL_DOVECOT") == "1" {
			t.Fatalf("DESKMAIL_DOVECOT=1 but the dovecot binary is missing (apt-get install dovecot-imapd): %v", err)
		}
		t.Skip("dovecot binary not found (apt-get install dovecot-imapd, or DESKMAIL_DOVECOT=1 to require it)")
	}
	dir, err := os.MkdirTemp("", "deskmail-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Dovecot's unprivileged processes must reach the Maildir.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	internal, login := me.Username, me.Username
	if uid == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skip("running as root without a nobody user for Dovecot's mail")
		}
		uid, _ = strconv.Atoi(nobody.Uid)
		gid, _ = strconv.Atoi(nobody.Gid)
		internal, login = "dovecot", "dovenull"
		for _, u := range []string{internal, login} {
			if _, err := user.Lookup(u); err != nil {
				t.Skipf("running as root: the %s user (made by the dovecot-core package) is missing", u)
			}
		}
	}
	for _, d := range []string{"run", "state", "mail", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"mail", "home"} {
		if err := os.Chown(filepath.Join(dir, d), uid, gid); err != nil && os.Getuid() == 0 {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(username+":{PLAIN}"+password+"::::::\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := fmt.Sprintf(`
protocols = imap
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = deskmail-test-%[2]d
log_path = %[1]s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = %[3]s
default_internal_group = %[6]s
default_login_user = %[4]s
first_valid_uid = 1
mail_location = maildir:%[1]s/mail/%%n
mailbox_idle_check_interval = 1 secs
namespace inbox {
  inbox = yes
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[5]d gid=%[7]d home=%[1]s/home/%%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, port, internal, login, uid, groupName(t, internal), gid)
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-c", confPath)
	out, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		out.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			logs, _ := os.ReadFile(filepath.Join(dir, "stderr"))
			logs2, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Fatalf("dovecot exited: %v\n%s\n%s", err, logs, logs2)
		default:
		}
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Fatalf("dovecot did not listen on %d: %v\n%s", port, err, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot log:\n%s", logs)
		}
	})
	return &Server{Host: "127.0.0.1", Port: port, Delim: '.'}
}

func groupName(t testing.TB, u string) string {
	usr, err := user.Lookup(u)
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(usr.Gid)
	if err != nil {
		t.Fatal(err)
	}
	return g.Name
}
