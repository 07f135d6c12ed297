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
// io.ReadAll never nil. Content larger than the scratch buffer is read
// in fixed-size chunks and joined once, so a 20 MB attachment costs
// about twice its size at the peak instead of the four times that
// doubling a buffer and copying it out would.
func readAll(r io.Reader) ([]byte, error) {
	sp := scratchPool.Get().(*[]byte)
	b := (*sp)[:0]
	defer func() {
		*sp = b[:0]
		scratchPool.Put(sp)
	}()
	var chunks [][]byte
	total := 0
	cur := &b
	var err error
	for {
		if len(*cur) == cap(*cur) {
			switch {
			case cur == &b && cap(b) < maxPooledScratch:
				b = append(b, 0)[:len(b)]
			default:
				// The scratch buffer (or the last chunk) is full: go on
				// in a new chunk rather than growing by copying.
				chunks = append(chunks, make([]byte, 0, chunkSize))
				cur = &chunks[len(chunks)-1]
			}
		}
		var n int
		n, err = r.Read((*cur)[len(*cur):cap(*cur)])
		*cur = (*cur)[:len(*cur)+n]
		total += n
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			break
		}
	}
	out := make([]byte, 0, total)
	out = append(out, b...)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out, err
}

// chunkSize is the size of the chunks large content is read in.
const chunkSize = 1 << 20
