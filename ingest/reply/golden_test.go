package reply

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

var update = flag.Bool("update", false, "rewrite the .expected files in fixtures/reply")

const fixtureDir = "../../fixtures/reply"

// visibleText renders HTML as plain lines, standing in for the
// parser's html-to-text step: block elements start lines and
// blockquote lines get a "> " prefix.
func visibleText(t testing.TB, h string) string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(h))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cur strings.Builder
	depth := 0
	flush := func() {
		l := strings.Join(strings.Fields(cur.String()), " ")
		cur.Reset()
		if l == "" {
			if len(lines) > 0 && lines[len(lines)-1] != "" {
				lines = append(lines, "")
			}
			return
		}
		lines = append(lines, strings.Repeat("> ", depth)+l)
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		switch n.Type {
		case html.TextNode:
			cur.WriteString(n.Data)
			return
		case html.ElementNode:
			switch n.Data {
			case "script", "style", "head", "title":
				return
			case "br":
				flush()
				return
			case "div", "p", "blockquote", "hr", "tr", "li", "table":
				flush()
			}
		}
		if n.Type == html.ElementNode && n.Data == "blockquote" {
			depth++
			defer func() { flush(); depth-- }()
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
		if n.Type == html.ElementNode && (n.Data == "div" || n.Data == "p") {
			flush()
		}
	}
	walk(doc)
	flush()
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// golden computes what a fixture's .expected file holds: for text, the
// TrimText result; for HTML, whether TrimHTML removed something and
// TrimText of the remaining HTML's text, as the parser composes them.
func golden(t testing.TB, name string, in []byte) string {
	if strings.HasSuffix(name, ".html") {
		out, removed := TrimHTML(string(in))
		state := "removed: false"
		if removed {
			state = "removed: true"
		}
		return state + "\n---\n" + TrimText(visibleText(t, out)) + "\n"
	}
	return TrimText(string(in)) + "\n"
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join(fixtureDir, "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range inputs {
		name := filepath.Base(path)
		if !strings.HasSuffix(name, ".txt") && !strings.HasSuffix(name, ".html") {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := golden(t, name, in)
			want := strings.TrimSuffix(path, filepath.Ext(path)) + ".expected"
			if *update {
				if err := os.WriteFile(want, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(exp) {
				t.Errorf("%s:\n--- got\n%s\n--- want\n%s", name, got, exp)
			}
		})
	}
	if n < 40 {
		t.Errorf("only %d fixtures in %s", n, fixtureDir)
	}
}
