package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// apiCall sends one API request as the daemon's agent and returns the
// status code and body.
func (d *apiDaemon) apiCall(method, path, body string) (int, string) {
	d.t.Helper()
	req, _ := http.NewRequest(method, "http://"+d.http+path, strings.NewReader(body))
	req.SetBasicAuth(d.key, "X")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// ready is GET /readyz.
func (d *apiDaemon) ready() (int, readiness) {
	d.t.Helper()
	resp, err := http.Get("http://" + d.http + "/readyz")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		d.t.Fatal(err)
	}
	return resp.StatusCode, r
}

// waitReady polls /readyz (its probe is cached for a few seconds) until
// it answers code.
func (d *apiDaemon) waitReady(code int) readiness {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, r := d.ready()
		if c == code {
			return r
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("/readyz stayed %d %+v, want %d\n%s", c, r, code, d.proc.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// status is `deskmail status --json`.
func (d *apiDaemon) status() statusReport {
	d.t.Helper()
	var s statusReport
	out := deskmailCmd(d.t, d.bin, d.dir, "status", "--config", d.cfg, "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		d.t.Fatalf("status: %v\n%s", err, out)
	}
	return s
}

// wantUnavailable checks Freshdesk's error body with a 503.
func wantUnavailable(t *testing.T, what string, code int, body string) {
	t.Helper()
	var b struct{ Code, Message string }
	if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &b) != nil || b.Code != "service_unavailable" || b.Message == "" {
		t.Errorf("%s: %d %s; want 503 with {code: service_unavailable, message}", what, code, body)
	}
}

// TestReadinessWhenStoreCannotWrite runs the built binary on a
// database that stops taking writes, twice: locked by another process
// (BEGIN EXCLUSIVE held), and on a full tmpfs. Each time /readyz and
// `deskmail status` say "not writable", an API write answers 503 with
// Freshdesk's error body (reads still work), and all recover once the
// cause is gone.
func TestReadinessWhenStoreCannotWrite(t *testing.T) {
	bin := buildBinary(t)
	ctx := context.Background()

	t.Run("locked", func(t *testing.T) {
		dir := t.TempDir()
		d := startAPIDaemonIn(t, bin, dir, "deskmail.db", "")
		if err := smtpSend(d.smtp, "carl@customer.test", "support@acme.test", attachmentMail(1)); err != nil {
			t.Fatal(err)
		}
		d.waitReady(http.StatusOK)
		if s := d.status(); s.Store != "ok" {
			t.Fatalf("status before the lock: store %q", s.Store)
		}
		other, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "deskmail.db")+"?_busy_timeout=20000")
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		conn, err := other.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
			t.Fatal(err)
		}
		// The write waits for the lock (the store's busy timeout), then
		// answers 503; meanwhile readiness and status say why.
		type answer struct {
			code int
			body string
		}
		put := make(chan answer, 1)
		go func() {
			c, b := d.apiCall("PUT", "/api/v2/tickets/1", `{"priority": 3}`)
			put <- answer{c, b}
		}()
		r := d.waitReady(http.StatusServiceUnavailable)
		if r.Ready || !strings.Contains(r.Store, "not writable: no write lock within") {
			t.Errorf("/readyz while locked: %+v", r)
		}
		if s := d.status(); !strings.HasPrefix(s.Store, "not writable:") {
			t.Errorf("status while locked: store %q", s.Store)
		}
		if c, b := d.apiCall("GET", "/api/v2/tickets/1", ""); c != http.StatusOK {
			t.Errorf("read while locked: %d %s", c, b)
		}
		a := <-put
		wantUnavailable(t, "PUT while locked", a.code, a.body)
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		d.waitReady(http.StatusOK)
		if c, b := d.apiCall("PUT", "/api/v2/tickets/1", `{"priority": 3}`); c != http.StatusOK {
			t.Errorf("PUT after the lock: %d %s", c, b)
		}
		if s := d.status(); s.Store != "ok" {
			t.Errorf("status after the lock: store %q", s.Store)
		}
	})

	t.Run("full tmpfs", func(t *testing.T) {
		dir := t.TempDir()
		mnt := filepath.Join(dir, "data")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		// CI and this machine run the tests as root.
		if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=16m"); err != nil {
			t.Fatalf("mount a 16 MiB tmpfs (the test needs root): %v", err)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(mnt, 0); err != nil {
				t.Errorf("unmount %s: %v", mnt, err)
			}
		})
		d := startAPIDaemonIn(t, bin, dir, filepath.Join(mnt, "deskmail.db"), "")
		if err := smtpSend(d.smtp, "carl@customer.test", "support@acme.test", attachmentMail(1)); err != nil {
			t.Fatal(err)
		}
		d.waitReady(http.StatusOK)
		fill := filepath.Join(mnt, "fill")
		f, err := os.Create(fill)
		if err != nil {
			t.Fatal(err)
		}
		chunk := make([]byte, 64<<10)
		for {
			if _, err = f.Write(chunk); err != nil {
				break
			}
		}
		f.Close()
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
		}
		r := d.waitReady(http.StatusServiceUnavailable)
		if !strings.Contains(r.Store, "not writable: disk full") {
			t.Errorf("/readyz on a full disk: %+v", r)
		}
		if s := d.status(); !strings.Contains(s.Store, "not writable: disk full") {
			t.Errorf("status on a full disk: store %q", s.Store)
		}
		note := fmt.Sprintf(`{"body": %q}`, strings.Repeat("A long note. ", 80000))
		c, b := d.apiCall("POST", "/api/v2/tickets/1/notes", note)
		wantUnavailable(t, "a 1 MB note on a full disk", c, b)
		if c, b := d.apiCall("GET", "/api/v2/tickets/1", ""); c != http.StatusOK {
			t.Errorf("read on a full disk: %d %s", c, b)
		}
		if err := os.Remove(fill); err != nil {
			t.Fatal(err)
		}
		d.waitReady(http.StatusOK)
		if c, b := d.apiCall("POST", "/api/v2/tickets/1/notes", note); c != http.StatusCreated {
			t.Errorf("note after space was freed: %d %.200s", c, b)
		}
	})
}
