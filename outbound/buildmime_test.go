package outbound

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

// TestBuildAlternativeMatchesMessageWriter compares buildMIME with the
// way it wrote every mail before buildAlternative (message.CreateWriter
// and CreatePart for each part, buildMIMEReference below) on random
// headers and bodies: plain and non-ASCII text, long lines and long
// words, trailing white space, '=', CR, CRLF and bare LF, empty parts.
// The bytes must be the same, with or without attachments.
func TestBuildAlternativeMatchesMessageWriter(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 15))
	pieces := []string{"a", "word", "Bonjour", "é", "ü", "日本", "=", "==", " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n\n",
		"-- \n", ".", "..\n", "<p>", "</p>", "&amp;", strings.Repeat("x", 80), strings.Repeat("y", 200), "=_dm", "\x00", "\xff", "\u00a0"}
	body := func() string {
		var b strings.Builder
		for range r.IntN(400) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	names := []string{"", "Customer 5", "Zoë Ünderwood", "A \"quoted\" name", strings.Repeat("Long Name ", 12), "日本語の名前"}
	for i := range 3000 {
		var h mail.Header
		h.SetDate(time.Date(2026, 3, 2, 14, 5, i%60, 0, time.UTC))
		msgID := "deskmail.t" + strings.Repeat("1", 1+i%5) + ".abc@deskmail.test"
		h.SetMessageID(msgID)
		h.SetSubject(body())
		h.SetAddressList("From", []*mail.Address{{Name: names[r.IntN(len(names))], Address: "support@acme.test"}})
		h.SetAddressList("To", []*mail.Address{{Name: names[r.IntN(len(names))], Address: "alice@acme.test"}})
		if r.IntN(2) == 0 {
			h.SetMsgIDList("In-Reply-To", []string{"bench-5@client21.test"})
		}
		h.SetMsgIDList("References", []string{"bench-5@client21.test", "deskmail.t5.maekiq33gltfnjzy@deskmail.acme.test"})
		h.Set("Auto-Submitted", "auto-replied")
		h.Set("Content-Language", "fr")
		text, html := body(), body()
		var files []file
		if i%10 == 0 {
			files = []file{{name: "a.txt", contentType: "text/plain", data: []byte(body())}}
		}
		got, err := buildMIME(h, msgID, text, html, files)
		if err != nil {
			t.Fatal(err)
		}
		want, err := buildMIMEReference(h, msgID, text, html, files)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("mail %d differs:\n--- got\n%q\n--- want\n%q", i, got, want)
		}
	}
}

// buildMIMEReference is buildMIME as it was before buildAlternative:
// message writers for every part.
func buildMIMEReference(h mail.Header, msgID, text, html string, files []file) ([]byte, error) {
	sum := sha256.Sum256([]byte(msgID))
	bnd := "=_dm" + hex.EncodeToString(sum[:10])
	// Room for the usual mail at once: quoted-printable text (a tenth
	// more than the text, for soft line breaks and a few escapes), the
	// headers, and base64 attachments; growing the buffer as the parts
	// are written copied each mail's bytes several times.
	size := (len(text)+len(html))*11/10 + 2048
	for _, f := range files {
		size += len(f.data)*4/3 + len(f.data)/38 + 512
	}
	var buf bytes.Buffer
	buf.Grow(size)
	var alt *message.Writer
	var mixed *message.Writer
	var err error
	// go-message writes header fields last-added first; build the top
	// header so that fields come out in the order they were set, with
	// MIME-Version and Content-Type at the end.
	var top message.Header
	if len(files) > 0 {
		top.SetContentType("multipart/mixed", map[string]string{"boundary": bnd + "_m"})
	} else {
		top.SetContentType("multipart/alternative", map[string]string{"boundary": bnd + "_a"})
	}
	top.Set("MIME-Version", "1.0")
	for f := h.Fields(); f.Next(); { // Fields runs in written order
		top.Add(f.Key(), f.Value())
	}
	if len(files) > 0 {
		if mixed, err = message.CreateWriter(&buf, top); err != nil {
			return nil, err
		}
		var ah message.Header
		ah.SetContentType("multipart/alternative", map[string]string{"boundary": bnd + "_a"})
		if alt, err = mixed.CreatePart(ah); err != nil {
			return nil, err
		}
	} else if alt, err = message.CreateWriter(&buf, top); err != nil {
		return nil, err
	}
	for _, p := range []struct{ ct, body string }{{"text/plain", text}, {"text/html", html}} {
		var ph message.Header
		ph.SetContentType(p.ct, map[string]string{"charset": "utf-8"})
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := alt.CreatePart(ph)
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(w, p.body); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	}
	if err := alt.Close(); err != nil {
		return nil, err
	}
	if mixed != nil {
		for _, f := range files {
			var ah mail.AttachmentHeader
			ct := f.contentType
			if ct == "" || !strings.Contains(ct, "/") {
				ct = "application/octet-stream"
			}
			ah.SetContentType(ct, map[string]string{"name": f.name})
			disp := "attachment"
			if f.inline && f.contentID != "" {
				disp = "inline"
				ah.Set("Content-Id", "<"+strings.Trim(f.contentID, "<>")+">")
			}
			ah.SetContentDisposition(disp, map[string]string{"filename": f.name})
			ah.Set("Content-Transfer-Encoding", "base64")
			w, err := mixed.CreatePart(ah.Header)
			if err != nil {
				return nil, err
			}
			if _, err := w.Write(f.data); err != nil {
				return nil, err
			}
			if err := w.Close(); err != nil {
				return nil, err
			}
		}
		if err := mixed.Close(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// TestCleanTextMatchesReference compares cleanText with the split,
// join and regular expression it replaced (cleanTextReference) on
// random text of spaces, tabs, CR, LF, the signature separator and
// non-ASCII white space.
func TestCleanTextMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	pieces := []string{"a", "é", " ", "\t", "\n", "\r", "\r\n", "\r\r\n", "-- ", "--", "-- \t", "\u00a0", "\u2003", "\v", "\f", "x y", "\n\n\n\n"}
	for i := range 200000 {
		var b strings.Builder
		for range r.IntN(30) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := b.String()
		if got, want := cleanText([]byte(s)), cleanTextReference(s); got != want {
			t.Fatalf("case %d %q: got %q, want %q", i, s, got, want)
		}
	}
}

var blankLinesReference = regexp.MustCompile(`\n{3,}`)

func cleanTextReference(s string) string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for i, l := range lines {
		if l != "-- " {
			lines[i] = strings.TrimRight(l, " \t")
		}
	}
	s = strings.Join(lines, "\n")
	s = blankLinesReference.ReplaceAllString(s, "\n\n")
	return strings.TrimSpace(s) + "\n"
}

// TestNeedsSpaceCleanup checks that finalSubject skips the regular
// expression only where it would change nothing: on random strings of
// spaces, tabs, newlines, form feeds, CRs, vertical tabs, non-ASCII
// spaces and letters, needsSpaceCleanup is false only when
// spaces.ReplaceAllString returns its input.
func TestNeedsSpaceCleanup(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 11))
	pieces := []string{" ", "  ", "\t", "\n", "\f", "\r", "\v", "\u00a0", "\u2003", "a", "é", "[#12]"}
	for i := range 100000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := b.String()
		same := spaces.ReplaceAllString(s, " ") == s
		if needsSpaceCleanup(s) == same {
			t.Fatalf("case %d %q: needsSpaceCleanup %v, regexp leaves it unchanged: %v", i, s, !same, same)
		}
	}
}
