package outbound

import "bytes"

// qpLineMax is the length below which a quoted-printable line takes
// another byte (mime/quotedprintable's lineMaxLen-1): a byte that
// would be its 76th begins a new line after a soft line break.
const qpLineMax = 75

// Classes of the bytes of a text to encode (qpClass).
const (
	qpLiteral = iota // printable ASCII but '=', space and tab: written as is
	qpBreak          // CR or LF: a line break
	qpEscape         // everything else: =XX
)

// qpClass classifies each byte value for appendQP.
var qpClass = func() (c [256]uint8) {
	for b := range c {
		switch {
		case b >= '!' && b <= '~' && b != '=', b == ' ', b == '\t':
			c[b] = qpLiteral
		case b == '\r', b == '\n':
			c[b] = qpBreak
		default:
			c[b] = qpEscape
		}
	}
	return c
}()

// appendQP writes s to buf encoded quoted-printable: the bytes that
// mime/quotedprintable's Writer (not Binary) writes for s followed by
// its Close (TestAppendQPMatchesQuotedPrintable), without its byte at
// a time copy through a line buffer: a run of literal bytes is copied
// a line's room at a time. Like the Writer it ends with the last line
// unterminated, and a white-space byte that ends a line is escaped.
func appendQP(buf *bytes.Buffer, s string) {
	i := 0      // bytes on the current output line
	cr := false // the last line break was a CR (a LF right after it is part of it)
	for p := 0; p < len(s); {
		b := s[p]
		switch qpClass[b] {
		case qpLiteral:
			q := p + 1
			for q < len(s) && qpClass[s[q]] == qpLiteral {
				q++
			}
			for run := s[p:q]; len(run) > 0; {
				if i == qpLineMax {
					buf.WriteString("=\r\n")
					i = 0
				}
				n := min(len(run), qpLineMax-i)
				buf.WriteString(run[:n])
				i += n
				run = run[n:]
			}
			cr = false
			p = q
		case qpBreak:
			p++
			if cr && b == '\n' {
				cr = false
				continue
			}
			if b == '\r' {
				cr = true
			}
			qpEscapeLastSpace(buf, i)
			buf.WriteString("\r\n")
			i = 0
		default:
			// As the Writer's encode, which leaves cr as it is.
			i = qpEscapeByte(buf, i, b)
			p++
		}
	}
	qpEscapeLastSpace(buf, i)
}

// qpEscapeByte writes b as =XX on a line holding i bytes, after a soft
// line break when the line has no room for it, and returns the line's
// new length.
func qpEscapeByte(buf *bytes.Buffer, i int, b byte) int {
	const upperhex = "0123456789ABCDEF"
	if qpLineMax-i < 3 {
		buf.WriteString("=\r\n")
		i = 0
	}
	buf.Write([]byte{'=', upperhex[b>>4], upperhex[b&0x0f]})
	return i + 3
}

// qpEscapeLastSpace escapes the last byte of a line holding i bytes
// (the last byte written to buf) when it is a space or a tab, as the
// Writer does before a line break and at Close.
func qpEscapeLastSpace(buf *bytes.Buffer, i int) {
	if i == 0 {
		return
	}
	last := buf.Bytes()[buf.Len()-1]
	if last != ' ' && last != '\t' {
		return
	}
	buf.Truncate(buf.Len() - 1)
	qpEscapeByte(buf, i-1, last)
}
