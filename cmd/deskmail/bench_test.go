package main

// Benchmarks of deskmail as users run it: the built binary, driven
// from outside the process, measured in messages per second and in CPU
// time (user+sys) of the deskmail processes per message — less
// sensitive than wall time on a shared machine. Run with -run '^$'
// (README, "Benchmarks").

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

var (
	benchBinOnce sync.Once
	benchBin     string
	benchBinErr  error
)

// benchBinary builds the deskmail binary once per test binary run.
func benchBinary(b *testing.B) string {
	b.Helper()
	benchBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deskmail-bench-bin")
		if err != nil {
			benchBinErr = err
			return
		}
		benchBin = filepath.Join(dir, "deskmail")
		out, err := exec.Command("go", "build", "-o", benchBin, "github.com/deskmail/deskmail/cmd/deskmail").CombinedOutput()
		if err != nil {
			benchBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if benchBinErr != nil {
		b.Fatal(benchBinErr)
	}
	return benchBin
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
