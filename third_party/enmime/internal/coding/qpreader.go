// The QPReader below is Go's mime/quotedprintable.Reader (Go 1.26),
// Copyright 2012 The Go Authors, BSD-style license (see Go's LICENSE),
// changed by deskmail for speed only: see QPReader.Read.

package coding

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// QPReader is a quoted-printable decoder that decodes exactly like
// mime/quotedprintable.Reader (same output, same errors, same
// tolerances), faster.
type QPReader struct {
	br   *bufio.Reader
	rerr error  // last read error
	line []byte // to be consumed before more of br
}

// NewQPReader returns a quoted-printable reader, decoding from r (used
// directly when it is a *bufio.Reader of the default size or more, as
// quotedprintable.NewReader does).
func NewQPReader(r io.Reader) *QPReader {
	return &QPReader{br: bufio.NewReader(r)}
}

func qpFromHex(b byte) (byte, error) {
	switch {
	case b >= '0' && b <= '9':
		return b - '0', nil
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10, nil
	// Accept badly encoded bytes.
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10, nil
	}
	return 0, fmt.Errorf("quotedprintable: invalid hex byte 0x%02x", b)
}

func qpReadHexByte(v []byte) (b byte, err error) {
	if len(v) < 2 {
		return 0, io.ErrUnexpectedEOF
	}
	var hb, lb byte
	if hb, err = qpFromHex(v[0]); err != nil {
		return 0, err
	}
	if lb, err = qpFromHex(v[1]); err != nil {
		return 0, err
	}
	return hb<<4 | lb, nil
}

func isQPDiscardWhitespace(r rune) bool {
	switch r {
	case '\n', '\r', ' ', '\t':
		return true
	}
	return false
}

// qpTrimRight is bytes.TrimRightFunc(b, isQPDiscardWhitespace) as a
// byte loop: the four bytes are ASCII, and a last byte below 0x80 is
// the last rune, so the loop stops where TrimRightFunc does.
func qpTrimRight(b []byte) []byte {
	for len(b) > 0 {
		switch b[len(b)-1] {
		case '\n', '\r', ' ', '\t':
			b = b[:len(b)-1]
		default:
			return b
		}
	}
	return b
}

var (
	qpCRLF       = []byte("\r\n")
	qpLF         = []byte("\n")
	qpSoftSuffix = []byte("=")
)

const qpLWSP = " \t"

// qpLiteral reports whether Read copies b as is (any byte but '=' that
// it does not reject).
func qpLiteral(b byte) bool {
	return qpLiteralSet[b] == '1'
}

// qpLiteralSet holds qpLiteralByte(b) for every byte b, as '1' or '0'
// (a constant: no state, nothing built at start-up): Read's run loop
// looks a byte up instead of comparing it five times
// (TestQPLiteralSet).
const qpLiteralSet = "0000000001100100000000000000000011111111111111111111111111111011" +
	"1111111111111111111111111111111111111111111111111111111111111110" +
	"1111111111111111111111111111111111111111111111111111111111111111" +
	"1111111111111111111111111111111111111111111111111111111111111111"

// qpLiteralByte is the test qpLiteralTable holds.
func qpLiteralByte(b byte) bool {
	return b != '=' && (b >= ' ' && b <= '~' || b == '\t' || b == '\r' || b == '\n' || b >= 0x80)
}

// Read reads and decodes quoted-printable data from the underlying
// reader. It is quotedprintable.Reader.Read with two changes that do
// not change what it returns: the line being decoded is kept in a local
// variable while Read runs (the upstream loop stores the shortened
// slice back into the Reader for every byte, a write barrier each while
// the garbage collector runs: 40% of the decoder's time in deskmail's
// parse benchmark), and a run of bytes that pass through unchanged is
// copied at once.
func (r *QPReader) Read(p []byte) (n int, err error) {
	// Deviations from RFC 2045:
	// 1. in addition to "=\r\n", "=\n" is also treated as soft line break.
	// 2. it will pass through a '\r' or '\n' not preceded by '=', consistent
	//    with other broken QP encoders & decoders.
	// 3. it accepts soft line-break (=) at end of message (issue 15486); i.e.
	//    the final byte read from the underlying reader is allowed to be '=',
	//    and it will be silently ignored.
	// 4. it takes = as literal = if not followed by two hex digits
	//    but not at end of line (issue 13219).
	line := r.line
	defer func() { r.line = line }()
	for len(p) > 0 {
		if len(line) == 0 {
			if r.rerr != nil {
				return n, r.rerr
			}
			line, r.rerr = r.br.ReadSlice('\n')

			// Does the line end in CRLF instead of just LF?
			hasLF := bytes.HasSuffix(line, qpLF)
			hasCR := bytes.HasSuffix(line, qpCRLF)
			wholeLine := line
			line = qpTrimRight(wholeLine)
			if bytes.HasSuffix(line, qpSoftSuffix) {
				rightStripped := bytes.TrimLeft(wholeLine[len(line):], qpLWSP)
				line = line[:len(line)-1]
				if !bytes.HasPrefix(rightStripped, qpLF) && !bytes.HasPrefix(rightStripped, qpCRLF) &&
					!(len(rightStripped) == 0 && len(line) > 0 && r.rerr == io.EOF) {
					r.rerr = fmt.Errorf("quotedprintable: invalid bytes after =: %q", rightStripped)
				}
			} else if hasLF {
				if hasCR {
					line = append(line, '\r', '\n')
				} else {
					line = append(line, '\n')
				}
			}
			continue
		}
		b := line[0]

		if qpLiteral(b) {
			run := 1
			for run < len(line) && run < len(p) && qpLiteral(line[run]) {
				run++
			}
			copy(p, line[:run])
			p = p[run:]
			line = line[run:]
			n += run
			continue
		}
		switch {
		case b == '=':
			b, err = qpReadHexByte(line[1:])
			if err != nil {
				if len(line) >= 2 && line[1] != '\r' && line[1] != '\n' {
					// Take the = as a literal =.
					b = '='
					break
				}
				return n, err
			}
			line = line[2:] // 2 of the 3; other 1 is done below
		case b < ' ' || b > '~':
			return n, fmt.Errorf("quotedprintable: invalid unescaped byte 0x%02x in body", b)
		}
		p[0] = b
		p = p[1:]
		line = line[1:]
		n++
	}
	return n, nil
}
