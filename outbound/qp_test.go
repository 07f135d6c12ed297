package outbound

import (
	"bytes"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// stdlibQP is what mime/quotedprintable writes for s in one Write.
func stdlibQP(s string) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

// TestAppendQPMatchesStdlib: appendQP writes exactly what
// mime/quotedprintable writes, on edge cases and on random text made of
// the bytes that matter (line breaks, spaces, '=', UTF-8, controls).
func TestAppendQPMatchesStdlib(t *testing.T) {
	cases := []string{"", " ", "\t", "a \n", "a\t\r\nb", "\r", "\r\r\n\n", "\ré\n", "=", "é",
		strings.Repeat("x", 75), strings.Repeat("x", 76), strings.Repeat("x", 74) + "é", strings.Repeat("x", 73) + "==",
		strings.Repeat("x", 75) + " \n", strings.Repeat("a ", 100), "-- \nsig", "line\n\n\nend "}
	alphabet := []string{"a", "b", " ", "\t", "\n", "\r", "\r\n", "=", "é", "€", "\x00", "\x7f", "~", "!", "xxxxxxxxxxxxxxxxxxxx"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		var b strings.Builder
		for range r.IntN(300) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, s := range cases {
		if got, want := appendQP([]byte("prefix"), s), append([]byte("prefix"), stdlibQP(s)...); !bytes.Equal(got, want) {
			t.Fatalf("appendQP(%q):\n got %q\nwant %q", s, got, want)
		}
	}
}

func FuzzAppendQP(f *testing.F) {
	f.Add("Bonjour,\r\nvoici une ligne =C3=A9 \t\n" + strings.Repeat("é", 40))
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := appendQP(nil, s), stdlibQP(s); !bytes.Equal(got, want) {
			t.Fatalf("appendQP(%q):\n got %q\nwant %q", s, got, want)
		}
	})
}

func BenchmarkAppendQP(b *testing.B) {
	body := strings.Repeat("passe problème remboursement imprimante commande refund account\n", 64)
	b.SetBytes(int64(len(body)))
	var dst []byte
	for b.Loop() {
		dst = appendQP(dst[:0], body)
	}
}
