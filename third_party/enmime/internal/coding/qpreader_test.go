package coding

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"mime/quotedprintable"
	"testing"
)

// TestQPReaderMatchesStdlib checks that QPReader decodes random input
// (raw, and cleaned by QPCleaner as enmime feeds it) exactly like
// mime/quotedprintable.Reader: the same bytes and the same error, for
// random read sizes on both sides.
func TestQPReaderMatchesStdlib(t *testing.T) {
	alphabet := []byte("abc =\t\r\n0F9fz~ =\r\n=\n=3D=C3=A9\x00\x7f\xc3\xa9")
	for seed := uint64(0); seed < 4000; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 11))
		in := make([]byte, rnd.IntN(5000))
		for i := range in {
			in[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		chunk := 1 + rnd.IntN(5000)
		for _, clean := range []bool{false, true} {
			src := func() *bytes.Reader { return bytes.NewReader(in) }
			var gotR, wantR *chunkReader
			gotR, wantR = &chunkReader{src(), chunk}, &chunkReader{src(), chunk}
			var got, want []byte
			var gerr, werr error
			if clean {
				got, gerr = readInChunks(NewQPReader(NewQPCleaner(gotR)), rand.New(rand.NewPCG(seed, 3)))
				want, werr = readInChunks(quotedprintable.NewReader(NewQPCleaner(wantR)), rand.New(rand.NewPCG(seed, 3)))
			} else {
				got, gerr = readInChunks(NewQPReader(gotR), rand.New(rand.NewPCG(seed, 3)))
				want, werr = readInChunks(quotedprintable.NewReader(wantR), rand.New(rand.NewPCG(seed, 3)))
			}
			if !bytes.Equal(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("seed %d clean %v: output differs (err %v vs %v)\ngot  %q\nwant %q\nin   %q", seed, clean, gerr, werr, got, want, in)
			}
		}
	}
}
