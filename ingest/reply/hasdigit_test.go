package reply

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestHasDigitMatchesContainsAny checks the byte loop in hasDigit
// against the strings.ContainsAny it replaced, on random lines of
// ASCII, digits and multi-byte text.
func TestHasDigitMatchesContainsAny(t *testing.T) {
	alphabet := []string{"a", "Z", " ", "0", "5", "9", "/", ":", "é", "٣", "\x00", "\xff"}
	r := rand.New(rand.NewPCG(3, 5))
	for i := 0; i < 50000; i++ {
		var b strings.Builder
		for n := r.IntN(30); n > 0; n-- {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		s := b.String()
		if got, want := hasDigit(s), strings.ContainsAny(s, "0123456789"); got != want {
			t.Fatalf("hasDigit(%q) = %v, want %v", s, got, want)
		}
	}
}
