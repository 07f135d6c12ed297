package coding

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// upstreamBase64Read is Base64Cleaner.Read as upstream wrote it, the
// reference for TestBase64CleanerMatchesUpstream.
func upstreamBase64Read(bc *Base64Cleaner, p []byte) (n int, err error) {
	size := len(bc.buffer)
	if size > len(p) {
		size = len(p)
	}
	buf := bc.buffer[:size]
	bn, err := bc.r.Read(buf)
	for i := 0; i < bn; i++ {
		switch base64CleanerTable[buf[i]&0x7f] {
		case -2:
		case -1:
			bc.Errors = append(bc.Errors, fmt.Errorf("unexpected %q in base64 stream", buf[i]))
		default:
			p[n] = buf[i]
			n++
		}
	}
	return
}

// TestBase64CleanerMatchesUpstream reads random base64-like and binary
// input through Base64Cleaner and through upstream's loop with random
// buffer sizes, and wants the same bytes, counts, errors and warnings.
func TestBase64CleanerMatchesUpstream(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 17))
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < 3000; i++ {
		in := make([]byte, r.IntN(5000))
		for j := range in {
			switch r.IntN(20) {
			case 0:
				in[j] = byte(r.UintN(256))
			case 1:
				in[j] = "\r\n\t =-_*"[r.IntN(8)]
			default:
				in[j] = b64[r.IntN(len(b64))]
			}
		}
		got := NewBase64Cleaner(bytes.NewReader(in))
		want := NewBase64Cleaner(bytes.NewReader(in))
		for k := 0; ; k++ {
			size := 1 + r.IntN(1500)
			p1, p2 := make([]byte, size), make([]byte, size)
			n1, err1 := got.Read(p1)
			n2, err2 := upstreamBase64Read(want, p2)
			if n1 != n2 || err1 != err2 || !bytes.Equal(p1[:n1], p2[:n2]) {
				t.Fatalf("input %d read %d: got %d %v, want %d %v", i, k, n1, err1, n2, err2)
			}
			if err1 == io.EOF {
				break
			}
		}
		if fmt.Sprint(got.Errors) != fmt.Sprint(want.Errors) {
			t.Fatalf("input %d: errors %v, want %v", i, got.Errors, want.Errors)
		}
	}
}
