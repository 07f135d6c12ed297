package receiver

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
)

// BenchmarkSMTP measures the whole receive path over loopback: 16
// concurrent connections send 10 KB messages, each answered 250 only
// after it was committed to a real SQLite database (synchronous=FULL,
// group commit). It reports messages per second, the 50th/99th
// percentile latency from the DATA command to the 250, and how much of
// that latency is spent inside Submit.
//
//	go test -run '^$' -bench BenchmarkSMTP -benchtime 5000x ./ingest/receiver/
//
// pipeline: the real ingest pipeline (parse, thread, one new ticket
// per message). rawstore: a minimal group committer that stores only
// the raw message, which shows the receiver's own cost.
func BenchmarkSMTP(b *testing.B) {
	b.Run("pipeline", func(b *testing.B) { benchSMTP(b, nil) })
	b.Run("rawstore", func(b *testing.B) {
		benchSMTP(b, func(h *harness) Submitter { return newRawCommitter(b, h.st) })
	})
}

func benchSMTP(b *testing.B, sub func(*harness) Submitter) {
	const conns = 16
	timing := &timingSubmitter{}
	var h *harness
	h = newHarness(b, harnessOpt{quiet: true,
		smtp: func(s *config.SMTPConfig) { s.RatePerMinute = 0 },
		sub: func(s Submitter) Submitter {
			timing.s = s
			return timing
		},
	})
	if sub != nil {
		timing.s = sub(h)
	}
	body := strings.Repeat("Bonjour, mon imprimante ne fonctionne plus depuis la mise à jour. Merci!\r\n", 10<<10/74)
	var next atomic.Int64
	lat := make([][]time.Duration, conns)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	for w := range conns {
		wg.Go(func() {
			c := h.dial()
			defer c.Close()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				from := fmt.Sprintf("customer%d@customer.example", i%97)
				msg := message(from, "support@example.com", fmt.Sprintf("Ticket %d", i),
					fmt.Sprintf("bench-%d-%d@customer.example", time.Now().UnixNano(), i), body)
				if err := c.Mail(from, nil); err != nil {
					errs <- err
					return
				}
				if err := c.Rcpt("support@example.com", nil); err != nil {
					errs <- err
					return
				}
				t0 := time.Now()
				wc, err := c.Data()
				if err != nil {
					errs <- err
					return
				}
				io.WriteString(wc, msg)
				if err := wc.Close(); err != nil {
					errs <- err
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatalf("send: %v", err)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(float64(len(all)-1)*p)].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(all))/el.Seconds(), "msg/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(timing.total.Load())/float64(max(1, timing.n.Load()))/1e6, "submit-ms")
	b.ReportMetric(0, "ns/op")
}

// timingSubmitter measures the time spent in Submit.
type timingSubmitter struct {
	s     Submitter
	total atomic.Int64
	n     atomic.Int64
}

func (t *timingSubmitter) Submit(ctx context.Context, r ingest.Raw) (ingest.Result, error) {
	t0 := time.Now()
	res, err := t.s.Submit(ctx, r)
	t.total.Add(int64(time.Since(t0)))
	t.n.Add(1)
	return res, err
}

// rawCommitter is a minimal real Submitter: it group-commits raw
// messages to the store (one transaction and one fsync per batch) and
// answers each Submit after the commit.
type rawCommitter struct {
	st *store.Store
	q  chan rawJob
}

type rawJob struct {
	r    ingest.Raw
	done chan error
}

func newRawCommitter(b *testing.B, st *store.Store) *rawCommitter {
	rc := &rawCommitter{st: st, q: make(chan rawJob, 1024)}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			var batch []rawJob
			select {
			case j := <-rc.q:
				batch = append(batch, j)
			case <-ctx.Done():
				return
			}
		more:
			for len(batch) < 256 {
				select {
				case j := <-rc.q:
					batch = append(batch, j)
				default:
					break more
				}
			}
			err := st.Write(ctx, func(tx *store.Tx) error {
				for _, j := range batch {
					if _, err := tx.AddRaw(&store.RawMessage{Source: string(j.r.Source), Name: j.r.Name, Data: j.r.Data, Envelope: j.r.Envelope}); err != nil {
						return err
					}
				}
				return nil
			})
			for _, j := range batch {
				j.done <- err
			}
		}
	}()
	b.Cleanup(func() { cancel(); <-stopped })
	return rc
}

func (rc *rawCommitter) Submit(ctx context.Context, r ingest.Raw) (ingest.Result, error) {
	j := rawJob{r: r, done: make(chan error, 1)}
	select {
	case rc.q <- j:
	case <-ctx.Done():
		return ingest.Result{}, ctx.Err()
	}
	select {
	case err := <-j.done:
		return ingest.Result{Name: r.Name, Err: err}, err
	case <-ctx.Done():
		return ingest.Result{}, ctx.Err()
	}
}
