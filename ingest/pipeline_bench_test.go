package ingest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/threading"
)

// benchMails is how many mails one benchmark run ingests.
const benchMails = 10000

// benchBatch is how many mails one Ingest call commits: a multiple of
// 1000 so that the first and last thousand end on a commit.
const benchBatch = 250

var benchWords = strings.Fields(`the invoice order account customer payment refund delivery
	shipment login password error server export report please could you help we our since
	yesterday morning again still not working issue problem urgent thanks regards attached
	screenshot version update browser mobile app contract renewal quote seats license team
	warehouse label address billing card charged twice support ticket request information`)

// benchBody returns a plain-text body of 2 to 10 KB.
func benchBody(r *rand.Rand) string {
	size := 2048 + r.IntN(8*1024)
	var b strings.Builder
	line := 0
	for b.Len() < size {
		w := benchWords[r.IntN(len(benchWords))]
		if line+len(w) > 72 {
			b.WriteString("\r\n")
			line = 0
			if r.IntN(8) == 0 {
				b.WriteString("\r\n")
			}
		} else if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}

// benchCorpus generates the mails: 70% new tickets, 30% replies to an
// earlier ticket, half of them by In-Reply-To/References and half by
// the reply-address token. Ticket ids follow the order of new mails
// (with Submit, only roughly: a token reply may then land on another
// existing ticket, which does not change the counts).
func benchCorpus(signer *threading.Signer) (mails [][]byte, tickets int) {
	r := rand.New(rand.NewPCG(1, 2))
	mails = make([][]byte, benchMails)
	var newIDs []string // Message-ID of the mail that created ticket i+1
	// Replies answer tickets of earlier batches: inside one batch,
	// concurrent Submits commit in any order.
	committed := 0
	for i := range mails {
		var b strings.Builder
		body := benchBody(r)
		date := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second).Format(time.RFC1123Z)
		msgID := fmt.Sprintf("bench-%d.%x@mail.customer%d.example", i, r.Uint64(), i%97)
		from := fmt.Sprintf("User %d <user%d@customer%d.example>", i%3000, i%3000, i%97)
		if i%benchBatch == 0 {
			committed = len(newIDs)
		}
		reply := committed > 10 && r.IntN(10) < 3
		to, subject, extra := "support@acme.example", fmt.Sprintf("Problem %d with %s", i, benchWords[i%len(benchWords)]), ""
		if reply {
			t := r.IntN(committed)
			subject = fmt.Sprintf("Re: Problem with order %d [#%d]", t, t+1)
			if r.IntN(2) == 0 {
				extra = fmt.Sprintf("In-Reply-To: <%s>\r\nReferences: <%s>\r\n", newIDs[t], newIDs[t])
			} else {
				to = threading.ReplyAddress("support@acme.example", signer.TicketToken(int64(t+1)))
			}
			body += "\r\n\r\nOn Mon, 2 Mar 2026 at 09:00, ACME Support <support@acme.example> wrote:\r\n> We received your request.\r\n> " + benchWords[t%len(benchWords)] + "\r\n"
		} else {
			newIDs = append(newIDs, msgID)
		}
		fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s>\r\n%sMIME-Version: 1.0\r\n", from, to, subject, date, msgID, extra)
		if i%2 == 0 {
			// Gmail-style multipart/alternative with an HTML part.
			html := "<div dir=\"ltr\">" + strings.ReplaceAll(body, "\r\n", "<br>") + "</div>"
			fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=\"b%d\"\r\n\r\n--b%d\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n\r\n%s\r\n--b%d\r\nContent-Type: text/html; charset=\"UTF-8\"\r\n\r\n%s\r\n--b%d--\r\n", i, i, body, i, html, i)
		} else {
			fmt.Fprintf(&b, "Content-Type: text/plain; charset=\"UTF-8\"\r\n\r\n%s\r\n", body)
		}
		mails[i] = []byte(b.String())
	}
	return mails, len(newIDs)
}

// BenchmarkPipeline ingests 10,000 generated mails into a fresh,
// durable database (synchronous=FULL) in batches of 250, as the daemon
// would commit them, and reports msg/s overall and for the first and
// the last thousand. Run it with -benchtime=1x.
func BenchmarkPipeline(b *testing.B) {
	signer := threading.NewSigner([]byte("scenario-test-secret"), 0)
	mails, tickets := benchCorpus(signer)
	b.Run("ingest", func(b *testing.B) {
		benchRun(b, mails, tickets, func(h *harness, raws []ingest.Raw) {
			if _, err := h.p.Ingest(h.ctx, raws); err != nil {
				b.Fatal(err)
			}
		}, nil)
	})
	b.Run("pipelined", func(b *testing.B) {
		// As deskmail ingest does: batch k+1 is parsed while batch k
		// commits (Prepare/Commit), so parsing and storing overlap.
		var prev *ingest.Batch
		commitPrev := func(h *harness) {
			if prev != nil {
				if _, err := h.p.Commit(h.ctx, prev); err != nil {
					b.Error(err)
				}
				prev = nil
			}
		}
		benchRun(b, mails, tickets, func(h *harness, raws []ingest.Raw) {
			done := make(chan struct{})
			go func() { commitPrev(h); close(done) }()
			next := h.p.Prepare(raws)
			<-done
			prev = next
		}, commitPrev)
	})
	b.Run("submit16", func(b *testing.B) {
		// 16 goroutines (SMTP sessions) Submit concurrently; Run groups
		// them. Each batch of 250 waits for all of its messages.
		benchRun(b, mails, tickets, func(h *harness, raws []ingest.Raw) {
			var wg sync.WaitGroup
			next := make(chan ingest.Raw)
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range next {
						if _, err := h.p.Submit(h.ctx, r); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			for _, r := range raws {
				next <- r
			}
			close(next)
			wg.Wait()
		}, nil)
	})
}

func benchRun(b *testing.B, mails [][]byte, tickets int, ingestBatch func(*harness, []ingest.Raw), finish func(*harness)) {
	var first, last, overall float64
	for range b.N {
		b.StopTimer()
		h := newHarness(b, nil)
		ctx, cancel := context.WithCancel(h.ctx)
		done := make(chan error, 1)
		go func() { done <- h.p.Run(ctx) }()
		ends := make([]time.Time, 0, benchMails/benchBatch)
		b.StartTimer()
		t0 := time.Now()
		for i := 0; i < len(mails); i += benchBatch {
			raws := make([]ingest.Raw, 0, benchBatch)
			for j := i; j < min(i+benchBatch, len(mails)); j++ {
				raws = append(raws, ingest.Raw{Data: mails[j], Source: ingest.SourceSMTP, Name: fmt.Sprint(j),
					Envelope: ingest.Envelope{ReceivedAt: start.Add(time.Duration(j) * time.Second)}})
			}
			ingestBatch(h, raws)
			ends = append(ends, time.Now())
		}
		if finish != nil {
			// Pipelined: batch k commits during call k+1, so its end is
			// the next call's end, and the last one ends in finish.
			finish(h)
			ends = append(ends[1:], time.Now())
		}
		total := time.Since(t0)
		b.StopTimer()
		cancel()
		<-done
		per := 1000 / benchBatch
		overall += float64(len(mails)) / total.Seconds()
		first += 1000 / ends[per-1].Sub(t0).Seconds()
		last += 1000 / ends[len(ends)-1].Sub(ends[len(ends)-1-per]).Seconds()
		// Every reply found its ticket: one ticket per new mail.
		if n := h.ticketCount(); n != tickets {
			b.Fatalf("%d tickets for %d new mails", n, tickets)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(overall/n, "msg/s")
	b.ReportMetric(first/n, "first1000_msg/s")
	b.ReportMetric(last/n, "last1000_msg/s")
	b.ReportMetric(0, "ns/op")
}
