package receiver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
)

// BenchmarkSMTP measures the whole receive path over loopback: 16
// concurrent connections send 10 KB messages, each answered 250 only
// after it was committed to a real SQLite database (synchronous=FULL,
// group commit). It reports messages per second, the 50th/99th
// percentile latency from the DATA command to the 250, and the mean
// time spent inside Submit.
//
//	go test -run '^$' -bench BenchmarkSMTP -benchtime 5000x ./ingest/receiver/
//
// Sub-benchmarks:
//   - pipeline: the real ingest pipeline (parse, thread, one new
//     ticket per message); the client pipelines MAIL/RCPT/DATA as
//     Postfix does (RFC 2920), two round trips per message;
//   - pipeline_nopipelining: the same with go-smtp's client, which
//     waits for every reply (four round trips per message);
//   - rawstore: a minimal group committer that stores only the raw
//     message: the receiver's own cost.
func BenchmarkSMTP(b *testing.B) {
	b.Run("pipeline", func(b *testing.B) { benchSMTP(b, nil, true) })
	b.Run("pipeline_nopipelining", func(b *testing.B) { benchSMTP(b, nil, false) })
	b.Run("rawstore", func(b *testing.B) {
		benchSMTP(b, func(h *harness) Submitter { return newRawCommitter(b, h.st) }, true)
	})
}

// sender sends one message and returns the DATA→250 latency.
type sender interface {
	send(from, rcpt, msg string) (time.Duration, error)
	close()
}

func benchSMTP(b *testing.B, sub func(*harness) Submitter, pipelining bool) {
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
			var c sender
			if pipelining {
				pc, err := dialPipelining(h.addr)
				if err != nil {
					errs <- err
					return
				}
				c = pc
			} else {
				c = goSMTPSender{h.dial()}
			}
			defer c.close()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				from := fmt.Sprintf("customer%d@customer.example", i%97)
				msg := message(from, "support@example.com", fmt.Sprintf("Ticket %d", i),
					fmt.Sprintf("bench-%d-%d@customer.example", time.Now().UnixNano(), i), body)
				d, err := c.send(from, "support@example.com", msg)
				if err != nil {
					errs <- err
					return
				}
				lat[w] = append(lat[w], d)
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

// goSMTPSender sends with go-smtp's client.
type goSMTPSender struct{ c *smtp.Client }

func (g goSMTPSender) send(from, rcpt, msg string) (time.Duration, error) {
	if err := g.c.Mail(from, nil); err != nil {
		return 0, err
	}
	if err := g.c.Rcpt(rcpt, nil); err != nil {
		return 0, err
	}
	t0 := time.Now()
	wc, err := g.c.Data()
	if err != nil {
		return 0, err
	}
	io.WriteString(wc, msg)
	if err := wc.Close(); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func (g goSMTPSender) close() { g.c.Close() }

// pipeliningSender is a lean client that sends MAIL, RCPT and DATA in
// one write (RFC 2920), then the message. msg must not need
// dot-stuffing.
type pipeliningSender struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

func dialPipelining(addr string) (*pipeliningSender, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &pipeliningSender{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriterSize(nc, 16<<10)}
	if err := p.expect(220); err != nil {
		nc.Close()
		return nil, err
	}
	p.w.WriteString("EHLO bench.example\r\n")
	p.w.Flush()
	if err := p.expect(250); err != nil {
		nc.Close()
		return nil, err
	}
	return p, nil
}

// expect reads one reply and checks its code.
func (p *pipeliningSender) expect(code int) error {
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 {
			return fmt.Errorf("bad reply %q", line)
		}
		if line[3] == '-' {
			continue
		}
		if got, _ := strconv.Atoi(line[:3]); got != code {
			return fmt.Errorf("got %q, want %d", strings.TrimSpace(line), code)
		}
		return nil
	}
}

func (p *pipeliningSender) send(from, rcpt, msg string) (time.Duration, error) {
	t0 := time.Now()
	fmt.Fprintf(p.w, "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", from, rcpt)
	if err := p.w.Flush(); err != nil {
		return 0, err
	}
	for _, c := range []int{250, 250, 354} {
		if err := p.expect(c); err != nil {
			return 0, err
		}
	}
	p.w.WriteString(msg)
	p.w.WriteString(".\r\n")
	if err := p.w.Flush(); err != nil {
		return 0, err
	}
	if err := p.expect(250); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func (p *pipeliningSender) close() {
	p.w.WriteString("QUIT\r\n")
	p.w.Flush()
	p.nc.Close()
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
