package ingest

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestLFStringMatchesReplaceAll checks lfString against the
// strings.ReplaceAll it stands for, on random runs of CR, LF and text.
func TestLFStringMatchesReplaceAll(t *testing.T) {
	rnd := rand.New(rand.NewPCG(11, 12))
	pieces := []string{"\r", "\n", "\r\n", "a", "bc", "\r\r\n", "\x00", "é"}
	for range 5000 {
		var b strings.Builder
		for k := rnd.IntN(12); k > 0; k-- {
			b.WriteString(pieces[rnd.IntN(len(pieces))])
		}
		in := b.String()
		if got, want := lfString([]byte(in)), strings.ReplaceAll(in, "\r\n", "\n"); got != want {
			t.Fatalf("lfString(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHasHighBytes checks the word-at-a-time hasHighBytes against a
// byte loop, with the high byte at every position of short and long
// inputs.
func TestHasHighBytes(t *testing.T) {
	for n := 0; n < 40; n++ {
		b := []byte(strings.Repeat("a", n))
		if hasHighBytes(b) {
			t.Fatalf("%d ASCII bytes reported high", n)
		}
		for i := 0; i < n; i++ {
			for _, c := range []byte{0x7f, 0x80, 0xc3, 0xff} {
				c0 := b[i]
				b[i] = c
				if got, want := hasHighBytes(b), c >= 0x80; got != want {
					t.Fatalf("n=%d, byte %#x at %d: %v, want %v", n, c, i, got, want)
				}
				b[i] = c0
			}
		}
	}
}
