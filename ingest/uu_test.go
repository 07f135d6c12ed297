package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUUEncodedFiles: a uuencoded file inline in the text and a part
// sent with Content-Transfer-Encoding x-uuencode become attachments
// with their exact bytes, and the text keeps the words around them.
func TestUUEncodedFiles(t *testing.T) {
	for _, tc := range []struct {
		fixture, name, ctype, sha, textHas string
	}{
		{"uuencode-inline.eml", "report.pdf", "application/pdf", "46de88e5db53382b21d076fcffa8415065b52c3d98813859069031e0ea8c99ba", "the report is attached below."},
		{"uuencode-part.eml", "orders.csv", "text/csv", "4b346495fe81b3f376f6f05d7cc3673ace51d4362d6561ccdd46e49780b413c7", "The orders file is attached."},
	} {
		raw, err := os.ReadFile(filepath.Join("..", "fixtures", "parse", tc.fixture))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(raw, ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Attachments) != 1 {
			t.Fatalf("%s: %d attachments", tc.fixture, len(m.Attachments))
		}
		a := m.Attachments[0]
		sum := sha256.Sum256(a.Content)
		if a.Filename != tc.name || a.ContentType != tc.ctype || hex.EncodeToString(sum[:]) != tc.sha || a.Size != len(a.Content) {
			t.Errorf("%s: attachment %q %s %d bytes sha %x", tc.fixture, a.Filename, a.ContentType, a.Size, sum)
		}
		if !strings.Contains(m.Text, tc.textHas) || strings.Contains(m.Text, "begin 644") || strings.Contains(m.Text, "\nend\n") {
			t.Errorf("%s: text %q", tc.fixture, m.Text)
		}
		for _, w := range m.Warnings {
			if strings.Contains(w, "Content-Transfer-Encoding") {
				t.Errorf("%s: warning %q after decoding", tc.fixture, w)
			}
		}
	}
}
