package reply

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxNodes bounds the DOM TrimHTML works on; a larger document is
// returned unchanged (the caller then trims its text body instead).
const maxNodes = 200000

// TrimHTML removes quoted history marked up in decoded HTML and returns
// the remaining HTML and whether anything was removed. When nothing was
// removed, or when removing would leave no visible text, it returns
// the input unchanged and false. The result is a complete document
// rendered by golang.org/x/net/html and is not sanitized.
func TrimHTML(in string) (string, bool) {
	if strings.TrimSpace(in) == "" || !mayHaveQuote(in) {
		return in, false
	}
	src := in
	if !utf8.ValidString(src) {
		src = strings.ToValidUTF8(src, "\uFFFD")
	}
	doc, err := html.Parse(strings.NewReader(src))
	if err != nil {
		return in, false
	}
	t := &trimmer{}
	t.scan(doc, 0)
	if t.nodes > maxNodes {
		return in, false
	}
	removed := false
	if t.cut != nil {
		removeToEnd(t.cut)
		removed = true
	}
	if t.removeTrailingQuotes(doc) {
		removed = true
	}
	if !removed || !hasVisible(doc) {
		return in, false
	}
	var buf bytes.Buffer
	if err := html.Render(&buf, doc); err != nil {
		return in, false
	}
	return buf.String(), true
}

type trimmer struct {
	nodes int
	// cut is the first marker after which everything is history.
	cut *html.Node
}

// classes returns the class tokens of n, lower-cased, with the "x_"
// prefix Outlook on the web adds to forwarded markup removed.
func classes(n *html.Node) []string {
	c := attr(n, "class")
	if c == "" {
		return nil
	}
	f := strings.Fields(strings.ToLower(c))
	for i, s := range f {
		for strings.HasPrefix(s, "x_") {
			s = s[2:]
		}
		f[i] = s
	}
	return f
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func id(n *html.Node) string {
	s := strings.ToLower(attr(n, "id"))
	for strings.HasPrefix(s, "x_") {
		s = s[2:]
	}
	return s
}

func hasClass(n *html.Node, names ...string) bool {
	for _, c := range classes(n) {
		for _, name := range names {
			if c == name {
				return true
			}
		}
	}
	return false
}

// isQuoteElement reports whether n is an element mail clients use to
// wrap quoted history (removed only when nothing follows it).
func isQuoteElement(n *html.Node) bool {
	if n.Type != html.ElementNode {
		return false
	}
	if n.DataAtom == atom.Blockquote {
		if strings.EqualFold(attr(n, "type"), "cite") {
			return true
		}
	}
	if hasClass(n, "gmail_quote", "gmail_quote_container", "gmail_attr", "yahoo_quoted",
		"zmail_extra", "zmail_extra_hr", "protonmail_quote", "moz-cite-prefix",
		"moz-forward-container", "gmail_signature", "gmail_signature_prefix",
		"moz-signature") {
		return true
	}
	i := id(n)
	return strings.Contains(i, "yahoo_quoted") || i == "isreplycontent" ||
		i == "isforwardcontent" || strings.HasPrefix(i, "zwchr") && n.DataAtom != atom.Hr
}

// isCutElement reports whether everything from n on is history.
func isCutElement(n *html.Node) bool {
	if n.Type != html.ElementNode {
		return false
	}
	switch id(n) {
	case "divrplyfwdmsg", "appendonsend", "olk_src_body_section",
		"mail-editor-reference-message-container":
		return true
	}
	if hasClass(n, "outlookmessageheader") {
		return true
	}
	switch n.DataAtom {
	case atom.Div, atom.P:
		style := strings.ToLower(attr(n, "style"))
		if strings.Contains(strings.ReplaceAll(style, " ", ""), "border-top:solid") && startsWithHeader(n) {
			return true
		}
	case atom.Hr:
		if headerFollows(n) {
			return true
		}
		if id(n) == "zwchr" || id(n) == "stopspelling" {
			return true
		}
	}
	return false
}

// nextElement returns the next sibling element of n, skipping
// whitespace text and comments.
func nextElement(n *html.Node) *html.Node {
	for s := n.NextSibling; s != nil; s = s.NextSibling {
		switch s.Type {
		case html.ElementNode:
			return s
		case html.TextNode:
			if strings.TrimSpace(s.Data) != "" {
				return nil
			}
		}
	}
	return nil
}

// headerFollows reports whether the siblings after n start with a
// "From:" header block.
func headerFollows(n *html.Node) bool {
	var b strings.Builder
	for s := n.NextSibling; s != nil && b.Len() < 600; s = s.NextSibling {
		b.WriteString(textOf(s, 600))
	}
	return headerText(b.String())
}

// startsWithHeader reports whether the text of n starts with a "From:"
// header line (in any supported language) and holds another header
// key further on.
func startsWithHeader(n *html.Node) bool {
	return headerText(textOf(n, 600))
}

func headerText(txt string) bool {
	key, _, ok := headerKey(strings.TrimSpace(txt))
	if !ok || !headerFrom[key] {
		return false
	}
	lines := 0
	for _, l := range strings.Split(txt, "\n") {
		if headerClass(l) > 0 {
			lines++
		}
	}
	if lines >= 2 {
		return true
	}
	// Block layouts render each header as its own element, which textOf
	// separates by newlines; a single line holding several keys is a
	// header packed in one paragraph.
	low := strings.ToLower(txt)
	for _, k := range []string{"sent:", "date:", "to:", "subject:", "envoyé :", "objet :",
		"gesendet:", "an:", "betreff:", "enviado", "asunto:", "para:", "à :", "datum:"} {
		if strings.Contains(low, k) {
			return true
		}
	}
	return false
}

// textOf returns up to limit bytes of the text of n, block elements
// and <br> separated by newlines.
func textOf(n *html.Node, limit int) string {
	var b strings.Builder
	var walk func(*html.Node) bool
	walk = func(n *html.Node) bool {
		if b.Len() >= limit {
			return false
		}
		switch n.Type {
		case html.TextNode:
			b.WriteString(n.Data)
			return true
		case html.ElementNode:
			switch n.DataAtom {
			case atom.Script, atom.Style, atom.Head, atom.Title:
				return true
			case atom.Br, atom.Div, atom.P, atom.Tr, atom.Li, atom.Table, atom.Hr,
				atom.H1, atom.H2, atom.H3, atom.H4, atom.Blockquote:
				b.WriteByte('\n')
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if !walk(c) {
				return false
			}
		}
		if n.Type == html.ElementNode && (n.DataAtom == atom.Div || n.DataAtom == atom.P) {
			b.WriteByte('\n')
		}
		return true
	}
	walk(n)
	s := b.String()
	if len(s) > limit {
		s = bounded(s)
	}
	return s
}

// scan counts nodes and finds the first cut marker in document order.
// It is iterative-safe for deep documents through the depth bound.
func (t *trimmer) scan(n *html.Node, depth int) {
	t.nodes++
	if t.nodes > maxNodes || depth > 512 {
		t.nodes = maxNodes + 1
		return
	}
	if n.Type == html.ElementNode && (isQuoteElement(n) || n.DataAtom == atom.Blockquote) {
		// History nested in a quote (an Outlook header inside Gmail's
		// blockquote) is the quote's business: cutting to the end
		// there would drop inline answers below the quote.
		t.countOnly(n, depth)
		return
	}
	if t.cut == nil && isCutElement(n) {
		t.cut = n
		if id(n) == "divrplyfwdmsg" {
			// Outlook on the web puts an <hr> right above it.
			if p := prevElement(n); p != nil && p.DataAtom == atom.Hr {
				t.cut = p
			}
		}
		return
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		t.scan(c, depth+1)
	}
}

// countOnly counts the nodes below n without looking for markers.
func (t *trimmer) countOnly(n *html.Node, depth int) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		t.nodes++
		if t.nodes > maxNodes || depth > 512 {
			t.nodes = maxNodes + 1
			return
		}
		t.countOnly(c, depth+1)
	}
}

// prevElement returns the previous sibling element of n, skipping
// whitespace text and comments.
func prevElement(n *html.Node) *html.Node {
	for s := n.PrevSibling; s != nil; s = s.PrevSibling {
		switch s.Type {
		case html.ElementNode:
			return s
		case html.TextNode:
			if strings.TrimSpace(s.Data) != "" {
				return nil
			}
		}
	}
	return nil
}

// removeToEnd removes n and everything after it in document order.
func removeToEnd(n *html.Node) {
	for p := n; p != nil && p.Parent != nil; p = p.Parent {
		if p.DataAtom == atom.Body || p.DataAtom == atom.Html {
			break
		}
		for s := p.NextSibling; s != nil; {
			next := s.NextSibling
			p.Parent.RemoveChild(s)
			s = next
		}
	}
	if n.Parent != nil {
		n.Parent.RemoveChild(n)
	}
}

// quoteSpan is a quote element and the amount of visible text before
// it in document order.
type quoteSpan struct {
	n      *html.Node
	before int
}

// removeTrailingQuotes removes quote elements that have no visible
// content after them (other than further trailing quotes), and the
// attribution line just above the first of them.
func (t *trimmer) removeTrailingQuotes(doc *html.Node) bool {
	var spans []quoteSpan
	count := 0
	var walk func(*html.Node, int)
	walk = func(n *html.Node, depth int) {
		if depth > 512 {
			return
		}
		switch n.Type {
		case html.TextNode:
			count += visibleRunes(n.Data)
			return
		case html.ElementNode:
			switch n.DataAtom {
			case atom.Script, atom.Style, atom.Head, atom.Title:
				return
			case atom.Img:
				count++
				return
			}
			if (isQuoteElement(n) && !interleaved(n)) || n.DataAtom == atom.Blockquote && attributionLineBefore(n) {
				spans = append(spans, quoteSpan{n, count})
				return
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, depth+1)
		}
	}
	walk(doc, 0)
	after := count
	first := -1
	for k := len(spans) - 1; k >= 0; k-- {
		if spans[k].before != after {
			break
		}
		first = k
	}
	if first < 0 {
		return false
	}
	attribution := attributionBefore(spans[first].n)
	for _, s := range spans[first:] {
		if s.n.Parent != nil {
			s.n.Parent.RemoveChild(s.n)
		}
	}
	if attribution != nil && attribution.Parent != nil {
		attribution.Parent.RemoveChild(attribution)
	}
	return true
}

// attributionBefore returns the node holding an "On … wrote:" line
// right above a quote element, or nil.
func attributionBefore(n *html.Node) *html.Node {
	for s := n.PrevSibling; s != nil; s = s.PrevSibling {
		switch s.Type {
		case html.CommentNode:
			continue
		case html.TextNode:
			if strings.TrimSpace(s.Data) == "" {
				continue
			}
		case html.ElementNode:
			if s.DataAtom == atom.Br {
				continue
			}
		}
		raw := textOf(s, 3*maxLine)
		lines := 0
		for _, l := range strings.Split(raw, "\n") {
			if strings.TrimSpace(l) != "" {
				lines++
			}
		}
		// Only a node that holds nothing but the attribution goes; a
		// paragraph that ends with one keeps it, for TrimText to cut.
		txt := strings.Join(strings.Fields(raw), " ")
		if lines <= 3 && txt != "" && attributionEnd(strings.ToLower(txt), true) {
			return s
		}
		return nil
	}
	return nil
}

// interleaved reports whether a quote container (Gmail's
// div.gmail_quote) holds reply text below a blockquote inside it, as
// Gmail does for inline replies. Such a container is not removed as a
// whole; the blockquotes inside it are judged one by one.
func interleaved(n *html.Node) bool {
	if n.DataAtom == atom.Blockquote {
		return false
	}
	seenQuote := false
	found := false
	var walk func(*html.Node, int)
	walk = func(c *html.Node, depth int) {
		if found || depth > 512 {
			return
		}
		switch c.Type {
		case html.TextNode:
			if seenQuote && visibleRunes(c.Data) > 0 {
				found = true
			}
			return
		case html.ElementNode:
			if c.DataAtom == atom.Blockquote {
				seenQuote = true
				return
			}
		}
		for k := c.FirstChild; k != nil; k = k.NextSibling {
			walk(k, depth+1)
		}
	}
	walk(n, 0)
	return found
}

// attributionLineBefore reports whether the text right above n ends
// with an attribution line (Yandex and Mail.ru quote with a bare
// <blockquote> below "26.06.2014, 14:41, "Alex" <a@x>:").
func attributionLineBefore(n *html.Node) bool {
	for s := n.PrevSibling; s != nil; s = s.PrevSibling {
		if s.Type == html.CommentNode || s.Type == html.TextNode && strings.TrimSpace(s.Data) == "" ||
			s.Type == html.ElementNode && s.DataAtom == atom.Br {
			continue
		}
		txt := strings.TrimSpace(textOf(s, 4096))
		if i := strings.LastIndexByte(txt, '\n'); i >= 0 {
			txt = txt[i+1:]
		}
		txt = strings.Join(strings.Fields(txt), " ")
		return txt != "" && attributionEnd(strings.ToLower(txt), false)
	}
	return false
}

// visibleRunes counts the non-space runes of s.
func visibleRunes(s string) int {
	n := 0
	for _, r := range s {
		if !unicode.IsSpace(r) && r != '\u200b' && r != '\ufeff' && r != '\u200c' && r != '\u200d' {
			n++
		}
	}
	return n
}

// hasVisible reports whether the document still shows text or images.
func hasVisible(n *html.Node) bool {
	switch n.Type {
	case html.TextNode:
		return visibleRunes(n.Data) > 0
	case html.ElementNode:
		switch n.DataAtom {
		case atom.Script, atom.Style, atom.Head, atom.Title:
			return false
		case atom.Img:
			return true
		}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if hasVisible(c) {
			return true
		}
	}
	return false
}

// quoteHints are substrings (lower case) of which every quote marker
// the trimmer knows contains at least one. Most HTML mail is a new
// message with none of them; it is not parsed at all.
var quoteHints = []string{
	"<blockquote", "<hr", "border-top", "divrplyfwdmsg", "appendonsend", "olk_src_body_section", "gmail_",
	"moz-", "yahoo_quoted", "zmail_extra", "protonmail_quote", "isforwardcontent", "isreplycontent",
	"mail-editor-reference", "outlookmessageheader", "stopspelling", "zwchr",
}

// mayHaveQuote reports whether html contains any quote hint.
func mayHaveQuote(html string) bool {
	lower := strings.ToLower(html)
	for _, h := range quoteHints {
		if strings.Contains(lower, h) {
			return true
		}
	}
	return false
}
