package ingest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// typicalMessages builds multipart mail of 5-20 KB like the support
// inbox sees: an Outlook-style text+HTML reply with quoted history, and
// the same with a small PDF attached.
func typicalMessages() [][]byte {
	para := "Thanks for getting back to me so quickly. The invoice still shows the old VAT rate and our accounting team cannot book it until it is corrected. "
	var text, html strings.Builder
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&text, "%s\n\n", para)
		fmt.Fprintf(&html, "<p class=\"MsoNormal\" style=\"margin:0cm;font-family:Calibri\">%s</p>\n", para)
	}
	text.WriteString("From: Acme Support <support@acme.example>\nSent: Friday\n\n> " + strings.Repeat(para, 3) + "\n")
	html.WriteString(`<div style="border-top:solid #E1E1E1 1.0pt"><b>From:</b> Acme</div><blockquote>` + strings.Repeat(para, 3) + "</blockquote>")
	head := "From: \"Harper, Jane\" <jane@contoso.example>\r\nTo: Acme Support <support@acme.example>\r\n" +
		"Subject: =?utf-8?Q?RE:_[#1042]_Invoice_=E2=80=93_VAT?=\r\nDate: Mon, 2 Mar 2026 09:14:02 +0000\r\n" +
		"Message-ID: <DB9PR05MB8712@outlook.example>\r\nIn-Reply-To: <t-1@acme.example>\r\nReferences: <t-0@acme.example> <t-1@acme.example>\r\n" +
		"MIME-Version: 1.0\r\n"
	alt := "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		qpLite(text.String()) + "\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		qpLite("<html><body>"+html.String()+"</body></html>") + "\r\n--alt--\r\n"
	pdf := make([]byte, 6000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range pdf {
		pdf[i] = byte(r.UintN(256))
	}
	mixed := head + "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\n" + alt + "\r\n--mix\r\n" +
		"Content-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		wrap76(base64.StdEncoding.EncodeToString(pdf)) + "\r\n--mix--\r\n"
	return [][]byte{[]byte(head + alt), []byte(mixed)}
}

func qpLite(s string) string {
	// The sample text is ASCII apart from none; soft-wrap long lines.
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		for len(line) > 72 {
			b.WriteString(line[:72] + "=\r\n")
			line = line[72:]
		}
		b.WriteString(strings.ReplaceAll(line, "=", "=3D") + "\r\n")
	}
	return b.String()
}

func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	return b.String() + s
}

func BenchmarkParse(b *testing.B) {
	msgs := typicalMessages()
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	b.SetBytes(int64(total / len(msgs)))
	b.ReportAllocs()
	i := 0
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := Parse(msgs[i%len(msgs)], ParseOptions{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "msg/s")
	// On a shared machine wall time includes waiting for a core; the
	// process CPU time (GC included) shows what one core would do.
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(i)/cpu.Seconds(), "msg/cpu-s")
	}
}

// cpuTime returns the user+system CPU time of the process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// largeAttachmentMessage returns a mail carrying size bytes of random
// data as a base64 attachment.
func largeAttachmentMessage(size int) []byte {
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(r.UintN(256))
	}
	var buf bytes.Buffer
	buf.WriteString("From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\nDate: Mon, 2 Mar 2026 09:14:02 +0000\r\n" +
		"Message-ID: <big@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n" +
		"Content-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		buf.WriteString(enc[:76])
		buf.WriteString("\r\n")
		enc = enc[76:]
	}
	buf.WriteString(enc + "\r\n--b--\r\n")
	return buf.Bytes()
}

// peakHeapDuring runs f while a goroutine samples HeapAlloc, and
// returns the highest value seen above the heap in use before f.
func peakHeapDuring(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		var s runtime.MemStats
		for {
			runtime.ReadMemStats(&s)
			if s.HeapAlloc > peak.Load() {
				peak.Store(s.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	f()
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > peak.Load() {
		peak.Store(ms.HeapAlloc)
	}
	close(done)
	<-stopped
	if peak.Load() < base {
		return 0
	}
	return peak.Load() - base
}

// BenchmarkParseLargeAttachment reports the peak heap Parse uses for a
// mail with a 20 MB attachment, over the heap held before (which
// includes the raw message), as a multiple of the attachment size.
func BenchmarkParseLargeAttachment(b *testing.B) {
	const size = 20 << 20
	raw := largeAttachmentMessage(size)
	var worst uint64
	for b.Loop() {
		var m *Message
		peak := peakHeapDuring(func() {
			var err error
			m, err = Parse(raw, ParseOptions{})
			if err != nil {
				b.Fatal(err)
			}
		})
		if len(m.Attachments) != 1 || m.Attachments[0].Size != size {
			b.Fatalf("attachments %+v", m.Attachments)
		}
		worst = max(worst, peak)
	}
	b.ReportMetric(float64(worst)/(1<<20), "peak-MB")
	b.ReportMetric(float64(worst)/size, "peak/attachment")
	b.ReportMetric(float64(worst+uint64(len(raw)))/size, "peak+raw/attachment")
}
