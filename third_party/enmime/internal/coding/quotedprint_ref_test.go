package coding

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// refQPCleaner is QPCleaner.Read as in enmime v2.3.0 (one byte per
// pass), to check deskmail's bulk pass-through against.
type refQPCleaner struct {
	in       *bufio.Reader
	overflow []byte
	lineLen  int
}

func (qp *refQPCleaner) Read(dest []byte) (n int, err error) {
	destLen := len(dest)

	if len(qp.overflow) > 0 {
		// Copy bytes that didn't fit into dest buffer during previous read.
		n = copy(dest, qp.overflow)
		qp.overflow = qp.overflow[n:]
	}

	// writeByte outputs a single byte, space for which will have already been ensured by the loop
	// condition. Updates counters.
	writeByte := func(in byte) {
		dest[n] = in
		n++
		qp.lineLen++
	}

	// safeWriteByte outputs a single byte, storing overflow for next read. Updates counters.
	safeWriteByte := func(in byte) {
		if n < destLen {
			dest[n] = in
			n++
		} else {
			qp.overflow = append(qp.overflow, in)
		}
		qp.lineLen++
	}

	// writeBytes outputs multiple bytes, storing overflow for next read. Updates counters.
	writeBytes := func(in []byte) {
		nc := copy(dest[n:], in)
		if nc < len(in) {
			// Stash unwritten bytes into overflow.
			qp.overflow = append(qp.overflow, []byte(in[nc:])...)
		}
		n += nc
		qp.lineLen += len(in)
	}

	// ensureLineLen ensures there is room to write `requested` bytes, preventing a line break being
	// inserted in the middle of the escaped string.  The requested count is in addition to the
	// byte that was already reserved for this loop iteration.
	ensureLineLen := func(requested int) {
		if qp.lineLen+requested >= MaxQPLineLen {
			writeBytes(lineBreak)
			qp.lineLen = 0
		}
	}

	// Loop over bytes in qp.in ByteReader while there is space in dest.
	for n < destLen {
		var b byte
		b, err = qp.in.ReadByte()
		if err != nil {
			return n, err
		}

		if qp.lineLen >= MaxQPLineLen {
			writeBytes(lineBreak)
			qp.lineLen = 0
			if n == destLen {
				break
			}
		}

		switch {
		// Pass valid hex bytes through, otherwise escapes the equals symbol.
		case b == '=':
			ensureLineLen(2)

			var hexBytes []byte
			hexBytes, err = qp.in.Peek(2)
			if err != nil && err != io.EOF {
				return 0, err
			}
			if validHexBytes(hexBytes) {
				safeWriteByte(b)
			} else {
				writeBytes(escapedEquals)
			}

		// Valid special character.
		case b == '\t':
			writeByte(b)

		// Valid special characters that reset line length.
		case b == '\r' || b == '\n':
			writeByte(b)
			qp.lineLen = 0

		// Invalid characters, render as quoted-printable.
		case b < ' ' || '~' < b:
			ensureLineLen(2)
			writeBytes([]byte(fmt.Sprintf("=%02X", b)))

		// Acceptable characters.
		default:
			writeByte(b)
		}
	}

	return n, err
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func readInChunks(r io.Reader, rnd *rand.Rand) ([]byte, error) {
	var out []byte
	for {
		buf := make([]byte, 1+rnd.IntN(3000))
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func TestQPCleanerMatchesByteByByte(t *testing.T) {
	alphabet := []byte("abc =\t\r\n0F9z~\x00\x7f\xc3\xa9")
	for seed := uint64(0); seed < 3000; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 7))
		in := make([]byte, rnd.IntN(6000))
		long := rnd.IntN(3) == 0
		for i := range in {
			if long {
				in[i] = 'x'
				if rnd.IntN(50) == 0 {
					in[i] = alphabet[rnd.IntN(len(alphabet))]
				}
			} else {
				in[i] = alphabet[rnd.IntN(len(alphabet))]
			}
		}
		chunk := 1 + rnd.IntN(5000)
		got, gerr := readInChunks(NewQPCleaner(chunkReader{bytes.NewReader(in), chunk}), rand.New(rand.NewPCG(seed, 9)))
		ref := &refQPCleaner{in: bufio.NewReader(chunkReader{bytes.NewReader(in), chunk})}
		want, werr := readInChunks(ref, rand.New(rand.NewPCG(seed, 9)))
		if !bytes.Equal(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("seed %d: output differs (err %v vs %v)\ngot  %q\nwant %q", seed, gerr, werr, got, want)
		}
	}
}
