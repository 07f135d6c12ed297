package reply

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// trailerStartRef is trailerStart without its first-byte check.
func trailerStartRef(t string) bool {
	head := t
	if len(head) > 48 {
		head = strings.ToValidUTF8(head[:48], "")
	}
	head = strings.ToLower(head)
	for _, p := range trailerPrefixes {
		if strings.HasPrefix(head, p) || len(head) < len(p) && strings.HasPrefix(p, head) {
			return true
		}
	}
	return false
}

// TestTrailerStartFirstByteCheck checks that trailerStart's first-byte
// check answers as the full test does: on every prefix in upper and
// lower case, cut short, and on random lines.
func TestTrailerStartFirstByteCheck(t *testing.T) {
	var lines []string
	for _, p := range trailerPrefixes {
		for _, v := range []string{p, strings.ToUpper(p), strings.ToUpper(p[:1]) + p[1:], p[:len(p)/2], p + "iPhone"} {
			lines = append(lines, v)
		}
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	alphabet := []string{"S", "s", "e", "G", "o", "x", "Z", "1", " ", "é", "É", "İ", "о", "О", "从", "\xff", "sent ", "from "}
	for range 20000 {
		var b strings.Builder
		for k := rnd.IntN(8); k > 0; k-- {
			b.WriteString(alphabet[rnd.IntN(len(alphabet))])
		}
		lines = append(lines, b.String())
	}
	for _, l := range lines {
		if got, want := trailerStart(l), trailerStartRef(l); got != want {
			t.Fatalf("trailerStart(%q) = %v, want %v", l, got, want)
		}
	}
}
