package main

// Benchmarks of deskmail as users run it: the built binary, driven
// from outside the process, measured in messages per second and in CPU
// time (user+sys) of the deskmail processes per message — less
// sensitive than wall time on a shared machine. Run with -run '^$'
// (README, "Benchmarks").

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/store"
)

var (
	benchBuildMu sync.Mutex
	benchBuilt   = map[string]string{}
)

// benchBuild builds the main package pkg (an import path) once per test
// binary run and returns the program's path.
func benchBuild(b *testing.B, pkg string) string {
	b.Helper()
	benchBuildMu.Lock()
	defer benchBuildMu.Unlock()
	if p, ok := benchBuilt[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "deskmail-bench-bin")
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", p, pkg).CombinedOutput(); err != nil {
		b.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	benchBuilt[pkg] = p
	return p
}

// benchBinary builds the deskmail binary once per test binary run.
func benchBinary(b *testing.B) string {
	return benchBuild(b, "github.com/deskmail/deskmail/cmd/deskmail")
}

// genMailsTool finds ../shared/tools/gen-mails (the workload generator
// the measurements use) above the module root, or
// $DESKMAIL_GEN_MAILS.
func genMailsTool(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("DESKMAIL_GEN_MAILS"); p != "" {
		return p
	}
	dir, err := filepath.Abs("../..")
	if err != nil {
		b.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "shared", "tools", "gen-mails")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if filepath.Dir(d) == d {
			b.Fatal("gen-mails not found: set DESKMAIL_GEN_MAILS to ../shared/tools/gen-mails")
		}
	}
}

var (
	benchMailsMu sync.Mutex
	benchMails   = map[int][]string{}
)

// genMails returns n generated mails (70% new tickets, 30% replies by
// In-Reply-To, plain text, 2–6 KB), written once per run by gen-mails.
func genMails(b *testing.B, n int) []string {
	b.Helper()
	benchMailsMu.Lock()
	defer benchMailsMu.Unlock()
	if m, ok := benchMails[n]; ok {
		return m
	}
	dir, err := os.MkdirTemp("", "deskmail-bench-mails")
	if err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(genMailsTool(b), fmt.Sprint(n), dir).CombinedOutput(); err != nil {
		b.Fatalf("gen-mails: %v\n%s", err, out)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil || len(files) != n {
		b.Fatalf("gen-mails wrote %d files (%v), want %d", len(files), err, n)
	}
	sort.Strings(files)
	benchMails[n] = files
	return files
}

// pipeConfig writes a configuration for the generated mail (support
// address support@acme.test) with its database in dir.
func pipeConfig(b *testing.B, dir string) string {
	b.Helper()
	cfg := filepath.Join(dir, "deskmail.yaml")
	yaml := fmt.Sprintf(`database: %s
threading:
  secret: "bench-secret-0123456789abcdef"
  hostname: deskmail.acme.test
agents:
  - {email: alice@acme.test, name: Alice, role: admin}
channels:
  - name: support
    addresses: [support@acme.test]
    language: fr
`, filepath.Join(dir, "deskmail.db"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkPipeIngest runs `deskmail ingest --config FILE -` once per
// mail, 4 processes at a time (Postfix's pipe transport with maxproc 4),
// on the generated mail; b.N is the number of mails (use -benchtime
// 2000x). It reports msg/s and the CPU time (user+sys) of the deskmail
// processes per mail, and fails on any exit status other than 0.
func BenchmarkPipeIngest(b *testing.B) {
	const parallel = 4
	bin := benchBinary(b)
	mails := genMails(b, max(b.N, 100))
	dir := b.TempDir()
	cfg := pipeConfig(b, dir)
	// The first process creates the database and stores the
	// configuration: not part of the run.
	if out, err := exec.Command(bin, "ingest", "--config", cfg, os.DevNull).CombinedOutput(); err != nil {
		b.Fatalf("first ingest: %v\n%s", err, out)
	}
	var (
		mu   sync.Mutex
		cpu  time.Duration
		errs []string
	)
	next := make(chan string)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				in, err := os.Open(f)
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					continue
				}
				cmd := exec.Command(bin, "ingest", "--config", cfg, "-")
				var stderr bytes.Buffer
				cmd.Stdin, cmd.Stderr = in, &stderr
				err = cmd.Run()
				in.Close()
				mu.Lock()
				if cmd.ProcessState != nil {
					cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				}
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s: %v: %s", filepath.Base(f), err, stderr.Bytes()))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range b.N {
		next <- mails[i%len(mails)]
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(errs) > 0 {
		b.Fatalf("%d of %d processes failed; first: %s", len(errs), b.N, errs[0])
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/msg")
}

// seedDatabase returns a database with tickets tickets already stored
// (each with its customer's mail, Message-ID, confirmation sent to the
// requester and a history row, 20,000 requesters), built once and kept
// under os.TempDir() between runs (keyed by the schema version). Bulk
// SQL on one connection builds 1,000,000 tickets in well under a minute.
func seedDatabase(b *testing.B, bin string, tickets int) string {
	b.Helper()
	dir := filepath.Join(os.TempDir(), "deskmail-bench-db")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("tickets-%d-schema-%d.db", tickets, store.SchemaVersion()))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	// One built by an older deskmail: migrated in place (the schema
	// changes since have been additions), not built again.
	for v := store.SchemaVersion() - 1; v > 0; v-- {
		old := filepath.Join(dir, fmt.Sprintf("tickets-%d-schema-%d.db", tickets, v))
		if _, err := os.Stat(old); err != nil {
			continue
		}
		if err := os.Rename(old, path+".migrating"); err != nil {
			b.Fatal(err)
		}
		st, err := store.Open(context.Background(), path+".migrating", store.Options{})
		if err != nil {
			// Built by a branch whose migrations differ: kept under its
			// old name, and a database is built afresh.
			b.Logf("migrate %s: %v; building a new one", old, err)
			if err := os.Rename(path+".migrating", old); err != nil {
				b.Fatal(err)
			}
			break
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(path+".migrating", path); err != nil {
			b.Fatal(err)
		}
		b.Logf("migrated %s from schema %d", path, v)
		return path
	}
	tmp := path + ".building"
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	start := time.Now()
	// One mail through the binary: the schema, the channel and the
	// pipeline, as ingest makes them for the generated mail.
	seed := filepath.Join(b.TempDir(), "seed.eml")
	if err := os.WriteFile(seed, []byte("From: Seed <seed@seed.example>\r\nTo: Support <support@acme.test>\r\nSubject: seed\r\nMessage-ID: <seed@seed.example>\r\nDate: Mon, 10 Nov 2025 09:00:00 +0100\r\n\r\nseed\r\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(bin, "ingest", "--db", tmp, seed).CombinedOutput(); err != nil {
		b.Fatalf("seed ingest: %v\n%s", err, out)
	}
	if tickets > 0 {
		db, err := sql.Open("sqlite3", "file:"+tmp+"?_foreign_keys=off")
		if err != nil {
			b.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		body := strings.Repeat("Bonjour, mon imprimante ne marche plus depuis lundi, merci de regarder. ", 5)
		// Explicit ids (base + i) keep every insert a plain append.
		ch, pl := `(SELECT id FROM channels ORDER BY id LIMIT 1)`, `(SELECT id FROM pipelines ORDER BY id LIMIT 1)`
		at := `strftime('%Y-%m-%dT%H:%M:%fZ', '2025-01-01', '+' || (n.i*20) || ' seconds')`
		stmts := []string{
			// A throw-away file until it is renamed: no journal, no sync.
			`PRAGMA journal_mode=OFF`,
			`PRAGMA synchronous=OFF`,
			`PRAGMA cache_size=-500000`,
			`BEGIN`,
			fmt.Sprintf(`CREATE TEMP TABLE n AS WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < %d) SELECT i FROM c`, tickets),
			`CREATE TEMP TABLE base AS SELECT (SELECT MAX(id) FROM tickets) AS t, (SELECT MAX(id) FROM raw_messages) AS r,
				(SELECT MAX(id) FROM conversations) AS cv, (SELECT MAX(id) FROM contacts) AS c`,
			`INSERT INTO contacts(id, email, name, created_at, updated_at)
				SELECT base.c + n.i, 'seed' || n.i || '@seed.example', 'Seed ' || n.i, '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z'
				FROM n, base WHERE n.i <= 20000`,
			`INSERT INTO raw_messages(id, channel_id, source, name, sha256, size, data, received_at, message_id)
				SELECT base.r + n.i, ` + ch + `, 'pipe', 'seed', lower(hex(randomblob(32))), 100, zeroblob(100), ` + at + `, 'seed-' || n.i || '@seed.example' FROM n, base`,
			`INSERT INTO tickets(id, channel_id, pipeline_id, subject, status, priority, requester_id, created_at, updated_at)
				SELECT base.t + n.i, ` + ch + `, ` + pl + `, 'Imprimante ' || n.i, 2 + n.i % 4, 1 + n.i % 4, base.c + 1 + n.i % 20000, ` + at + `, ` + at + ` FROM n, base`,
			`INSERT INTO conversations(id, ticket_id, raw_id, incoming, contact_id, from_email, subject, body_text, reply_text, message_id, created_at, updated_at)
				SELECT base.cv + n.i, base.t + n.i, base.r + n.i, 1, base.c + 1 + n.i % 20000, 'seed' || (1 + n.i % 20000) || '@seed.example', 'Imprimante ' || n.i,
					'` + body + `', '` + body + `', 'seed-' || n.i || '@seed.example', ` + at + `, ` + at + ` FROM n, base`,
			`INSERT INTO message_ids(message_id, direction, channel_id, ticket_id, conversation_id, raw_id, created_at)
				SELECT 'seed-' || n.i || '@seed.example', 'in', ` + ch + `, base.t + n.i, base.cv + n.i, base.r + n.i, ` + at + ` FROM n, base`,
			`INSERT INTO outbox(ticket_id, channel_id, kind, mail_from, rcpt_to, subject, message_id, state, next_attempt_at, created_at, sent_at)
				SELECT base.t + n.i, ` + ch + `, 'confirmation', 'support@acme.test', json_array('seed' || (1 + n.i % 20000) || '@seed.example'),
					'[#' || (base.t + n.i) || '] Imprimante', 'seed-out-' || n.i || '@deskmail.acme.test', 'sent', ` + at + `, ` + at + `, ` + at + ` FROM n, base`,
			`INSERT INTO message_ids(message_id, direction, channel_id, ticket_id, created_at)
				SELECT 'seed-out-' || n.i || '@deskmail.acme.test', 'out', ` + ch + `, base.t + n.i, ` + at + ` FROM n, base`,
			`INSERT INTO history(ticket_id, at, actor_type, actor, action) SELECT base.t + n.i, ` + at + `, 'mail', 'seed', 'created' FROM n, base`,
			`COMMIT`,
			`PRAGMA journal_mode=WAL`,
		}
		for _, q := range stmts {
			if _, err := db.Exec(q); err != nil {
				db.Close()
				b.Fatalf("seed: %v\n%s", err, q)
			}
		}
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM tickets`).Scan(&n); err != nil || n != tickets+1 {
			b.Fatalf("seeded %d tickets (%v), want %d", n, err, tickets+1)
		}
		db.Close()
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %s (%d tickets) in %v", path, tickets, time.Since(start).Round(time.Millisecond))
	return path
}

// copyFile copies src to dst and syncs the copy to disk. Unsynced,
// the copy is dirty page cache (2.4 GB for the database of a million
// tickets) that the measured process's first fsync of the database
// file (its first WAL checkpoint) would have to write out: a cost of
// the copy, not of deskmail, which a real database does not have.
func copyFile(b *testing.B, src, dst string) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBatchIngest runs `deskmail ingest --db DB FILE…` on 5,000
// generated mails (durable: synchronous=FULL, confirmations queued)
// into a database that already holds 0, 100,000 or 1,000,000 tickets
// (built once, see seedDatabase; each iteration ingests into a fresh
// copy). It reports msg/s and the CPU time of the process per mail; the
// rate should stay flat as the database grows.
func BenchmarkBatchIngest(b *testing.B) {
	const mails = 5000
	bin := benchBinary(b)
	files := genMails(b, mails)
	for _, tickets := range []int{0, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("tickets=%d", tickets), func(b *testing.B) {
			base := seedDatabase(b, bin, tickets)
			var elapsed, cpu time.Duration
			for range b.N {
				b.StopTimer()
				db := filepath.Join(b.TempDir(), "deskmail.db")
				copyFile(b, base, db)
				cmd := exec.Command(bin, append([]string{"ingest", "--db", db}, files...)...)
				var stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = io.Discard, &stderr
				b.StartTimer()
				start := time.Now()
				err := cmd.Run()
				elapsed += time.Since(start)
				if err != nil {
					b.Fatalf("ingest: %v\n%s", err, stderr.Bytes())
				}
				cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
			b.ReportMetric(float64(b.N*mails)/elapsed.Seconds(), "msg/s")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N*mails), "cpu-ms/msg")
		})
	}
}

// serveForBench starts `deskmail serve --config cfg` with its SMTP and
// HTTP listeners on free loopback ports and returns the process and
// the two addresses; the process is killed when the benchmark ends.
func serveForBench(b *testing.B, bin, cfg string) (*exec.Cmd, string, string) {
	b.Helper()
	cmd := exec.Command(bin, "serve", "--config", cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var smtpAddr, httpAddr string
	timeout := time.After(60 * time.Second)
	for smtpAddr == "" || httpAddr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				b.Fatalf("deskmail serve exited:\n%s", stderr.String())
			}
			if a, ok := strings.CutPrefix(l, "deskmail: SMTP listening on "); ok {
				smtpAddr = strings.Fields(a)[0]
			}
			if a, ok := strings.CutPrefix(l, "deskmail: HTTP listening on "); ok {
				httpAddr = strings.Fields(a)[0]
			}
		case <-timeout:
			b.Fatalf("deskmail serve did not report its addresses:\n%s", stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	return cmd, smtpAddr, httpAddr
}

// messagesPerCommit reads the group commits of the daemons listening on
// httpAddrs from their /metrics (deskmail_commit_batch_messages) and
// returns the messages per commit over all of them: the size of a
// batch is what a commit's fixed cost (the WAL pages every batch
// rewrites) is shared by. Read after the load, so that the scrape
// costs the daemons nothing measured.
func messagesPerCommit(b *testing.B, httpAddrs ...string) float64 {
	b.Helper()
	var msgs, commits float64
	for _, addr := range httpAddrs {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			b.Fatalf("metrics: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("metrics: %s %v", resp.Status, err)
		}
		for line := range strings.SplitSeq(string(body), "\n") {
			name, value, ok := strings.Cut(line, " ")
			v, err := strconv.ParseFloat(value, 64)
			if !ok || err != nil {
				continue
			}
			switch name {
			case "deskmail_commit_batch_messages_sum":
				msgs += v
			case "deskmail_commit_batch_messages_count":
				commits += v
			}
		}
	}
	if commits == 0 {
		b.Fatal("metrics: no group commit counted")
	}
	return msgs / commits
}

// procCPU is the user+sys CPU time the process pid has used
// (/proc/PID/stat, clock ticks of 10 ms).
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name may hold spaces: fields count from after ')'.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkServeSMTP sends the generated mail to `deskmail serve` over
// 16 SMTP connections from this process (the MTA in front; loopback is
// a trusted relay), one message after another on each; b.N is the
// number of messages (use -benchtime 5000x). 250 comes only after the
// commit. It reports msg/s, the daemon's CPU time per message (from
// /proc), its peak RSS and the 99th percentile of end-of-DATA to 250.
func BenchmarkServeSMTP(b *testing.B) {
	const conns = 16
	bin := benchBinary(b)
	mails := genMails(b, max(b.N, 100))
	dir := b.TempDir()
	cfg := pipeConfig(b, dir)
	srv, smtpAddr, httpAddr := serveForBench(b, bin, cfg)
	data, from := readMails(b, mails)
	b.ResetTimer()
	cpu0 := procCPU(b, srv.Process.Pid)
	elapsed, lat := smtpLoad(b, []string{smtpAddr}, conns, data, from)
	cpu := procCPU(b, srv.Process.Pid) - cpu0
	b.StopTimer()
	b.ReportMetric(messagesPerCommit(b, httpAddr), "msg/commit")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/msg")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(vmHWM(b, srv.Process.Pid))/(1<<20), "VmHWM-MB")
}

// smtpLoad sends b.N of the messages (data, with envelope senders
// from) over conns SMTP connections spread over addrs, one message
// after another on each, and returns the elapsed time and the sorted
// end-of-DATA to 250 latencies.
func smtpLoad(b *testing.B, addrs []string, conns int, data [][]byte, from []string) (time.Duration, []time.Duration) {
	b.Helper()
	next := make(chan int)
	var (
		mu    sync.Mutex
		lat   []time.Duration
		first error
	)
	var wg sync.WaitGroup
	start := time.Now()
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(err error) {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				for range next {
				}
			}
			c, err := smtp.Dial(addrs[k%len(addrs)])
			if err != nil {
				fail(err)
				return
			}
			defer c.Close()
			if err := c.Hello("mta.bench.example"); err != nil {
				fail(err)
				return
			}
			for i := range next {
				if err := c.Mail(from[i], nil); err != nil {
					fail(fmt.Errorf("MAIL: %w", err))
					return
				}
				if err := c.Rcpt("support@acme.test", nil); err != nil {
					fail(fmt.Errorf("RCPT: %w", err))
					return
				}
				w, err := c.Data()
				if err != nil {
					fail(fmt.Errorf("DATA: %w", err))
					return
				}
				if _, err := w.Write(data[i]); err != nil {
					fail(err)
					return
				}
				t0 := time.Now()
				if err := w.Close(); err != nil {
					fail(fmt.Errorf("end of DATA: %w", err))
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
			c.Quit()
		}()
	}
	for i := range b.N {
		next <- i % len(data)
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		b.Fatal(first)
	}
	slices.Sort(lat)
	return elapsed, lat
}

// readMails reads mail files and their From addresses (the envelope
// senders an MTA would use).
func readMails(b *testing.B, files []string) (data [][]byte, from []string) {
	b.Helper()
	data = make([][]byte, len(files))
	from = make([]string, len(files))
	for i, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		data[i] = d
		m, err := mail.ReadMessage(bytes.NewReader(d))
		if err != nil {
			b.Fatal(err)
		}
		a, err := mail.ParseAddress(m.Header.Get("From"))
		if err != nil {
			b.Fatal(err)
		}
		from[i] = a.Address
	}
	return data, from
}

// apiLoad runs the client process: requests GETs of random tickets
// 1..maxID over conns keep-alive connections.
func apiLoad(b *testing.B, base, key string, conns, requests, maxID int) (res struct {
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	ReqPerS    float64 `json:"req_per_s"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	ClientCPU  float64 `json:"client_cpu_ms_per_req"`
	FirstError string  `json:"first_error"`
}) {
	b.Helper()
	out, err := exec.Command(benchBuild(b, "github.com/deskmail/deskmail/internal/cmd/apiload"), "-url", base, "-key", key, "-conns", fmt.Sprint(conns),
		"-requests", fmt.Sprint(requests), "-max-id", fmt.Sprint(maxID)).Output()
	if err != nil {
		b.Fatalf("apiload: %v", err)
	}
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("apiload output %q: %v", out, err)
	}
	if res.Errors > 0 {
		b.Fatalf("apiload: %d of %d requests failed; first: %s", res.Errors, res.Requests, res.FirstError)
	}
	return res
}

// BenchmarkServeAPI runs `deskmail serve` on a database of 100,000
// tickets (seedDatabase) with the API rate limit off (http.rate_limit:
// -1) and a client in another process (internal/cmd/apiload) sending
// GET /api/v2/tickets/{id} for random tickets over 8 keep-alive
// connections; b.N is the number of requests (use -benchtime 50000x),
// after a warm-up of 2,000. It reports req/s, the 50th and 99th
// percentile response times seen by the client, the daemon's CPU time
// per request (from /proc) and the client's own.
func BenchmarkServeAPI(b *testing.B) {
	const (
		conns   = 8
		tickets = 100_000
	)
	bin := benchBinary(b)
	base := seedDatabase(b, bin, tickets)
	dir := b.TempDir()
	copyFile(b, base, filepath.Join(dir, "deskmail.db"))
	cfg := pipeConfig(b, dir)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.WriteString("http:\n  rate_limit: -1\n"); err != nil {
		b.Fatal(err)
	}
	f.Close()
	out, err := exec.Command(bin, "agents", "key", "alice@acme.test", "--config", cfg).Output()
	if err != nil {
		b.Fatalf("agents key: %v", err)
	}
	key := strings.TrimSpace(string(out))
	srv, _, httpAddr := serveForBench(b, bin, cfg)
	url := "http://" + httpAddr
	// The seed mail's ticket is 1; the seeded ones follow it.
	apiLoad(b, url, key, conns, 2000, tickets+1)
	b.ResetTimer()
	cpu0 := procCPU(b, srv.Process.Pid)
	res := apiLoad(b, url, key, conns, b.N, tickets+1)
	cpu := procCPU(b, srv.Process.Pid) - cpu0
	b.StopTimer()
	b.ReportMetric(res.ReqPerS, "req/s")
	b.ReportMetric(res.P50Ms, "p50-ms")
	b.ReportMetric(res.P99Ms, "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(res.Requests), "cpu-ms/req")
	b.ReportMetric(res.ClientCPU, "client-cpu-ms/req")
}
