package ingest

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/microcosm-cc/bluemonday"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// sanitizer returns the shared HTML policy. A bluemonday.Policy is safe
// for concurrent use once built; it is built on first use and never
// changed afterwards.
var sanitizer = sync.OnceValue(newSanitizer)

// safeCSSValue rejects CSS values that load resources or run code:
// url(), image-set(), expression(), behaviours, @import and escapes
// that could spell them.
// It runs on every style property of every mail, so it compares
// lower-cased text without spaces instead of running a regexp (removing
// spaces only makes it stricter: "url (" is caught as "url(").
var unsafeCSS = []string{"url(", "image-set", "expression", "javascript:", "behavior", "-moz-binding", "@import", `\`}

func safeCSSValue(v string) bool {
	compact := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return unicode.ToLower(r)
	}, v)
	for _, bad := range unsafeCSS {
		if strings.Contains(compact, bad) {
			return false
		}
	}
	return true
}

// newSanitizer builds the policy for mail HTML: user-generated-content
// rules (no script, style elements, event handlers, forms, iframes,
// objects, <base>, <meta>) plus the layout mail needs (tables, fonts,
// a safe subset of inline CSS). Links may be http, https, mailto, tel
// or cid; images may also be data:image/*. Links get rel=nofollow
// noopener and open in a new window.
func newSanitizer() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.AllowURLSchemes("http", "https", "mailto", "tel", "cid")
	p.AllowRelativeURLs(false) // no <base> either: relative links go nowhere
	p.AllowDataURIImages()
	p.RequireNoFollowOnLinks(true)
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.SkipElementsContent("title", "xml", "style", "script", "noembed", "template")
	p.AllowElements("font", "center", "span", "div", "u", "s", "strike", "small", "big")
	p.AllowAttrs("color", "face", "size").OnElements("font")
	p.AllowAttrs("align", "valign", "width", "height", "bgcolor", "border",
		"cellpadding", "cellspacing", "colspan", "rowspan", "dir").Globally()
	p.AllowAttrs("type").Matching(regexp.MustCompile(`^(?i)(cite|disc|circle|square|1|a|i)$`)).OnElements("blockquote", "ol", "ul", "li")
	p.AllowStyles(
		"color", "background-color", "font-family", "font-size", "font-weight", "font-style",
		"font-variant", "text-align", "text-decoration", "text-indent", "text-transform",
		"line-height", "letter-spacing", "white-space", "vertical-align", "direction",
		"margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
		"padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
		"border", "border-top", "border-right", "border-bottom", "border-left",
		"border-color", "border-style", "border-width", "border-collapse", "border-spacing",
		"width", "height", "max-width", "min-width", "list-style-type",
	).MatchingHandler(safeCSSValue).Globally()
	return p
}

// sanitizeHTML returns html with everything active or remote-loading
// removed (see newSanitizer).
func sanitizeHTML(s string) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return strings.TrimSpace(sanitizer().Sanitize(s))
}

// htmlToText renders HTML as readable plain text: paragraphs and line
// breaks kept, list items on their own lines, links written as
// "text <url>", blockquotes prefixed with "> ", and no markup, script
// or style content. Entities are decoded by the HTML parser. The walk
// is iterative, so deeply nested markup cannot exhaust the stack.
func htmlToText(s string) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	doc, err := html.Parse(strings.NewReader(s))
	if err != nil {
		return ""
	}
	w := &textWriter{}
	type frame struct {
		n     *html.Node
		exit  bool
		start int // output length when a link was entered
		href  string
	}
	var lists []int // item counters of open lists; -1 for unordered
	stack := []frame{{n: doc}}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := f.n
		if f.exit {
			w.closeElement(n, f.start, f.href)
			switch n.DataAtom {
			case atom.Ul, atom.Ol:
				if len(lists) > 0 {
					lists = lists[:len(lists)-1]
				}
			}
			continue
		}
		switch n.Type {
		case html.TextNode:
			w.text(n.Data)
			continue
		case html.ElementNode:
			switch n.DataAtom {
			case atom.Script, atom.Style, atom.Head, atom.Title, atom.Template, atom.Noembed, atom.Object, atom.Iframe:
				continue
			case atom.Ul:
				lists = append(lists, -1)
			case atom.Ol:
				lists = append(lists, 0)
			case atom.Li:
				marker := "- "
				if len(lists) > 0 && lists[len(lists)-1] >= 0 {
					lists[len(lists)-1]++
					marker = strconv.Itoa(lists[len(lists)-1]) + ". "
				}
				w.block(1)
				w.raw(strings.Repeat("  ", max(len(lists)-1, 0)) + marker)
			}
			if n.Data == "xml" {
				continue
			}
			f.start, f.href = w.openElement(n)
		case html.DocumentNode:
		default:
			continue
		}
		stack = append(stack, frame{n: n, exit: true, start: f.start, href: f.href})
		for c := n.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, frame{n: c})
		}
	}
	return w.String()
}

// textWriter accumulates rendered text, collapsing whitespace outside
// <pre> and deferring line breaks so that blocks never produce more
// than one blank line.
type textWriter struct {
	b       strings.Builder
	pending int  // line breaks owed before the next text
	space   bool // a blank is owed before the next word
	pre     int  // depth of <pre>
	quote   int  // depth of <blockquote>
	lineQ   int  // quote depth of the last line written
}

func isBlock(a atom.Atom) (bool, int) {
	switch a {
	case atom.P, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Pre, atom.Blockquote, atom.Table, atom.Ul, atom.Ol, atom.Dl, atom.Hr:
		return true, 2
	case atom.Div, atom.Tr, atom.Li, atom.Dt, atom.Dd, atom.Section, atom.Article, atom.Header,
		atom.Footer, atom.Address, atom.Form, atom.Center, atom.Nav, atom.Aside, atom.Main,
		atom.Figure, atom.Figcaption, atom.Tbody, atom.Thead, atom.Tfoot, atom.Caption, atom.Fieldset:
		return true, 1
	}
	return false, 0
}

func (w *textWriter) openElement(n *html.Node) (int, string) {
	if ok, lines := isBlock(n.DataAtom); ok && n.DataAtom != atom.Li {
		w.block(lines)
	}
	switch n.DataAtom {
	case atom.Br:
		if w.b.Len() > 0 {
			w.pending++
			if w.pending > 2 {
				w.pending = 2
			}
		}
		w.space = false
	case atom.Hr:
		w.raw("----")
		w.block(2)
	case atom.Pre:
		w.pre++
	case atom.Blockquote:
		w.quote++
	case atom.Td, atom.Th:
		if n.PrevSibling != nil {
			w.space = true
		}
	case atom.Img:
		// Images carry no text; their alt text is decoration in
		// most mail (logos, spacers) and is left out.
	case atom.A:
		return w.b.Len(), attr(n, "href")
	}
	return 0, ""
}

func (w *textWriter) closeElement(n *html.Node, start int, href string) {
	switch n.DataAtom {
	case atom.Pre:
		w.pre--
	case atom.Blockquote:
		w.block(2)
		w.quote--
	case atom.A:
		w.link(start, href)
	}
	if ok, lines := isBlock(n.DataAtom); ok {
		w.block(lines)
	}
}

// link appends " <url>" after a link's text unless the text already
// says it or the target is not worth printing.
func (w *textWriter) link(start int, href string) {
	href = strings.TrimSpace(href)
	lower := strings.ToLower(href)
	if href == "" || strings.HasPrefix(href, "#") || strings.HasPrefix(lower, "cid:") ||
		strings.HasPrefix(lower, "javascript:") || strings.HasPrefix(lower, "data:") {
		return
	}
	out := w.b.String()
	if start > len(out) {
		start = len(out)
	}
	label := strings.TrimSpace(out[start:])
	target := strings.TrimPrefix(strings.TrimPrefix(href, "mailto:"), "MAILTO:")
	if i := strings.IndexByte(target, '?'); i >= 0 && strings.HasPrefix(lower, "mailto:") {
		target = target[:i]
	}
	if label == "" || strings.EqualFold(label, target) || strings.EqualFold(label, href) ||
		strings.EqualFold(strings.TrimSuffix(label, "/"), strings.TrimSuffix(href, "/")) {
		if label == "" && strings.HasPrefix(lower, "http") {
			w.text(href)
		}
		return
	}
	w.text(" <" + target + ">")
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if strings.EqualFold(a.Key, key) {
			return a.Val
		}
	}
	return ""
}

// block owes at least lines line breaks before the next text.
func (w *textWriter) block(lines int) {
	if w.b.Len() == 0 {
		return
	}
	if lines > w.pending {
		w.pending = lines
	}
	w.space = false
}

// flush writes owed line breaks and the quote prefix of a new line.
func (w *textWriter) flush() {
	if w.pending > 0 && w.b.Len() > 0 {
		for i := 0; i < w.pending; i++ {
			w.b.WriteByte('\n')
			// A blank line inside a quote keeps its ">" only
			// when the quote goes on on both sides.
			if d := min(w.quote, w.lineQ); i < w.pending-1 && d > 0 {
				w.b.WriteString(strings.Repeat(">", d))
			}
		}
		w.pending = 0
		w.space = false
		w.lineQ = w.quote
		if w.quote > 0 {
			w.b.WriteString(strings.Repeat("> ", w.quote))
		}
		return
	}
	if w.b.Len() == 0 && w.quote > 0 {
		w.b.WriteString(strings.Repeat("> ", w.quote))
		w.lineQ = w.quote
	}
}

// raw writes s as is (a list marker).
func (w *textWriter) raw(s string) {
	w.flush()
	w.b.WriteString(s)
	w.space = false
}

func (w *textWriter) text(s string) {
	s = strings.ReplaceAll(s, "\u00a0", " ")
	if w.pre > 0 {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		for i, line := range strings.Split(s, "\n") {
			if i > 0 {
				w.pending++
			}
			if line != "" {
				w.flush()
				w.b.WriteString(line)
			}
		}
		return
	}
	if s == "" {
		return
	}
	if isHTMLSpace(s[0]) {
		w.space = true
	}
	words := strings.Fields(s)
	for i, word := range words {
		if i > 0 {
			w.space = true
		}
		w.flush()
		if w.space && w.b.Len() > 0 && !atLineStart(&w.b) {
			w.b.WriteByte(' ')
		}
		w.b.WriteString(word)
		w.space = false
	}
	if isHTMLSpace(s[len(s)-1]) {
		w.space = true
	}
}

func isHTMLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

func atLineStart(b *strings.Builder) bool {
	s := b.String()
	return s == "" || s[len(s)-1] == '\n' || strings.HasSuffix(s, "> ")
}

// String returns the text with trailing blanks removed from each line.
func (w *textWriter) String() string {
	lines := strings.Split(w.b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// SanitizeHTML returns mail HTML with everything active or
// remote-loading removed, by the policy every stored body went
// through (see newSanitizer); the web console applies it again when it
// shows a body.
func SanitizeHTML(s string) string { return sanitizeHTML(s) }
