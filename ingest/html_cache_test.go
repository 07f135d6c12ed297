package ingest

import (
	"strings"
	"testing"
)

// TestSanitizeStyleCache: the patched bluemonday remembers sanitized
// style attributes; a remembered result must be the same as a fresh
// one, and a hostile value must be refused every time.
func TestSanitizeStyleCache(t *testing.T) {
	doc := `<p style="margin:0cm;font-family:Calibri;background:url(https://evil.example/x.png)">a</p>` +
		`<p style="color:red;width:expression(alert(1))">b</p>` +
		`<p style="margin:0cm;font-family:Calibri;background:url(https://evil.example/x.png)">c</p>`
	first := sanitizeHTML(doc)
	for i := 0; i < 3; i++ {
		if got := sanitizeHTML(doc); got != first {
			t.Fatalf("run %d differs:\n%s\n%s", i, got, first)
		}
	}
	for _, bad := range []string{"url(", "expression", "evil.example"} {
		if strings.Contains(first, bad) {
			t.Fatalf("%q survived: %s", bad, first)
		}
	}
	if !strings.Contains(first, "font-family: Calibri") || !strings.Contains(first, "color: red") {
		t.Fatalf("safe properties lost: %s", first)
	}
}
