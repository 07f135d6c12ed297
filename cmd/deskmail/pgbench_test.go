package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/internal/pgtest"
)

// benchPG is a durable cluster (fsync on, synchronous_commit on) for
// the PostgreSQL benchmarks, started by the first one.
var benchPG struct {
	once sync.Once
	c    *pgtest.Cluster
}

func durablePG(b *testing.B) *pgtest.Cluster {
	b.Helper()
	benchPG.once.Do(func() {
		benchPG.c = pgtest.New(pgtest.Options{Durable: true}) // TestMain stops it
	})
	if !benchPG.c.Available(b) {
		b.Fatal("PostgreSQL is needed (DESKMAIL_PG_BIN)")
	}
	return benchPG.c
}

// pgBenchConfig writes pipeConfig's configuration with database: url.
func pgBenchConfig(b *testing.B, dir, url string) string {
	b.Helper()
	cfg := pipeConfig(b, dir)
	data, err := os.ReadFile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	yaml := strings.Replace(string(data), "database: "+filepath.Join(dir, "deskmail.db"), "database: "+url, 1)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkPostgresBatchIngest runs `deskmail ingest --db URL FILE…` of
// 5,000 generated mails into a fresh schema of a durable PostgreSQL on
// this machine (one instance); b.N is the number of runs. It reports
// msg/s, deskmail's CPU per message and PostgreSQL's.
func BenchmarkPostgresBatchIngest(b *testing.B) {
	const mails = 5000
	bin := benchBinary(b)
	files := genMails(b, mails)
	pg := durablePG(b)
	var elapsed, cpu, pgCPU time.Duration
	for range b.N {
		b.StopTimer()
		url, err := pg.NewSchema()
		if err != nil {
			b.Fatal(err)
		}
		procs, err := pg.Processes()
		if err != nil {
			b.Fatal(err)
		}
		// Migrate first, so that the run measures ingestion only.
		if out, err := exec.Command(bin, "agents", "add", "bench@acme.test", "--db", url).CombinedOutput(); err != nil {
			b.Fatalf("agents add: %v\n%s", err, out)
		}
		cmd := exec.Command(bin, append([]string{"ingest", "--db", url}, files...)...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		// The backend of a command's connection exits after it: its CPU
		// counts once the postmaster has reaped it.
		if err := pg.Settle(procs, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		pg0, err := pg.CPU()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		err = cmd.Run()
		elapsed += time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatalf("ingest: %v\n%s", err, stderr.Bytes())
		}
		if err := pg.Settle(procs, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		pg1, err := pg.CPU()
		if err != nil {
			b.Fatal(err)
		}
		pgCPU += pg1 - pg0
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	n := float64(b.N * mails)
	b.ReportMetric(n/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/n, "cpu-ms/msg")
	b.ReportMetric(float64(pgCPU.Microseconds())/1000/n, "pg-cpu-ms/msg")
}

// BenchmarkPostgresServeSMTP sends the generated mail over 16 SMTP
// connections spread over 1 and 3 `deskmail serve` instances sharing
// one fresh schema of a durable PostgreSQL (all on this machine); b.N
// is the number of messages (use -benchtime 5000x). It reports msg/s,
// the instances' CPU per message (together), PostgreSQL's, and the
// 99th percentile of end-of-DATA to 250.
func BenchmarkPostgresServeSMTP(b *testing.B) {
	for _, instances := range []int{1, 3} {
		b.Run(fmt.Sprintf("instances=%d", instances), func(b *testing.B) {
			bin := benchBinary(b)
			data, from := readMails(b, genMails(b, max(b.N, 100)))
			pg := durablePG(b)
			url, err := pg.NewSchema()
			if err != nil {
				b.Fatal(err)
			}
			cfg := pgBenchConfig(b, b.TempDir(), url)
			var srvs []*exec.Cmd
			var addrs, httpAddrs []string
			for range instances {
				srv, addr, httpAddr := serveForBench(b, bin, cfg)
				srvs, addrs, httpAddrs = append(srvs, srv), append(addrs, addr), append(httpAddrs, httpAddr)
			}
			cpuOf := func() time.Duration {
				var t time.Duration
				for _, s := range srvs {
					t += procCPU(b, s.Process.Pid)
				}
				return t
			}
			b.ResetTimer()
			cpu0 := cpuOf()
			pg0, _ := pg.CPU()
			elapsed, lat := smtpLoad(b, addrs, 16, data, from)
			cpu := cpuOf() - cpu0
			pg1, _ := pg.CPU()
			b.StopTimer()
			b.ReportMetric(messagesPerCommit(b, httpAddrs...), "msg/commit")
			n := float64(b.N)
			b.ReportMetric(n/elapsed.Seconds(), "msg/s")
			b.ReportMetric(float64(cpu.Microseconds())/1000/n, "cpu-ms/msg")
			b.ReportMetric(float64((pg1-pg0).Microseconds())/1000/n, "pg-cpu-ms/msg")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
