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
