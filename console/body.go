package console

import (
	"bytes"
	"html/template"
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
)

// mailBody renders a conversation's HTML body for the ticket page:
// sanitized again with the ingest policy, then
//   - an <img> of a cid: part shows the stored inline attachment;
//   - any other image (remote, data:) is not loaded: it becomes a
//     link to it, opened only when the agent clicks (img-src 'self'
//     would refuse it anyway);
//   - quoted history (<blockquote>, Gmail's and Outlook's quote
//     blocks) is folded in <details>;
//   - every link opens in a new window without a referrer;
//   - ids get a "mail-" prefix and classes are dropped, so the mail
//     cannot pass for the console's own elements.
//
// What comes out is built from the sanitized tree, so it holds no
// script, handler, style element or javascript: URL.
func mailBody(lang, body string, files []store.Attachment) template.HTML {
	clean := ingest.SanitizeHTML(body)
	if clean == "" {
		return ""
	}
	ctx := &html.Node{Type: html.ElementNode, DataAtom: atom.Div, Data: "div"}
	nodes, err := html.ParseFragment(strings.NewReader(clean), ctx)
	if err != nil {
		return template.HTML(template.HTMLEscapeString(clean))
	}
	cids := map[string]int64{}
	for _, f := range files {
		if f.ContentID != "" && strings.HasPrefix(strings.ToLower(f.ContentType), "image/") {
			cids[strings.Trim(strings.ToLower(f.ContentID), "<>")] = f.ID
		}
	}
	root := &html.Node{Type: html.ElementNode, DataAtom: atom.Div, Data: "div"}
	for _, n := range nodes {
		root.AppendChild(n)
	}
	rewrite(root, lang, cids)
	var buf bytes.Buffer
	for n := root.FirstChild; n != nil; n = n.NextSibling {
		if err := html.Render(&buf, n); err != nil {
			return template.HTML(template.HTMLEscapeString(clean))
		}
	}
	// The tree comes from the sanitizer's output and gained only the
	// elements added above.
	return template.HTML(buf.String())
}

// rewrite walks the tree iteratively (deep mail cannot exhaust the
// stack).
func rewrite(root *html.Node, lang string, cids map[string]int64) {
	stack := []*html.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Type == html.ElementNode {
			quote := isQuote(n)
			ownAttrs(n)
			switch {
			case n.DataAtom == atom.Img:
				if replaced := image(n, lang, cids); replaced != nil {
					n = replaced
				}
			case n.DataAtom == atom.A:
				setAttr(n, "target", "_blank")
				setAttr(n, "rel", "nofollow noopener noreferrer")
			case quote:
				n = fold(n, lang)
			}
		}
		for ch := n.LastChild; ch != nil; ch = ch.PrevSibling {
			stack = append(stack, ch)
		}
	}
}

// ownAttrs keeps the mail's ids and classes from meeting the page's:
// ids get a "mail-" prefix (no clobbering of #reply, #csrf…), classes
// are dropped (no mail styled as the console's own notices).
func ownAttrs(n *html.Node) {
	out := n.Attr[:0]
	for _, a := range n.Attr {
		switch strings.ToLower(a.Key) {
		case "class":
			continue
		case "id", "name":
			a.Val = "mail-" + a.Val
		}
		out = append(out, a)
	}
	n.Attr = out
}

// image shows a cid: image from its attachment and turns any other
// into a link; it returns the node that replaced n, if any.
func image(n *html.Node, lang string, cids map[string]int64) *html.Node {
	src := strings.TrimSpace(attrOf(n, "src"))
	if low := strings.ToLower(src); strings.HasPrefix(low, "cid:") {
		if id, ok := cids[strings.Trim(low[4:], "<>")]; ok {
			setAttr(n, "src", "/attachments/"+strconv.FormatInt(id, 10))
			return nil
		}
		delAttr(n, "src")
		return nil
	}
	label := translate(lang, "remote.image")
	if alt := strings.TrimSpace(attrOf(n, "alt")); alt != "" {
		label += ": " + alt
	}
	var link *html.Node
	if strings.HasPrefix(strings.ToLower(src), "https://") || strings.HasPrefix(strings.ToLower(src), "http://") {
		link = &html.Node{Type: html.ElementNode, DataAtom: atom.A, Data: "a", Attr: []html.Attribute{
			{Key: "href", Val: src}, {Key: "class", Val: "remote-image"}, {Key: "target", Val: "_blank"},
			{Key: "rel", Val: "nofollow noopener noreferrer"}}}
	} else {
		link = &html.Node{Type: html.ElementNode, DataAtom: atom.Span, Data: "span", Attr: []html.Attribute{{Key: "class", Val: "remote-image"}}}
	}
	link.AppendChild(&html.Node{Type: html.TextNode, Data: "[" + label + "]"})
	n.Parent.InsertBefore(link, n)
	n.Parent.RemoveChild(n)
	return link
}

// isQuote reports whether n holds quoted history.
func isQuote(n *html.Node) bool {
	if n.DataAtom == atom.Blockquote {
		return true
	}
	if n.DataAtom != atom.Div {
		return false
	}
	class := " " + attrOf(n, "class") + " "
	id := attrOf(n, "id")
	return strings.Contains(class, " gmail_quote ") || strings.Contains(class, " moz-cite-prefix ") ||
		id == "divRplyFwdMsg" || id == "appendonsend" || strings.Contains(class, " yahoo_quoted ")
}

// fold wraps n in <details><summary>Quoted text</summary>…</details>
// and returns n (whose children are walked on).
func fold(n *html.Node, lang string) *html.Node {
	if p := n.Parent; p != nil && p.DataAtom == atom.Details {
		return n
	}
	d := &html.Node{Type: html.ElementNode, DataAtom: atom.Details, Data: "details", Attr: []html.Attribute{{Key: "class", Val: "quoted"}}}
	sum := &html.Node{Type: html.ElementNode, DataAtom: atom.Summary, Data: "summary"}
	sum.AppendChild(&html.Node{Type: html.TextNode, Data: translate(lang, "quoted")})
	n.Parent.InsertBefore(d, n)
	n.Parent.RemoveChild(n)
	d.AppendChild(sum)
	d.AppendChild(n)
	return n
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && strings.EqualFold(a.Key, key) {
			return a.Val
		}
	}
	return ""
}

func setAttr(n *html.Node, key, val string) {
	for i, a := range n.Attr {
		if a.Namespace == "" && strings.EqualFold(a.Key, key) {
			n.Attr[i].Val = val
			return
		}
	}
	n.Attr = append(n.Attr, html.Attribute{Key: key, Val: val})
}

func delAttr(n *html.Node, key string) {
	out := n.Attr[:0]
	for _, a := range n.Attr {
		if !strings.EqualFold(a.Key, key) {
			out = append(out, a)
		}
	}
	n.Attr = out
}

// textBody splits a plain-text conversation into the new text and the
// rest (quoted history, signature), which the page folds.
func textBody(c *store.Conversation) (visible, rest string) {
	full := strings.TrimSpace(c.BodyText)
	reply := strings.TrimSpace(c.ReplyText)
	if reply == "" || reply == full {
		return full, ""
	}
	if strings.HasPrefix(full, reply) {
		return reply, strings.TrimSpace(full[len(reply):])
	}
	return reply, full
}
