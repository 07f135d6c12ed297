package html

import (
	"strings"
	"testing"
)

// TestTagNameAttrInPlace (deskmail's copy): TagName and TagAttr give
// the same names and values whether or not they had to copy (a NUL
// replaced by U+FFFD) or worked in the tokenizer's buffer.
func TestTagNameAttrInPlace(t *testing.T) {
	for _, c := range []struct{ in, name, key, val string }{
		{`<DIV CLASS="X&amp;Y">`, "div", "class", "X&Y"},
		{"<A\x00B C\x00=\"d\x00&lt;\">", "a\ufffdb", "c\ufffd", "d\ufffd<"},
		{`<img SRC='a&#65;b'/>`, "img", "src", "aAb"},
	} {
		z := NewTokenizer(strings.NewReader(c.in))
		z.Next()
		name, hasAttr := z.TagName()
		if string(name) != c.name || !hasAttr {
			t.Errorf("%q: TagName = %q, %v; want %q, true", c.in, name, hasAttr, c.name)
			continue
		}
		key, val, _ := z.TagAttr()
		if string(key) != c.key || string(val) != c.val {
			t.Errorf("%q: TagAttr = %q, %q; want %q, %q", c.in, key, val, c.key, c.val)
		}
		tok := NewTokenizer(strings.NewReader(c.in))
		tok.Next()
		if got := tok.Token(); got.Data != c.name || len(got.Attr) != 1 || got.Attr[0].Key != c.key || got.Attr[0].Val != c.val {
			t.Errorf("%q: Token = %+v", c.in, got)
		}
	}
}
