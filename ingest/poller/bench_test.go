package poller

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// benchMessage is a ~2.5 KB customer mail with a unique sender and id.
func benchMessage(i int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Customer %d <customer%d@example.net>\r\nTo: Support <support@example.com>\r\n", i, i)
	fmt.Fprintf(&b, "Subject: Order %d has not arrived\r\nMessage-ID: <bench-%d@example.net>\r\n", i, i)
	b.WriteString("Date: Mon, 03 Mar 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for j := range 30 {
		fmt.Fprintf(&b, "Line %d of my complaint about order %d: the parcel never reached me.\r\n", j, i)
	}
	return b.Bytes()
}

// vmHWM reads the process's peak resident memory (Linux).
func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// drainMailbox fills a folder with n messages (before the channel's
// first poll, existing: import) and measures how long the poller takes
// to commit and acknowledge them all, and the peak memory meanwhile.
func drainMailbox(tb testing.TB, b *backend, n int) (rate float64, peakHeap, hwm int64) {
	if b.mem != nil {
		for i := range n {
			if _, err := b.mem.Append("INBOX", bytes.NewReader(benchMessage(i)), &imap.AppendOptions{}); err != nil {
				tb.Fatal(err)
			}
		}
	} else {
		c := b.client(tb)
		for i := range n {
			b.appendWith(tb, c, "INBOX", benchMessage(i), time.Now())
		}
		c.Logout()
	}
	h := newHarness(tb, b, "existing: import", "batch_size: 200")
	h.opts.Logger = nil
	h.noNotices = true
	runtime.GC()
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if v := int64(ms.HeapInuse + ms.StackInuse); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	h.start()
	eventually(tb, 5*time.Minute, fmt.Sprintf("%d messages checkpointed", n), func() bool {
		cp := h.checkpoint("INBOX")
		return cp != nil && cp.LastUID >= uint32(n)
	})
	elapsed := time.Since(start)
	close(stop)
	<-done
	h.stop()
	// The high-water mark of the drain itself, before the checks below
	// read every ticket back (through the readers' mapping of the file,
	// whose pages count in the resident size: 40 MB for 10,000 tickets).
	hwm = vmHWM()
	if got := h.countRaw(""); got != n {
		tb.Fatalf("%d raw messages stored, want %d", got, n)
	}
	if got := len(h.tickets()); got != n {
		tb.Fatalf("%d tickets, want %d", got, n)
	}
	return float64(n) / elapsed.Seconds(), peak.Load(), hwm
}

// BenchmarkDrain10k is the acceptance benchmark: 10,000 waiting
// messages drained at ≥ 1,000 msg/s with peak memory < 200 MB (VmHWM
// includes the in-process server holding the mailbox). Run it with
// -benchtime 1x.
func BenchmarkDrain10k(b *testing.B) {
	for b.Loop() {
		rate, heap, hwm := drainMailbox(b, memServer(b, memOptions{}), 10000)
		b.ReportMetric(rate, "msg/s")
		b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(hwm)/(1<<20), "VmHWM-MB")
	}
}

// BenchmarkDrain measures the drain rate of a 2,000-message mailbox.
func BenchmarkDrain(b *testing.B) {
	for b.Loop() {
		rate, heap, _ := drainMailbox(b, memServer(b, memOptions{}), 2000)
		b.ReportMetric(rate, "msg/s")
		b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MB")
	}
}
