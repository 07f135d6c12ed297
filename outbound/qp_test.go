package outbound

import (
	"bytes"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// qpReference is what buildAlternative wrote before appendQP: s through
// mime/quotedprintable's Writer, then Close.
func qpReference(t testing.TB, s string) []byte {
	var buf bytes.Buffer
	w := quotedprintable.NewWriter(&buf)
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestAppendQPMatchesQuotedPrintable compares appendQP with
// mime/quotedprintable's Writer on random texts built from pieces that
// meet its every rule: runs of literal bytes around the 75-byte line
// limit, escapes where a line has fewer than three bytes of room, space
// and tab before CR, LF, CRLF, LFCR and the end, '=' and bytes outside
// printable ASCII between a CR and a LF, and on texts of one byte
// value repeated. appendQP also appends to what buf already holds.
func TestAppendQPMatchesQuotedPrintable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 75))
	pieces := []string{"a", "word ", "é", "日本", "=", " ", "  ", "\t", "\n", "\r\n", "\r", "\n\r", "\r\r\n", "\x00", "\x7f", "\xff",
		"\u00a0", ".", "-- ", strings.Repeat("x", 72), strings.Repeat("y", 73), strings.Repeat("z", 74), strings.Repeat("w", 75),
		strings.Repeat("v", 76), strings.Repeat("u", 150), strings.Repeat(" ", 80), strings.Repeat("é", 30)}
	check := func(s string) {
		t.Helper()
		want := qpReference(t, s)
		buf := bytes.NewBufferString("head\r\n")
		appendQP(buf, s)
		if got := buf.Bytes()[len("head\r\n"):]; !bytes.Equal(got, want) {
			t.Fatalf("appendQP(%q):\n got %q\nwant %q", s, got, want)
		}
	}
	check("")
	for b := range 256 {
		for _, n := range []int{1, 2, 24, 25, 26, 74, 75, 76, 77, 151} {
			check(strings.Repeat(string([]byte{byte(b)}), n))
		}
	}
	for range 100000 {
		var sb strings.Builder
		for range r.IntN(40) {
			sb.WriteString(pieces[r.IntN(len(pieces))])
		}
		check(sb.String())
	}
}

// BenchmarkAppendQP encodes a notification-sized French text.
func BenchmarkAppendQP(b *testing.B) {
	text := strings.Repeat("facture imprimante passe problème connexion refund livraison account ", 60)
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		appendQP(&buf, text)
	}
}

// BenchmarkQuotedPrintableWriter is BenchmarkAppendQP with
// mime/quotedprintable's Writer.
func BenchmarkQuotedPrintableWriter(b *testing.B) {
	text := strings.Repeat("facture imprimante passe problème connexion refund livraison account ", 60)
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		w := quotedprintable.NewWriter(&buf)
		io.WriteString(w, text)
		w.Close()
	}
}
