package bluemonday

import (
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// TestWriteTokenMatchesString checks that writeToken writes exactly
// token.String() for every token of random HTML-like input: tags with
// attributes whose values hold the escaped bytes, text, comments,
// doctypes, self-closing tags, stray brackets and quotes.
func TestWriteTokenMatchesString(t *testing.T) {
	pieces := []string{
		"<p>", "</p>", "<a href=\"x&y\">", "<img src='a\"b' alt=x/>", "<br/>", "<!-- c -->",
		"<!DOCTYPE html>", "&amp;", "&lt;", "<", ">", "&", "'", "\"", "\r", "\r\n", "\n", " ",
		"text", "Grüße", "<div class=\"a b\" style=\"color:red\" data-x='1<2'>", "</div>",
		"<script>a<b</script>", "<style>p{}</style>", "=", "<td nowrap>", "<x y=\"\r\">",
		"&#39;", "\x00", "<P CLASS=MsoNormal>", "</ A>",
	}
	r := rand.New(rand.NewPCG(7, 11))
	types := map[html.TokenType]int{}
	for i := 0; i < 20000; i++ {
		var in strings.Builder
		for n := r.IntN(12); n >= 0; n-- {
			if r.IntN(6) == 0 {
				b := make([]byte, 1+r.IntN(4))
				for j := range b {
					b[j] = byte(r.UintN(256))
				}
				in.Write(b)
				continue
			}
			in.WriteString(pieces[r.IntN(len(pieces))])
		}
		z := html.NewTokenizer(strings.NewReader(in.String()))
		for z.Next() != html.ErrorToken {
			tok := z.Token()
			types[tok.Type]++
			var b strings.Builder
			n, err := writeToken(&b, tok)
			if err != nil || n != b.Len() || b.String() != tok.String() {
				t.Fatalf("input %q: token %#v: wrote %q (%d, %v), String() %q", in.String(), tok, b.String(), n, err, tok.String())
			}
		}
	}
	for _, tt := range []html.TokenType{html.TextToken, html.StartTagToken, html.EndTagToken, html.SelfClosingTagToken, html.CommentToken, html.DoctypeToken} {
		if types[tt] == 0 {
			t.Errorf("no %v token generated", tt)
		}
	}
}
