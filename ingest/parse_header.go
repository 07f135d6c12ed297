package ingest

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cention-sany/utf7"
	"github.com/emersion/go-message/charset"
	"github.com/jhillyerd/enmime/v2"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"

	"github.com/deskmail/deskmail/internal/lazyregexp"
)

// wordDecoder decodes RFC 2047 encoded words in any charset go-message
// knows (ISO-8859-x, Windows-125x, KOI8-R, ISO-2022-JP, GB2312/GBK,
// Big5, ...).
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// charsetReader wraps charset.Reader, mapping labels that mailers use
// but the IANA index does not know to their usual meaning.
func charsetReader(label string, input io.Reader) (io.Reader, error) {
	l := strings.ToLower(strings.Trim(strings.TrimSpace(label), `"'`))
	switch l {
	case "gb2312", "x-gbk", "cp936", "csgb2312", "euc-cn":
		l = "gbk" // GB2312 mail is routinely GBK in practice.
	case "ks_c_5601-1987":
		l = "euc-kr"
	case "x-unknown", "unknown-8bit", "x-user-defined", "default", "unknown":
		l = "windows-1252"
	case "utf8", "x-utf8":
		l = "utf-8"
	case "utf-7", "utf7", "unicode-1-1-utf-7", "csunicode11utf7", "x-utf-7":
		return utf7.UTF7.NewDecoder().Reader(input), nil
	case "iso-2022-jp", "csiso2022jp", "iso-2022-jp-2", "iso-2022-jp-3":
		// Japanese mailers often label Shift_JIS or EUC-JP bytes as
		// ISO-2022-JP (a 7-bit charset); 8-bit data gives them away.
		b, err := io.ReadAll(input)
		if err != nil {
			return nil, fmt.Errorf("charset %q: %w", label, err)
		}
		return bytes.NewReader([]byte(decodeJapanese(b))), nil
	case "latin1", "iso-8859-1", "iso8859-1", "us-ascii", "ascii":
		// Mail that says Latin-1 or ASCII is Windows-1252 in the wild
		// (the WHATWG rule); it is a superset of the printable range.
		l = "windows-1252"
	}
	r, err := charset.Reader(l, input)
	if err != nil {
		return nil, fmt.Errorf("charset %q: %w", label, err)
	}
	return r, nil
}

// decodeJapanese decodes bytes labelled ISO-2022-JP: as such when
// 7-bit, else as Shift_JIS or EUC-JP, whichever decodes cleanly.
func decodeJapanese(b []byte) string {
	eight := false
	for _, c := range b {
		if c >= 0x80 {
			eight = true
			break
		}
	}
	if !eight {
		if out, err := japanese.ISO2022JP.NewDecoder().Bytes(b); err == nil {
			return string(out)
		}
	}
	for _, enc := range []encoding.Encoding{japanese.ShiftJIS, japanese.EUCJP} {
		if out, err := enc.NewDecoder().Bytes(b); err == nil && !bytes.ContainsRune(out, utf8.RuneError) {
			return string(out)
		}
	}
	out, _ := japanese.ShiftJIS.NewDecoder().Bytes(b)
	return strings.ToValidUTF8(string(out), "\uFFFD")
}

// decodeCharset converts b from the named charset to UTF-8. It reports
// false when the charset is unknown.
func decodeCharset(label string, b []byte) (string, bool) {
	r, err := charsetReader(label, bytes.NewReader(b))
	if err != nil {
		return "", false
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return "", false
	}
	return string(out), true
}

// toUTF8 returns s as valid UTF-8. Raw 8-bit header bytes are UTF-8
// (RFC 6532) when they validate, ISO-2022-JP when they carry its escape
// sequences, and otherwise are read in the first of the message's
// declared charsets (fallback, a comma-separated list; multi-byte ones
// first) that decodes them cleanly, else Windows-1252.
func toUTF8(s, fallback string) string {
	if strings.Contains(s, "\x1b$B") || strings.Contains(s, "\x1b$@") || strings.Contains(s, "\x1b(J") {
		if out, err := japanese.ISO2022JP.NewDecoder().String(s); err == nil {
			return out
		}
	}
	if utf8.ValidString(s) {
		return s
	}
	for _, cs := range strings.Split(fallback, ",") {
		if cs == "" || strings.EqualFold(cs, "utf-8") {
			continue
		}
		if out, ok := decodeCharset(cs, []byte(s)); ok && utf8.ValidString(out) && !strings.ContainsRune(out, utf8.RuneError) {
			return out
		}
	}
	out, err := charmap.Windows1252.NewDecoder().String(s)
	if err != nil {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return out
}

// decodeHeader decodes RFC 2047 encoded words in a header value and
// unfolds it. Malformed words are left as they are.
func decodeHeader(v, fallback string) string {
	v = toUTF8(v, fallback)
	if strings.Contains(v, "=?") {
		if d, err := wordDecoder.DecodeHeader(fixEncodedWords(v)); err == nil {
			v = d
		} else if d, err := wordDecoder.DecodeHeader(v); err == nil {
			v = d
		}
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	v = strings.Map(func(r rune) rune {
		if r >= 0x80 && r <= 0x9f {
			// C1 controls: Windows-1252 read as ISO-8859-1 (Go's
			// decoder handles that label itself).
			if d := charmap.Windows1252.DecodeByte(byte(r)); d != utf8.RuneError {
				return d
			}
			return -1
		}
		if r == '\r' || r == '\n' {
			return -1 // unfold
		}
		if r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
	return strings.TrimSpace(v)
}

// badEncodedWord finds encoded words that contain blanks, which some
// mailers emit and RFC 2047 forbids (=?utf-8?Q?a b?=).
var badEncodedWord = lazyregexp.New(`=\?[^?\s]+\?[qQbB]\?[^?]*\?=`)

// fixEncodedWords replaces blanks inside encoded words by underscores
// (Q) or drops them (B) so the standard decoder accepts them.
func fixEncodedWords(v string) string {
	return badEncodedWord.ReplaceAllStringFunc(v, func(w string) string {
		parts := strings.SplitN(w, "?", 5)
		if len(parts) != 5 {
			return w
		}
		if strings.EqualFold(parts[2], "q") {
			parts[3] = strings.ReplaceAll(parts[3], " ", "_")
		} else {
			// Drop blanks and surplus padding ("GyhC==" where the
			// data ends on a quantum).
			b := strings.TrimRight(strings.ReplaceAll(parts[3], " ", ""), "=")
			if r := len(b) % 4; r != 0 {
				b += strings.Repeat("=", 4-r)
			}
			parts[3] = b
		}
		return strings.Join(parts, "?")
	})
}

// addressParser decodes encoded words in display names with the same
// charset tables as other headers.
var addressParser = &mail.AddressParser{WordDecoder: wordDecoder}

// parseAddressList parses an address header tolerantly: what parses is
// kept, and a warning says what did not.
func parseAddressList(field, raw, fallback string) ([]Address, []string) {
	raw = strings.TrimSpace(toUTF8(raw, fallback))
	if raw == "" {
		return []Address{}, nil
	}
	if list, err := addressParser.ParseList(raw); err == nil {
		return convertAddresses(list), nil
	}
	if list, err := enmime.ParseAddressList(raw); err == nil {
		return convertAddresses(list), nil
	}
	// Fall back to one address at a time.
	var out []Address
	var bad []string
	for _, piece := range splitAddressList(raw) {
		piece = strings.TrimSpace(piece)
		if piece == "" || piece == ";" {
			continue
		}
		if list, err := addressParser.ParseList(piece); err == nil {
			out = append(out, convertAddresses(list)...)
			continue
		}
		if list, err := enmime.ParseAddressList(piece); err == nil {
			out = append(out, convertAddresses(list)...)
			continue
		}
		if a, ok := salvageAddress(piece); ok {
			out = append(out, a)
			continue
		}
		bad = append(bad, piece)
	}
	var warnings []string
	if len(bad) > 0 {
		warnings = append(warnings, fmt.Sprintf("%s: unparseable address %q", field, strings.Join(bad, ", ")))
	} else {
		warnings = append(warnings, fmt.Sprintf("%s: malformed address list repaired", field))
	}
	if out == nil {
		out = []Address{}
	}
	return out, warnings
}

func convertAddresses(list []*mail.Address) []Address {
	out := make([]Address, 0, len(list))
	for _, a := range list {
		if a == nil {
			continue
		}
		addr := strings.Trim(strings.TrimSpace(a.Address), "<>")
		if addr == "" {
			continue
		}
		name := decodeHeader(a.Name, "")
		if strings.EqualFold(strings.Trim(name, `"' `), addr) {
			name = ""
		}
		out = append(out, Address{Name: strings.Trim(name, `"`), Address: addr})
	}
	return out
}

// splitAddressList splits at commas and semicolons outside quotes,
// comments and angle brackets.
func splitAddressList(s string) []string {
	var parts []string
	var quoted bool
	depthParen, depthAngle := 0, 0
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '(':
			depthParen++
		case c == ')' && depthParen > 0:
			depthParen--
		case c == '<':
			depthAngle++
		case c == '>' && depthAngle > 0:
			depthAngle--
		case (c == ',' || c == ';') && depthParen == 0 && depthAngle == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

var (
	angleAddr   = lazyregexp.New(`<\s*([^<>@]+@[^<>\s]+?)\s*>`)
	quotedLocal = lazyregexp.New(`"([^"@]+)"@([A-Za-z0-9.-]+\.[A-Za-z]{2,})`)
	commentAddr = lazyregexp.New(`^\s*([^\s@<>()",;]+(?:@[^\s<>()",;]+)?)\s*\(([^()]*)\)\s*$`)
	bareAddr    = lazyregexp.New(`[^\s<>()",;:\[\]]+@[^\s<>()",;:\[\]]+`)
)

// salvageAddress pulls an address out of a piece the parser refused:
// `Name <user@host>` with junk in the name, or a bare user@host.
func salvageAddress(piece string) (Address, bool) {
	if m := angleAddr.FindStringSubmatchIndex(piece); m != nil {
		name := strings.TrimSpace(piece[:m[0]])
		name = strings.Trim(name, `"' `)
		name = decodeHeader(name, "")
		addr := strings.Join(strings.Fields(piece[m[2]:m[3]]), "")
		return Address{Name: name, Address: strings.Trim(addr, `"`)}, true
	}
	if m := quotedLocal.FindStringSubmatch(piece); m != nil {
		return Address{Address: strings.Join(strings.Fields(m[1]), "") + "@" + m[2]}, true
	}
	if m := commentAddr.FindStringSubmatch(piece); m != nil {
		// MAILER-DAEMON (Mail Delivery System): RFC 822 comment as name.
		return Address{Name: decodeHeader(m[2], ""), Address: m[1]}, true
	}
	if m := bareAddr.FindString(piece); m != "" {
		return Address{Address: strings.Trim(m, ".")}, true
	}
	return Address{}, false
}

// parseMessageIDs returns the message ids in a Message-ID, In-Reply-To
// or References value without angle brackets. It tolerates missing
// brackets, folding whitespace, comments and phrases between ids
// (`<a@b> (Joe's message of Monday) <c@d>`), and drops duplicates.
func parseMessageIDs(v string) []string {
	v = toUTF8(v, "")
	ids := []string{}
	seen := map[string]bool{}
	add := func(id string) {
		id = strings.Join(strings.Fields(id), "")
		id = strings.Trim(id, "<>\"'")
		if id == "" || seen[id] {
			return
		}
		seen[id] = true
		ids = append(ids, id)
	}
	i := 0
	for i < len(v) {
		c := v[i]
		switch {
		case c == '<':
			end := strings.IndexByte(v[i+1:], '>')
			if end < 0 {
				// Unclosed: take the rest of the word.
				rest := v[i+1:]
				if j := strings.IndexAny(rest, " \t\r\n,<"); j >= 0 {
					rest = rest[:j]
				}
				add(rest)
				i += 1 + len(rest)
				continue
			}
			inner := v[i+1 : i+1+end]
			if j := strings.LastIndexByte(inner, '<'); j >= 0 {
				inner = inner[j+1:]
			}
			add(inner)
			i += end + 2
		case c == '(':
			depth := 0
			j := i
			for ; j < len(v); j++ {
				if v[j] == '(' {
					depth++
				} else if v[j] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			i = j + 1
		case c == '"':
			end := strings.IndexByte(v[i+1:], '"')
			if end < 0 {
				i = len(v)
			} else {
				i += end + 2
			}
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == ';':
			i++
		default:
			j := i
			for j < len(v) && !strings.ContainsRune(" \t\r\n,;<(\"", rune(v[j])) {
				j++
			}
			word := v[i:j]
			if strings.Contains(word, "@") && !strings.HasSuffix(word, ":") {
				add(word)
			}
			i = j
		}
	}
	return ids
}

// dateLayouts are forms seen in the wild that net/mail rejects.
var dateLayouts = []string{
	"Mon, 2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 06 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05",
	"Mon, 2 January 2006 15:04:05 -0700",
	"Monday, 2 January 2006 15:04:05 -0700",
	"Monday, January 2, 2006 15:04:05 -0700",
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 -0700 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
	time.RFC3339,
	"2006-01-02T15:04:05",
	"02.01.2006 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04:05 -0700 -0700",
}

var (
	dateComment   = lazyregexp.New(`\([^)]*\)`)
	dateGMTOffset = lazyregexp.New(`(?i)\b(?:GMT|UTC)\s*([+-]\d{2}):?(\d{2})\b`)
	dateDotTime   = lazyregexp.New(`\b(\d{1,2})\.(\d{2})\.(\d{2})\b`)
)

// mailDateLayout is the form nearly every mailer writes (RFC 5322
// with day of week and numeric zone). It is the first layout of
// mail.ParseDate's list that a value starting with a day name can
// match (the twelve before it start with the day of the month), and a
// value it matches whole is passed to that list unchanged (its only
// '+' or '-' is the zone's, at the end, and there is no comment after
// it), so time.Parse with it gives what mail.ParseDate gives.
// TestParseDateLayoutMatchesNetMail checks that on many forms.
const mailDateLayout = "Mon, 2 Jan 2006 15:04:05 -0700"

// parseDate parses a Date header tolerantly. It reports false when the
// value cannot be read as a date.
func parseDate(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(mailDateLayout, v); err == nil {
		// What mail.ParseDate returns for v, without the twelve layouts
		// it tries and fails before this one (see mailDateLayout).
		return t, plausibleDate(t)
	}
	if t, err := mail.ParseDate(v); err == nil {
		return t, plausibleDate(t)
	}
	s := dateComment.ReplaceAllString(v, " ")
	s = dateGMTOffset.ReplaceAllString(s, "$1$2")
	s = dateDotTime.ReplaceAllString(s, "$1:$2:$3")
	s = strings.ReplaceAll(s, ",", ", ")
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, " ,", ",")
	if t, err := mail.ParseDate(s); err == nil {
		return t, plausibleDate(t)
	}
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, plausibleDate(t)
		}
	}
	// Some mailers omit or garble the weekday.
	if i := strings.IndexByte(s, ','); i >= 0 && i < 12 {
		rest := strings.TrimSpace(s[i+1:])
		if t, err := mail.ParseDate(rest); err == nil {
			return t, plausibleDate(t)
		}
		for _, l := range dateLayouts {
			if t, err := time.Parse(l, rest); err == nil {
				return t, plausibleDate(t)
			}
		}
	}
	return time.Time{}, false
}

// plausibleDate rejects dates JSON cannot carry (years outside
// 0000-9999) and obvious garbage before the first e-mail.
func plausibleDate(t time.Time) bool {
	return t.Year() >= 1970 && t.Year() <= 9999
}
