// Command apiload is the HTTP client of the API benchmark
// (BenchmarkServeAPI in cmd/deskmail): it runs in its own process, so
// that the client's CPU is not counted with the server's, and sends
// GET /api/v2/tickets/{id} for random ids over a fixed number of
// keep-alive connections, then prints one JSON object: requests,
// errors (any status but 200, or a transport error), seconds, req_per_s,
// the 50th and 99th percentiles of the response time and its own CPU
// time per request.
//
//	apiload -url http://127.0.0.1:8080 -key KEY -conns 8 -requests 50000 -max-id 100000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// result is what apiload prints.
type result struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	ReqPerS  float64 `json:"req_per_s"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	// ClientCPUMsPerReq is this process's own CPU time (user+sys) per
	// request: on a machine with few cores the client's CPU is taken
	// from the server's, and bounds the rate as much.
	ClientCPUMsPerReq float64 `json:"client_cpu_ms_per_req"`
	// FirstError describes the first failure, if any.
	FirstError string `json:"first_error"`
}

func main() {
	base := flag.String("url", "", "base `URL` of deskmail's HTTP listener")
	key := flag.String("key", "", "API `KEY`")
	conns := flag.Int("conns", 8, "keep-alive connections (one client goroutine each)")
	requests := flag.Int("requests", 20000, "requests in all")
	maxID := flag.Int64("max-id", 1, "tickets 1..`N` are asked for, at random")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	if *base == "" || *key == "" || *conns < 1 || *requests < 1 || *maxID < 1 {
		fmt.Fprintln(os.Stderr, "apiload: -url and -key are required; -conns, -requests and -max-id must be positive")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := run(ctx, *base, *key, *conns, *requests, *maxID)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apiload:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "apiload:", err)
		os.Exit(1)
	}
}

// run sends requests requests over conns connections.
func run(ctx context.Context, base, key string, conns, requests int, maxID int64) (result, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var (
		mu    sync.Mutex
		lat   = make([]time.Duration, 0, requests)
		errs  int
		first string
	)
	next := make(chan struct{})
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), processCPU()
	for range conns {
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for range next {
				req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/v2/tickets/%d", base, 1+rand.Int64N(maxID)), nil)
				if err != nil {
					panic(err) // a malformed -url: every request would fail alike
				}
				req.SetBasicAuth(key, "X")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.CopyBuffer(io.Discard, resp.Body, buf)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s: status %d", req.URL.Path, resp.StatusCode)
					}
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				if err != nil {
					if errs == 0 {
						first = err.Error()
					}
					errs++
				}
				mu.Unlock()
			}
		})
	}
	for range requests {
		select {
		case next <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	if len(lat) == 0 {
		return result{}, fmt.Errorf("no request finished: %v", ctx.Err())
	}
	slices.Sort(lat)
	pct := func(p int) float64 { return float64(lat[(len(lat)-1)*p/100].Microseconds()) / 1000 }
	return result{Requests: len(lat), Errors: errs, Seconds: elapsed.Seconds(), ReqPerS: float64(len(lat)) / elapsed.Seconds(),
		P50Ms: pct(50), P99Ms: pct(99), ClientCPUMsPerReq: float64(cpu.Microseconds()) / 1000 / float64(len(lat)), FirstError: first}, nil
}

// processCPU is the user and system time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
