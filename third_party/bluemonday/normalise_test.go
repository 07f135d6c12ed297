package bluemonday

import (
	"math/rand"
	"testing"
)

// TestNormaliseElementNameMatchesUpstream checks deskmail's fast path
// of normaliseElementName against upstream's function on element names
// and random strings (ASCII, quotes, backslashes, control and
// non-ASCII characters).
func TestNormaliseElementNameMatchesUpstream(t *testing.T) {
	in := []string{"", "p", "P", "DiV", "h1", "o:p", "x-custom", "svg:rect", "İ", "scrİpt", "a\"b", `a\b`, "a\tb", "\x7f", "ſcript"}
	alphabet := []rune("aZ09:-_\"\\ \t\x00\x7f\u0130\u017f\u212aé€")
	rnd := rand.New(rand.NewSource(1))
	for n := 0; n < 20000; n++ {
		r := make([]rune, rnd.Intn(8))
		for i := range r {
			r[i] = alphabet[rnd.Intn(len(alphabet))]
		}
		in = append(in, string(r))
	}
	for _, s := range in {
		if got, want := normaliseElementName(s), quotedElementName(s); got != want {
			t.Errorf("normaliseElementName(%q) = %q, upstream %q", s, got, want)
		}
	}
}
