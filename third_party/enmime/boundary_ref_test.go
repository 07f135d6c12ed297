package enmime

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"unicode"

	"github.com/pkg/errors"
)

// refBoundaryReader is the boundary reader before farRun, to check the
// bulk copy against.
type refBoundaryReader struct {
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

// newRefBoundaryReader returns an initialized refBoundaryReader
func newRefBoundaryReader(reader *bufio.Reader, boundary string) *refBoundaryReader {
	fullBoundary := []byte("\n--" + boundary + "--")
	return &refBoundaryReader{
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
func (b *refBoundaryReader) Read(dest []byte) (n int, err error) {
	if b.buffer.Len() >= len(dest) {
		// This read request can be satisfied entirely by the buffer.
		n, err = b.buffer.Read(dest)
		if b.atPartStart && n > 0 {
			b.atPartStart = false
		}

		return n, err
	}

	for i := 0; i < len(dest); i++ {
		// deskmail patch: apart from the very first byte of a part, only
		// a line break can start a boundary, so copy the run of bytes
		// before the next line break at once instead of one byte per
		// pass. (Upstream checked every byte of a part's first read for
		// a boundary, which cost half of the parse time and could end a
		// part at a boundary that does not start a line.)
		atStart := b.atPartStart && i == 0 && b.buffer.Len() == 0
		if !atStart {
			if run := b.plainRun(len(dest) - i); run > 1 {
				if _, err = b.r.Discard(run); err != nil {
					return 0, errors.WithStack(err)
				}
				i += run - 1
				continue
			}
		}
		var cs []byte
		cs, err = b.r.Peek(1)
		if err != nil && err != io.EOF {
			return 0, errors.WithStack(err)
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
						n, err = b.buffer.Read(dest)
						switch err {
						case nil, io.EOF:
							if b.atPartStart && n > 0 {
								b.atPartStart = false
							}
							return n, io.EOF
						default:
							return 0, errors.WithStack(err)
						}
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

			return 0, errors.WithStack(err)
		}

		if err = b.buffer.WriteByte(next); err != nil {
			return 0, errors.WithStack(err)
		}
	}

	// Read the contents of the buffer into the destination slice.
	n, err = b.buffer.Read(dest)
	if b.atPartStart && n > 0 {
		b.atPartStart = false
	}
	return n, err
}

// plainRun copies to b.buffer the buffered bytes, at most max, that
// come before the next CR or LF, and returns how many there are. It
// copies nothing and returns 0 or 1 when the run is that short (the
// caller then takes the byte-by-byte path). The bytes are left in b.r
// for the caller to Discard.
func (b *refBoundaryReader) plainRun(max int) int {
	avail := b.r.Buffered()
	if avail < 2 || max < 2 {
		return 0
	}
	window, _ := b.r.Peek(min(avail, max))
	run := bytes.IndexAny(window, "\r\n")
	if run < 0 {
		run = len(window)
	}
	if run > 1 {
		b.buffer.Write(window[:run])
	}
	return run
}

// Next moves over the boundary to the next part, returns true if there is another part to be read.
func (b *refBoundaryReader) Next() (bool, error) {
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
func (b *refBoundaryReader) isDelimiter(buf []byte) bool {
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
func (b *refBoundaryReader) isTerminator(buf []byte) bool {
	idx := bytes.Index(buf, b.final)
	return idx != -1
}

func readPartsWith(t *testing.T, next func() (bool, error), r io.Reader, rnd *rand.Rand) string {
	var out bytes.Buffer
	for k := 0; k < 20; k++ {
		ok, err := next()
		fmt.Fprintf(&out, "next %v %v\n", ok, errors.Cause(err))
		if !ok {
			break
		}
		for {
			buf := make([]byte, 1+rnd.IntN(5000))
			n, err := r.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				fmt.Fprintf(&out, "|err %v\n", errors.Cause(err))
				break
			}
		}
	}
	return out.String()
}

func TestBoundaryFarRunMatchesReference(t *testing.T) {
	pieces := []string{"x", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "\r\n", "\n", "--", "-", "--bd", "--bd--", "\r\n--bd\r\n", "\n--bd\n", "\r\n--bd--\r\n", " ", "\r\n\r\n", "a--bd b"}
	for seed := uint64(0); seed < 4000; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 3))
		var in bytes.Buffer
		if rnd.IntN(2) == 0 {
			in.WriteString("--bd\r\n")
		}
		target := rnd.IntN(20000)
		for in.Len() < target {
			p := pieces[rnd.IntN(len(pieces))]
			if rnd.IntN(3) == 0 {
				p = pieces[1]
			}
			in.WriteString(p)
		}
		size := 16 + rnd.IntN(5000)
		nb := newBoundaryReader(bufio.NewReaderSize(bytes.NewReader(in.Bytes()), size), "bd")
		got := readPartsWith(t, nb.Next, nb, rand.New(rand.NewPCG(seed, 5)))
		rb := newRefBoundaryReader(bufio.NewReaderSize(bytes.NewReader(in.Bytes()), size), "bd")
		want := readPartsWith(t, rb.Next, rb, rand.New(rand.NewPCG(seed, 5)))
		if got != want || nb.unbounded != rb.unbounded {
			t.Fatalf("seed %d: differs (unbounded %v vs %v)\ngot  %q\nwant %q", seed, nb.unbounded, rb.unbounded, got, want)
		}
	}
}
