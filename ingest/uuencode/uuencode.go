// Package uuencode finds and decodes uuencoded files: the pre-MIME way
// of sending a file in mail ("begin 644 report.pdf" … "end"), still
// produced by old Unix scripts and some mailers as a whole body part
// (Content-Transfer-Encoding: x-uuencode) or inline in plain text.
//
// Only a complete, well-formed block counts: a begin line with an octal
// mode and a name, data lines whose length character matches their
// length, and an end line. Anything else is left as text, so a reply
// that merely mentions "begin 644" loses nothing. Work is linear in the
// input.
package uuencode

import (
	"path"
	"strings"
)

// Block is one uuencoded file found in a text.
type Block struct {
	Name  string // the file name of the begin line, as written
	Mode  string // the octal mode of the begin line ("644")
	Data  []byte // the decoded content
	Start int    // byte offset of the begin line in the text
	End   int    // byte offset just past the end line (and its newline)
}

// Find returns the complete uuencoded blocks of text, in order.
func Find(text string) []Block {
	var out []Block
	off := 0
	for off < len(text) {
		i := strings.Index(text[off:], "begin ")
		if i < 0 {
			break
		}
		start := off + i
		if start > 0 && text[start-1] != '\n' {
			off = start + len("begin ")
			continue
		}
		b, ok := decodeAt(text, start)
		if !ok {
			off = start + len("begin ")
			continue
		}
		out = append(out, b)
		off = b.End
	}
	return out
}

// decodeAt decodes the block whose begin line starts at start.
func decodeAt(text string, start int) (Block, bool) {
	line, next := lineAt(text, start)
	mode, name, ok := beginLine(line)
	if !ok {
		return Block{}, false
	}
	b := Block{Name: name, Mode: mode, Start: start}
	for next < len(text) {
		line, after := lineAt(text, next)
		next = after
		switch {
		case line == "end":
			b.End = next
			return b, true
		case line == "`" || line == " ":
			continue // the zero-length line before "end"
		}
		data, ok := decodeLine(line)
		if !ok {
			return Block{}, false
		}
		b.Data = append(b.Data, data...)
	}
	return Block{}, false
}

// lineAt returns the line at offset i without its line end, and the
// offset of the next line.
func lineAt(text string, i int) (string, int) {
	j := strings.IndexByte(text[i:], '\n')
	if j < 0 {
		return strings.TrimRight(text[i:], "\r"), len(text)
	}
	return strings.TrimRight(text[i:i+j], "\r"), i + j + 1
}

// beginLine parses "begin MODE NAME".
func beginLine(l string) (mode, name string, ok bool) {
	rest, ok := strings.CutPrefix(l, "begin ")
	if !ok {
		return "", "", false
	}
	mode, name, ok = strings.Cut(rest, " ")
	if !ok || len(mode) < 3 || len(mode) > 4 || strings.Trim(mode, "01234567") != "" {
		return "", "", false
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return "", "", false
	}
	return mode, path.Base(strings.ReplaceAll(name, "\\", "/")), true
}

// decodeLine decodes one data line: a length character, then groups of
// four characters of six bits each. Encoders differ in padding, so the
// line may be longer than its length needs but not shorter.
func decodeLine(l string) ([]byte, bool) {
	if l == "" {
		return nil, false
	}
	n := int(sixBits(l[0]))
	if n > 45 {
		return nil, false
	}
	need := (n + 2) / 3 * 4
	body := l[1:]
	if len(body) < need || len(body) > need+4 {
		return nil, false
	}
	out := make([]byte, 0, n)
	for i := 0; i+3 < len(body) && len(out) < n; i += 4 {
		var c [4]byte
		for k := range c {
			ch := body[i+k]
			if ch < ' ' || ch > '`' {
				return nil, false
			}
			c[k] = sixBits(ch)
		}
		out = append(out, c[0]<<2|c[1]>>4, c[1]<<4|c[2]>>2, c[2]<<6|c[3])
	}
	if len(out) < n {
		return nil, false
	}
	return out[:n], true
}

// sixBits maps a uuencode character to its value ('`' stands for 0).
func sixBits(c byte) byte { return (c - ' ') & 0x3f }

// DecodeBody decodes the content of a part sent with a uuencode
// transfer encoding that carries bare data lines, without the begin
// and end lines some mailers leave out (Eudora, Mac OS mail). Blank
// lines, the zero-length "`" line and a final "end" are skipped. It
// reports false unless every other line is a valid data line.
func DecodeBody(s string) ([]byte, bool) {
	var out []byte
	lines := 0
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimRight(l, "\r")
		switch l {
		case "", "`", " ":
			continue
		case "end":
			return out, lines > 0
		}
		data, ok := decodeLine(l)
		if !ok {
			return nil, false
		}
		out = append(out, data...)
		lines++
	}
	return out, lines > 0
}
