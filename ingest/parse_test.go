package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestSafeFilename(t *testing.T) {
	long := strings.Repeat("é", 300) + ".pdf"
	tests := []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../etc/passwd", "_.._etc_passwd"},
		{`..\..\windows\win.ini`, "_.._windows_win.ini"},
		{".bashrc", "bashrc"},
		{"...", ""},
		{"  spaced  name .txt. ", "spaced  name .txt"},
		{"tab\there\x07bell\x00.txt", "tab herebell.txt"},
		{"gift\u202efdp.exe", "giftfdp.exe"},
		{"CON.txt", "_CON.txt"},
		{"bad\xffbyte.txt", "badbyte.txt"},
	}
	for _, tt := range tests {
		if got := SafeFilename(tt.in); got != tt.want {
			t.Errorf("SafeFilename(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	got := SafeFilename(long)
	if len(got) > 255 || !strings.HasSuffix(got, ".pdf") || !utf8.ValidString(got) {
		t.Errorf("long name: len %d, %q...", len(got), got[:20])
	}
}

func TestParseMessageIDs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"<a@b>", []string{"a@b"}},
		{"  < a@b >  ", []string{"a@b"}},
		{"a@b", []string{"a@b"}},
		{"<a@b> (Joe's message of Monday) <c@d>", []string{"a@b", "c@d"}},
		{"<a@b>,<c@d>\r\n\t<a@b>", []string{"a@b", "c@d"}},
		{`Your message of "Mon, 2 Mar" <x@y>`, []string{"x@y"}},
		{"bare@host <c@d> junk", []string{"bare@host", "c@d"}},
		{"<unclosed@id", []string{"unclosed@id"}},
		{"<>", []string{}},
		{"", []string{}},
	}
	for _, tt := range tests {
		if got := parseMessageIDs(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseMessageIDs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDecodeHeader(t *testing.T) {
	tests := []struct{ in, want string }{
		{"=?UTF-8?B?UsOpcG9uc2U=?=", "Réponse"},
		{"=?ISO-8859-1?Q?Andr=E9?=", "André"},
		{"=?ISO-8859-15?Q?15_=A4?=", "15 €"},
		{"=?windows-1252?Q?=93quoted=94?=", "“quoted”"},
		{"=?iso-8859-1?Q?a=96b?=", "a–b"}, // Latin-1 label, Windows-1252 data
		{"=?KOI8-R?B?8NLJ18XU?=", "Привет"},
		{"=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=", "こんにちは"},
		{"=?ISO-2022-JP?B?GyRCO3ZMMzZJGyhC==?=", "事務局"}, // surplus padding
		{"=?GB2312?B?t6LGsQ==?=", "发票"},
		{"=?big5?B?sGizZg==?=", "退貨"},
		{"=?utf-8?Q?two words?=", "two words"}, // blank inside a word
		{"=?unicode-1-1-utf-7?Q?+ANw-bermittlung?=", "Übermittlung"},
		{"=?utf-8?Q?a?= =?utf-8?Q?b?=", "ab"},
		{"plain\r\n\tfolded", "plain folded"},
	}
	for _, tt := range tests {
		if got := decodeHeader(tt.in, ""); got != tt.want {
			t.Errorf("decodeHeader(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Raw 8-bit bytes: UTF-8 when valid, else a declared charset.
	if got := decodeHeader("Probl\xe8me", ""); got != "Problème" {
		t.Errorf("raw latin-1: %q", got)
	}
	if got := decodeHeader("\xb7\xa2\xc6\xb1", "gb2312,iso-8859-1"); got != "发票" {
		t.Errorf("raw gb2312: %q", got)
	}
}

func TestParseAddressListTolerant(t *testing.T) {
	got, warns := parseAddressList("to", `"A, B" <a@x>, broken here, <c@x>; d@x`, "")
	want := []Address{{"A, B", "a@x"}, {"", "c@x"}, {"", "d@x"}}
	if !reflect.DeepEqual(got, want) || len(warns) != 1 {
		t.Errorf("got %v %q", got, warns)
	}
	got, _ = parseAddressList("from", "MAILER-DAEMON (Mail Delivery System)", "")
	if len(got) != 1 || got[0].Name != "Mail Delivery System" || got[0].Address != "MAILER-DAEMON" {
		t.Errorf("comment form: %v", got)
	}
}

func TestSanitizeHTMLRemovesHostileConstructs(t *testing.T) {
	in := `<html><head><base href="https://evil/"><meta http-equiv="refresh" content="0;url=https://evil/">
<style>body{background:url(https://t/x.png)}</style><script>alert(1)</script></head>
<body onload="x()"><a href="javascript:alert(1)">a</a><a href="JaVaScRiPt&#58;alert(2)">b</a>
<a href="data:text/html;base64,PHNjcmlwdD4=">c</a><img src=x onerror="alert(3)">
<img src="https://cdn.example/i.png"><img src="cid:part1"><img src="data:image/png;base64,iVBO">
<div style="background-image:url('https://t/p.gif');color:red">s</div><p style="color: expression(alert(4))">e</p>
<iframe src="https://evil/"></iframe><object data="x.swf"></object><embed src="x.swf"><form action="https://evil/"><input name="p"></form>
<svg onload="alert(5)"><use href="#x"/></svg><a href="https://ok.example/" onclick="alert(6)">ok</a></body></html>`
	out := strings.ToLower(sanitizeHTML(in))
	for _, bad := range []string{"<script", "alert(", "javascript", "onload", "onerror", "onclick", "<base", "<meta",
		"refresh", "url(", "expression", "<iframe", "<object", "<embed", "<form", "<input", "data:text", "<style", "<svg", "evil"} {
		if strings.Contains(out, bad) {
			t.Errorf("sanitized HTML still contains %q:\n%s", bad, out)
		}
	}
	for _, good := range []string{`src="https://cdn.example/i.png"`, `src="cid:part1"`, `src="data:image/png;base64,ivbo"`,
		`href="https://ok.example/"`, "color: red"} {
		if !strings.Contains(out, good) {
			t.Errorf("sanitized HTML lost %q:\n%s", good, out)
		}
	}
}

func TestHTMLToText(t *testing.T) {
	in := `<html><head><title>T</title><style>p{}</style></head><body><p>Hello&nbsp;&amp; welcome,</p>
<p>line one<br>line two</p><ul><li>first</li><li>second</li></ul><ol><li>uno</li><li>dos</li></ol>
<p>See <a href="https://example.org/doc">the doc</a> or <a href="https://example.org/">https://example.org/</a>,
mail <a href="mailto:a@b.example">a@b.example</a>.</p><script>var x = "hidden";</script>
<blockquote type="cite"><p>quoted</p></blockquote><pre>  keep   spaces
here</pre></body></html>`
	want := "Hello & welcome,\n\nline one\nline two\n\n- first\n- second\n\n1. uno\n2. dos\n\n" +
		"See the doc <https://example.org/doc> or https://example.org/, mail a@b.example.\n\n> quoted\n\n  keep   spaces\nhere"
	if got := htmlToText(in); got != want {
		t.Errorf("htmlToText:\n%s\n--- want\n%s", got, want)
	}
}

func TestDecodeFlowed(t *testing.T) {
	in := "This is \r\nflowed.\r\n> quoted \r\n> more\r\n \r\n-- \r\nsig\r\n"
	want := "This is flowed.\n> quoted more\n\n-- \nsig\n"
	if got := decodeFlowed(in, false); got != want {
		t.Errorf("flowed: %q, want %q", got, want)
	}
	if got := decodeFlowed("ab \r\ncd\r\n", true); got != "abcd\n" {
		t.Errorf("delsp: %q", got)
	}
}

func TestParseRejectsNonMail(t *testing.T) {
	for _, in := range []string{"", "   \r\n\r\n", "\x89PNG\r\n\x1a\n\x00\x00binary", "just some words\nwithout a header\n", "// not a mail\n"} {
		if _, err := Parse([]byte(in), ParseOptions{}); !errors.Is(err, ErrNotMail) {
			t.Errorf("Parse(%q) err = %v, want ErrNotMail", in, err)
		}
	}
}

func TestParseBounceDetails(t *testing.T) {
	raw, err := os.ReadFile(fixtureDir + "/bounce-postfix.eml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(raw, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := &Bounce{OriginalMessageID: "ticket-1200-1@acme.example", Recipients: []string{"no.such.user@customer.example"}, Status: "5.1.1", Permanent: true}
	if m.Kind != KindBounce || !reflect.DeepEqual(m.Bounce, want) {
		t.Errorf("bounce = %s %+v", m.Kind, m.Bounce)
	}
	raw, _ = os.ReadFile(fixtureDir + "/bounce-qmail-plain.eml")
	m, _ = Parse(raw, ParseOptions{})
	if m.Kind != KindBounce || m.Bounce.OriginalMessageID != "ticket-1410-2@acme.example" ||
		!reflect.DeepEqual(m.Bounce.Recipients, []string{"former.employee@oldhost.example"}) || m.Bounce.Status != "5.1.1" {
		t.Errorf("qmail bounce = %s %+v", m.Kind, m.Bounce)
	}
	raw, _ = os.ReadFile(fixtureDir + "/bounce-exchange.eml")
	m, _ = Parse(raw, ParseOptions{})
	if m.Kind != KindBounce || m.Bounce.OriginalMessageID != "ticket-1300-4@acme.example" || m.Bounce.Status != "5.1.10" {
		t.Errorf("exchange bounce = %s %+v", m.Kind, m.Bounce)
	}
}

func TestParseGeneratedIDIsStable(t *testing.T) {
	a := "Received: from a\r\nFrom: x@y\r\nSubject: s\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\nbody\r\n"
	b := "Received: from b\r\n" + a // another hop, same message
	ma, _ := Parse([]byte(a), ParseOptions{})
	mb, _ := Parse([]byte(b), ParseOptions{})
	if !ma.GeneratedID || ma.MessageID != mb.MessageID || !strings.HasSuffix(ma.MessageID, "@deskmail.invalid") {
		t.Errorf("generated ids %q %q", ma.MessageID, mb.MessageID)
	}
	mc, _ := Parse([]byte(strings.Replace(a, "body", "other", 1)), ParseOptions{})
	if mc.MessageID == ma.MessageID {
		t.Error("different bodies got the same generated id")
	}
}

// checkInvariants asserts what every parse result must satisfy.
func checkInvariants(t testing.TB, m *Message) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	for _, k := range []string{"message_id", "in_reply_to", "references", "from", "reply_to", "to", "cc", "subject",
		"date", "text", "html", "reply_text", "attachments", "kind", "warnings"} {
		v, ok := back[k]
		if !ok {
			t.Fatalf("key %q missing", k)
		}
		switch k {
		case "in_reply_to", "references", "reply_to", "to", "cc", "attachments", "warnings":
			if v == nil {
				t.Fatalf("key %q is null, want []", k)
			}
		}
	}
	strs := []string{m.MessageID, m.Subject, m.Text, m.HTML, m.ReplyText}
	strs = append(strs, m.InReplyTo...)
	strs = append(strs, m.References...)
	strs = append(strs, m.Warnings...)
	for _, l := range [][]Address{m.To, m.Cc, m.ReplyTo} {
		for _, a := range l {
			strs = append(strs, a.Name, a.Address)
		}
	}
	if m.From != nil {
		strs = append(strs, m.From.Name, m.From.Address)
	}
	for _, a := range m.Attachments {
		strs = append(strs, a.Filename, a.ContentType, a.ContentID)
		if len(a.Filename) > 255 || a.Filename == "" || strings.ContainsAny(a.Filename, "/\\\x00") || strings.HasPrefix(a.Filename, ".") {
			t.Errorf("unsafe filename %q", a.Filename)
		}
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			t.Errorf("invalid UTF-8 in %q", s)
		}
	}
	if m.MessageID == "" {
		t.Error("empty message id")
	}
}

func TestParseFixturesInvariants(t *testing.T) {
	for _, path := range fixtureFiles(t) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(raw, ParseOptions{})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		checkInvariants(t, m)
	}
}

// TestParseAttachmentLimit: an attachment larger than
// ParseOptions.MaxAttachmentBytes is left out with a warning; one at
// the limit is kept whole.
func TestParseAttachmentLimit(t *testing.T) {
	raw := "From: a@example.com\r\nTo: support@example.com\r\nSubject: files\r\nMessage-ID: <lim@example.com>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nTwo files.\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=small.pdf\r\n\r\n0123456789\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=big.pdf\r\n\r\n0123456789A\r\n--b--\r\n"
	m, err := Parse([]byte(raw), ParseOptions{MaxAttachmentBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != "small.pdf" || m.Attachments[0].Size != 10 {
		t.Fatalf("attachments: %+v", m.Attachments)
	}
	if !strings.Contains(strings.Join(m.Warnings, "\n"), `"big.pdf" (application/pdf, 11 bytes) is larger than max_attachment_bytes (10)`) {
		t.Errorf("warnings: %q", m.Warnings)
	}
	if m, _ := Parse([]byte(raw), ParseOptions{}); len(m.Attachments) != 2 {
		t.Errorf("no limit: %d attachments", len(m.Attachments))
	}
}

// deepMail nests n multiparts with one text part at the bottom.
func deepMail(n int) []byte {
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i-1, i)
	}
	fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\nDeepest text.\r\n--b%d--\r\n", n-1, n-1)
	for i := n - 2; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return []byte(b.String())
}

// TestParseDeepNesting: nesting within the limit is parsed whole;
// deeper nesting keeps the deepest text with a warning, and 20,000
// levels (1.3 MB) parse in 0.1 s (without the limit the cost grows
// with the square of the depth: 15 s, and ten times that under -race;
// the bound below leaves room for -race on a loaded machine).
func TestParseDeepNesting(t *testing.T) {
	for _, n := range []int{maxDepth, maxDepth + 2, 20000} {
		start := time.Now()
		m, err := Parse(deepMail(n), ParseOptions{})
		if err != nil {
			t.Fatalf("%d levels: %v", n, err)
		}
		took := time.Since(start)
		warned := strings.Contains(strings.Join(m.Warnings, "\n"), "nested deeper than")
		if m.Text != "Deepest text." || warned != (n > maxDepth) {
			t.Errorf("%d levels: text %q, warnings %q", n, m.Text, m.Warnings)
		}
		if took > 20*time.Second {
			t.Errorf("%d levels took %v", n, took)
		}
	}
}
