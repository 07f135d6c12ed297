package enmime

import (
	"bufio"
	"bytes"
	stderrors "errors"
	"io"
	"unicode"

	"github.com/pkg/errors"
)

// This constant needs to be at least 76 for this package to work correctly.  This is because
// \r\n--separator_of_len_70- would fill the buffer and it wouldn't be safe to consume a single byte
// from it.
const peekBufferSize = 4096

var errNoBoundaryTerminator = stderrors.New("expected boundary not present")

type boundaryReader struct {
	finished    bool          // No parts remain when finished
	partsRead   int           // Number of parts read thus far
	atPartStart bool          // Whether the current part is at its beginning
	r           *bufio.Reader // Source reader
	nlPrefix    []byte        // NL + MIME boundary prefix
	prefix      []byte        // MIME boundary prefix
	final       []byte        // Final boundary prefix
	buffer      *bytes.Buffer // Content waiting to be read
	unbounded   bool          // Flag to throw errNoBoundaryTerminator
}

// newBoundaryReader returns an initialized boundaryReader
func newBoundaryReader(reader *bufio.Reader, boundary string) *boundaryReader {
	fullBoundary := []byte("\n--" + boundary + "--")
	return &boundaryReader{
		r:        reader,
		nlPrefix: fullBoundary[:len(fullBoundary)-2],
		prefix:   fullBoundary[1 : len(fullBoundary)-2],
		final:    fullBoundary[1:],
		buffer:   new(bytes.Buffer),
	}
}

// Read returns a buffer containing the content up until boundary
//
//	Excerpt from io package on io.Reader implementations:
//
//	  type Reader interface {
//	     Read(p []byte) (n int, err error)
//	  }
//
//	  Read reads up to len(p) bytes into p. It returns the number of
//	  bytes read (0 <= n <= len(p)) and any error encountered. Even
//	  if Read returns n < len(p), it may use all of p as scratch space
//	  during the call. If some data is available but not len(p) bytes,
//	  Read conventionally returns what is available instead of waiting
//	  for more.
//
//	  When Read encounters an error or end-of-file condition after
//	  successfully reading n > 0 bytes, it returns the number of bytes
//	  read. It may return the (non-nil) error from the same call or
//	  return the error (and n == 0) from a subsequent call. An instance
//	  of this general case is that a Reader returning a non-zero number
//	  of bytes at the end of the input stream may return either err == EOF
//	  or err == nil. The next Read should return 0, EOF.
//
//	  Callers should always process the n > 0 bytes returned before
//	  considering the error err. Doing so correctly handles I/O errors
//	  that happen after reading some bytes and also both of the allowed
//	  EOF behaviors.
func (b *boundaryReader) Read(dest []byte) (n int, err error) {
	if b.buffer.Len() >= len(dest) {
		// This read request can be satisfied entirely by the buffer.
		n, err = b.buffer.Read(dest)
		if b.atPartStart && n > 0 {
			b.atPartStart = false
		}

		return n, err
	}

	// deskmail patch: the bytes of this read are collected in dest
	// itself (out, never longer than dest) instead of in b.buffer and
	// then copied to dest; upstream's b.buffer grew from 64 bytes to
	// the read size in every multipart. b.buffer only holds bytes that
	// a failed read leaves unreturned (as upstream), taken first.
	out := append(dest[:0], b.buffer.Next(b.buffer.Len())...)
	for i := len(out); i < len(dest); i++ {
		// deskmail patch: apart from the very first byte of a part, only
		// a line break can start a boundary, so copy the run of bytes
		// before the next line break at once instead of one byte per
		// pass. (Upstream checked every byte of a part's first read for
		// a boundary, which cost half of the parse time and could end a
		// part at a boundary that does not start a line.)
		atStart := b.atPartStart && i == 0 // i == 0: nothing in out yet
		if !atStart {
			if run := b.farRun(len(dest) - i); run > 1 {
				out = b.take(out, run)
				i += run - 1
				continue
			}
			if run := b.plainRun(len(dest) - i); run > 1 {
				out = b.take(out, run)
				i += run - 1
				continue
			}
		}
		var cs []byte
		cs, err = b.r.Peek(1)
		if err != nil && err != io.EOF {
			return b.fail(out, err)
		}
		// Ensure that we can switch on the first byte of 'cs' without panic.
		if len(cs) > 0 {
			padding := 1
			check := false

			switch cs[0] {
			// Check for carriage return as potential CRLF boundary prefix.
			case '\r':
				padding = 2
				check = true
			// Check for line feed as potential LF boundary prefix.
			case '\n':
				check = true

			default:
				if atStart {
					// If we're at the very beginning of the part (even before the headers),
					// check to see if there's a delimiter that immediately follows.
					padding = 0
					check = true
				}
			}

			if check {
				var peek []byte
				peek, err = b.r.Peek(len(b.nlPrefix) + padding + 1)
				switch err {
				case nil:
					// Check the whitespace at the head of the peek to avoid checking for a boundary early.
					if bytes.HasPrefix(peek, []byte("\n\n")) ||
						bytes.HasPrefix(peek, []byte("\n\r")) ||
						bytes.HasPrefix(peek, []byte("\r\n\r")) ||
						bytes.HasPrefix(peek, []byte("\r\n\n")) {
						break
					}
					// Check the peek buffer for a boundary delimiter or terminator.
					if b.isDelimiter(peek[padding:]) || b.isTerminator(peek[padding:]) {
						// We have found our boundary terminator, lets write out the final bytes
						// and return io.EOF to indicate that this section read is complete.
						if b.atPartStart && len(out) > 0 {
							b.atPartStart = false
						}
						return len(out), io.EOF
					}
				case io.EOF:
					// We have reached the end without finding a boundary,
					// so we flag the boundary reader to add an error to
					// the errors slice and write what we have to the buffer.
					b.unbounded = true
				default:
					continue
				}
			}
		}

		var next byte
		next, err = b.r.ReadByte()
		if err != nil {
			// EOF is not fatal, it just means that we have drained the reader.
			if errors.Is(err, io.EOF) {
				break
			}

			return b.fail(out, err)
		}
		out = append(out, next)
	}

	// Return the contents of the destination slice.
	if b.atPartStart && len(out) > 0 {
		b.atPartStart = false
	}
	if len(out) == 0 {
		return 0, io.EOF // as bytes.Buffer.Read of upstream's empty buffer
	}
	return len(out), nil
}

// take appends the next n buffered bytes of b.r to out and discards
// them from b.r. (deskmail patch)
func (b *boundaryReader) take(out []byte, n int) []byte {
	window, _ := b.r.Peek(n)
	out = append(out, window...)
	_, _ = b.r.Discard(n) // n bytes are buffered
	return out
}

// fail keeps the bytes read so far for the next Read, as upstream's
// b.buffer did, and returns err. (deskmail patch)
func (b *boundaryReader) fail(out []byte, err error) (int, error) {
	b.buffer.Write(out)
	return 0, errors.WithStack(err)
}

// plainRun returns how many of the buffered bytes, at most max, come
// before the next CR or LF; 0 or 1 when the run is that short (the
// caller then takes the byte-by-byte path). The bytes are left in b.r
// for the caller to take.
func (b *boundaryReader) plainRun(max int) int {
	avail := b.r.Buffered()
	if avail < 2 || max < 2 {
		return 0
	}
	window, _ := b.r.Peek(min(avail, max))
	run := bytes.IndexAny(window, "\r\n")
	if run < 0 {
		run = len(window)
	}
	return run
}

// farRun is plainRun across line breaks: it returns how many of the
// buffered bytes, at most max, come before the first line break whose
// boundary check in Read could succeed or reach the end of the input
// (0 or 1: take the byte-by-byte path). The check at a CR or LF at
// offset p peeks at most len(b.nlPrefix)+3 bytes from p and looks in
// them for b.prefix (which b.final starts with), so it cannot succeed
// when the buffer holds all those bytes and b.prefix does not start in
// them. (deskmail patch)
func (b *boundaryReader) farRun(max int) int {
	avail := b.r.Buffered()
	reach := len(b.nlPrefix) + 3
	if avail <= reach+1 || max < 2 {
		return 0
	}
	window, _ := b.r.Peek(avail)
	end := avail - reach // every p < end has its peek fully buffered
	if idx := bytes.Index(window, b.prefix); idx >= 0 && idx-reach < end {
		end = idx - reach // a prefix at idx is out of reach of every p < end
	}
	end = min(end, max)
	if end <= 1 {
		return 0
	}
	return end
}

// Next moves over the boundary to the next part, returns true if there is another part to be read.
func (b *boundaryReader) Next() (bool, error) {
	if b.finished {
		return false, nil
	}
	if b.partsRead > 0 {
		// Exhaust the current part to prevent errors when moving to the next part.
		_, _ = io.Copy(io.Discard, b)
	}
	for {
		var line []byte
		var err error
		for {
			// Read whole line, handle extra long lines in cycle
			var segment []byte
			segment, err = b.r.ReadSlice('\n')
			if line == nil {
				line = segment
			} else {
				line = append(line, segment...)
			}

			if err == nil || err == io.EOF {
				break
			} else if err != bufio.ErrBufferFull || len(segment) == 0 {
				return false, errors.WithStack(err)
			}
		}

		if len(line) > 0 && (line[0] == '\r' || line[0] == '\n') {
			// Blank line
			continue
		}
		if b.isTerminator(line) {
			b.finished = true
			return false, nil
		}
		if err != io.EOF && b.isDelimiter(line) {
			// Start of a new part.
			b.partsRead++
			b.atPartStart = true
			return true, nil
		}
		if err == io.EOF {
			// Intentionally not wrapping with stack.
			return false, io.EOF
		}
		if b.partsRead == 0 {
			// The first part didn't find the starting delimiter, burn off any preamble in front of
			// the boundary.
			continue
		}
		b.finished = true
		return false, errors.WithMessagef(errNoBoundaryTerminator, "expecting boundary %q, got %q", string(b.prefix), string(line))
	}
}

// isDelimiter returns true for --BOUNDARY\r\n but not --BOUNDARY--
func (b *boundaryReader) isDelimiter(buf []byte) bool {
	idx := bytes.Index(buf, b.prefix)
	if idx == -1 {
		return false
	}

	// Fast forward to the end of the boundary prefix.
	buf = buf[idx+len(b.prefix):]
	if len(buf) > 0 {
		if unicode.IsSpace(rune(buf[0])) {
			return true
		}
	}

	return false
}

// isTerminator returns true for --BOUNDARY--
func (b *boundaryReader) isTerminator(buf []byte) bool {
	idx := bytes.Index(buf, b.final)
	return idx != -1
}
