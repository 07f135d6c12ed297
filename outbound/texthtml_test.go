package outbound

import (
	htmltemplate "html/template"
	"math/rand/v2"
	"strings"
	"testing"
)

// textToHTMLSplit is textToHTML as it was, with strings.Split.
func textToHTMLSplit(text string) htmltemplate.HTML {
	var b strings.Builder
	for i, para := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		if strings.TrimSpace(para) == "" {
			continue
		}
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("<p>")
		for j, line := range strings.Split(para, "\n") {
			if j > 0 {
				b.WriteString("<br>\n")
			}
			b.WriteString(htmltemplate.HTMLEscapeString(line))
		}
		b.WriteString("</p>")
	}
	return htmltemplate.HTML(b.String())
}

// TestTextToHTMLMatchesSplit: the one-buffer textToHTML gives what the
// version that split the text into slices gave, on hand-picked edges
// and on 50,000 random texts of line breaks, blanks and markup.
func TestTextToHTMLMatchesSplit(t *testing.T) {
	cases := []string{"", "\n", "\n\n", "\n\n\n", "a", "a\n", "a\n\n", "\n\na", "a\n\nb", "a\nb\n\n\n\nc",
		" \n\n\t\n\nx", "a\r\nb\r\n\r\nc", "<b>&'\"</b>", "x\n\n \n\ny\n", "\r\n\r\n", "é\n\n\n"}
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"\n", "\n", "\n\n", "\r\n", " ", "\t", "a", "bonjour", "<", "&", "\"", "é", "\r"}
	for range 50000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		cases = append(cases, b.String())
	}
	for _, c := range cases {
		if got, want := textToHTML(c), textToHTMLSplit(c); got != want {
			t.Fatalf("textToHTML(%q) = %q, want %q", c, got, want)
		}
	}
}

func BenchmarkTextToHTML(b *testing.B) {
	text := strings.Repeat("Bonjour, mon imprimante ne marche plus depuis lundi.\nMerci de regarder <vite> & bien.\n\n", 40)
	for b.Loop() {
		htmlSink = textToHTML(text)
	}
}

var htmlSink htmltemplate.HTML

func BenchmarkTextToHTMLSplit(b *testing.B) {
	text := strings.Repeat("Bonjour, mon imprimante ne marche plus depuis lundi.\nMerci de regarder <vite> & bien.\n\n", 40)
	for b.Loop() {
		htmlSink = textToHTMLSplit(text)
	}
}
