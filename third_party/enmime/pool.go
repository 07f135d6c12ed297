package enmime

import (
	"bufio"
	"io"
	"sync"
)

// deskmail patch: buffers reused across parts and messages. Parsing one
// message used to allocate a fresh 4 KiB bufio.Reader for every header
// block, every part and every quoted-printable decoder, and grew every
// part's content from 512 bytes by doubling.

const pooledBufioSize = 4096 // bufio's default size, as bufio.NewReader used

var bufioPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, pooledBufioSize) }}

// getBufio returns a 4 KiB bufio.Reader reading from r, like
// bufio.NewReader(r) except that it must be handed back with putBufio
// once nothing reads from it any more. Like bufio.NewReader, it returns
// r itself when r already is a large enough *bufio.Reader; putBufio
// then leaves it alone.
func getBufio(r io.Reader) (br *bufio.Reader, pooled bool) {
	if b, ok := r.(*bufio.Reader); ok && b.Size() >= pooledBufioSize {
		return b, false
	}
	br = bufioPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br, true
}

func putBufio(br *bufio.Reader, pooled bool) {
	if !pooled {
		return
	}
	br.Reset(nil)
	bufioPool.Put(br)
}

// maxPooledScratch bounds the scratch buffers kept for reuse; larger
// parts still read fine but their buffer is left to the GC.
const maxPooledScratch = 1 << 20

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// readAll is io.ReadAll that reads into a reused scratch buffer and
// returns an exactly sized copy: same bytes, same error, and like
// io.ReadAll never nil.
func readAll(r io.Reader) ([]byte, error) {
	sp := scratchPool.Get().(*[]byte)
	b := (*sp)[:0]
	var err error
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		var n int
		n, err = r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			break
		}
	}
	out := make([]byte, len(b))
	copy(out, b)
	if cap(b) <= maxPooledScratch {
		*sp = b[:0]
		scratchPool.Put(sp)
	}
	return out, err
}
