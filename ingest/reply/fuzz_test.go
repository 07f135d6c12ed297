package reply

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func addFixtures(f *testing.F, ext string) {
	paths, _ := filepath.Glob(filepath.Join(fixtureDir, "*"+ext))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
}

func FuzzTrimText(f *testing.F) {
	addFixtures(f, ".txt")
	f.Add("> a\n-- \nOn 1 <\n>:\n")
	f.Fuzz(func(t *testing.T, in string) {
		out := TrimText(in)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of %q", in)
		}
		limit := len(in)
		if !utf8.ValidString(in) {
			limit = 3 * len(in) // each bad byte may become U+FFFD
		}
		if len(out) > limit {
			t.Fatalf("output longer than input: %d > %d", len(out), limit)
		}
		if out == "" {
			norm := strings.ReplaceAll(strings.ToValidUTF8(in, "\uFFFD"), "\r", "\n")
			for _, l := range strings.Split(norm, "\n") {
				if !isBlank(l) {
					t.Fatalf("empty result for non-blank input %q", in)
				}
			}
		}
	})
}

func FuzzTrimHTML(f *testing.F) {
	addFixtures(f, ".html")
	f.Add(`<div>a</div><blockquote type=cite>b</blockquote>`)
	f.Fuzz(func(t *testing.T, in string) {
		out, removed := TrimHTML(in)
		if !removed {
			if out != in {
				t.Fatalf("changed without removal: %q -> %q", in, out)
			}
			return
		}
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of %q", in)
		}
		// Rendering escapes "&" and quotes, so markup may grow; the
		// visible text never does.
		if len(out) > 6*len(in)+128 {
			t.Fatalf("output too long: %d for %d", len(out), len(in))
		}
		if vi, vo := visibleRunes(visibleText(t, in)), visibleRunes(visibleText(t, out)); vo > vi {
			t.Fatalf("visible text grew: %d > %d for %q -> %q", vo, vi, in, out)
		}
	})
}
