package receiver

import (
	"bufio"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildDeskmail builds the real binary once per test run.
func buildDeskmail(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "deskmail-bin-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command(goBin, "build", "-o", filepath.Join(buildDir, "deskmail"), "github.com/deskmail/deskmail/cmd/deskmail").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "deskmail")
}

// TestMain removes the binary built for the process tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// TestServeRefusesBadConfig: every problem is printed, nothing starts.
func TestServeRefusesBadConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the real binary; skipped with -short")
	}
	bin := buildDeskmail(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte("log:\n  format: xml\nchannels:\n  - name: a\n    addresses: [nope]\n"), 0o600)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started with a broken configuration:\n%s", out)
	}
	for _, want := range []string{"bad.yaml:5: channels[0].addresses[0]", "bad.yaml:2: log.format", "2 problem(s)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "deskmail.db")); err == nil {
		t.Error("a database was created although the configuration is broken")
	}
}

// TestCrashExactlyOnce runs the real binary (`deskmail serve`) as a
// child process and kills it with SIGKILL several times while clients
// send thousands of messages. A message that did not get its 250 is
// retried on the next run, as an MTA would. Afterwards every message
// that got 250 is stored exactly once, and no message is stored twice.
func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills the real binary; skipped with -short")
	}
	bin := buildDeskmail(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "deskmail.db")
	cfgFile := filepath.Join(dir, "deskmail.yaml")
	cfg := fmt.Sprintf(`database: %s
log:
  level: warn
http:
  listen: 127.0.0.1:0
smtp:
  listen: 127.0.0.1:0
  rate_per_minute: 100000000
  max_connections_per_ip: 1000
channels:
  - name: support
    addresses: [support@example.com]
`, db)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	const (
		kills     = 6
		clients   = 8
		perRunMin = 400 // acknowledged messages before each kill
	)
	var (
		mu      sync.Mutex
		acked   = map[string]bool{}
		tried   = map[string]bool{}
		retry   []string
		nextID  int
		ackedN  atomic.Int64
		logTail = &syncBuffer{}
	)
	take := func() string {
		mu.Lock()
		defer mu.Unlock()
		if n := len(retry); n > 0 {
			id := retry[n-1]
			retry = retry[:n-1]
			return id
		}
		nextID++
		id := fmt.Sprintf("crash-%06d@customer.example", nextID)
		tried[id] = true
		return id
	}
	giveBack := func(id string) {
		mu.Lock()
		retry = append(retry, id)
		mu.Unlock()
	}

	start := func() (*exec.Cmd, string) {
		cmd := exec.Command(bin, "serve", "--config", cfgFile)
		cmd.Dir = dir
		cmd.Stderr = logTail
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		addr := ""
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "deskmail: SMTP listening on "); ok {
				addr = a
				break
			}
		}
		go io.Copy(io.Discard, out)
		if addr == "" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("server did not report its address; stderr:\n%s", logTail.String())
		}
		return cmd, addr
	}

	// client sends until the server goes away (or stop is set).
	client := func(addr string, stop *atomic.Bool) {
		c, err := smtp.Dial(addr)
		if err != nil {
			return
		}
		defer c.Close()
		for !stop.Load() {
			id := take()
			err := sendOn(c, "bulk@customer.example", []string{"support@example.com"},
				message("bulk@customer.example", "support@example.com", "crash "+id, id, "body of "+id))
			if err != nil {
				giveBack(id)
				if code, _ := smtpCode(err); code == 0 || code == 421 {
					return // connection gone: the server was killed
				}
				continue
			}
			mu.Lock()
			acked[id] = true
			mu.Unlock()
			ackedN.Add(1)
		}
	}

	// kills runs end with SIGKILL; one more ends with SIGTERM while
	// the clients are still sending (a graceful stop must not lose an
	// acknowledged message either, and must exit 0).
	for run := range kills + 1 {
		cmd, addr := start()
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() { client(addr, &stop) })
		}
		base := ackedN.Load()
		deadline := time.Now().Add(60 * time.Second)
		// The test's own pace: kill once enough mail went through, at
		// a random moment so the kill lands anywhere in the protocol.
		for ackedN.Load()-base < perRunMin && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
		sig := syscall.SIGKILL
		if run == kills {
			sig = syscall.SIGTERM
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if sig == syscall.SIGTERM && err != nil {
			t.Errorf("serve after SIGTERM under load: %v (want exit status 0)\n%s", err, logTail.String())
		}
		stop.Store(true)
		wg.Wait()
		t.Logf("run %d (%v): %d acknowledged so far, %d waiting for a retry", run+1, sig, ackedN.Load(), len(retry))
	}

	// A last run delivers the retries, then stops cleanly.
	cmd, addr := start()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	for len(retry) > 0 {
		id := retry[len(retry)-1]
		retry = retry[:len(retry)-1]
		if err := sendOn(c, "bulk@customer.example", []string{"support@example.com"},
			message("bulk@customer.example", "support@example.com", "crash "+id, id, "body of "+id)); err != nil {
			t.Fatalf("retry %s: %v", id, err)
		}
		acked[id] = true
	}
	c.Quit()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v (want exit status 0)\n%s", err, logTail.String())
	}

	sdb, err := sql.Open("sqlite3", "file:"+db+"?_query_only=true")
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	counts := map[string]int{}
	rows, err := sdb.Query(`SELECT message_id, COUNT(*) FROM conversations GROUP BY message_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int
		rows.Scan(&id, &n)
		counts[id] = n
	}
	rows.Close()
	missing, dup := 0, 0
	for id := range acked {
		switch counts[id] {
		case 1:
		case 0:
			missing++
			if missing < 5 {
				t.Errorf("%s got 250 but is not stored", id)
			}
		}
	}
	for id, n := range counts {
		if n > 1 {
			dup++
			if dup < 5 {
				t.Errorf("%s stored %d times", id, n)
			}
		}
		if !tried[id] {
			t.Errorf("unexpected message %s", id)
		}
	}
	if len(acked) != len(tried) {
		t.Errorf("%d messages tried, %d acknowledged at the end", len(tried), len(acked))
	}
	var retried int
	sdb.QueryRow(`SELECT COUNT(*) FROM raw_messages WHERE state = 'duplicate'`).Scan(&retried)
	t.Logf("%d messages acknowledged across %d SIGKILLs: %d missing, %d duplicated, %d conversations; %d retries of messages committed but not acknowledged before a kill were recognised as duplicates",
		len(acked), kills, missing, dup, len(counts), retried)
	if len(acked) < 2000 {
		t.Errorf("only %d messages went through; the test wants thousands", len(acked))
	}
}
