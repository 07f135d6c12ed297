package enmime

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// TestReadAllMatchesIOReadAll: the pooled, chunked readAll (deskmail
// patch) returns what io.ReadAll returns, for small and large content,
// short reads and a failing reader.
func TestReadAllMatchesIOReadAll(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 60; i++ {
		n := r.IntN(64 << 10)
		if i%10 == 0 {
			n = r.IntN(3<<20) + 1<<20
		}
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(r.UintN(256))
		}
		var src io.Reader = bytes.NewReader(data)
		if i%3 == 0 {
			src = iotest.HalfReader(src)
		}
		got, err := readAll(src)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("case %d (%d bytes): err %v, equal %v", i, n, err, bytes.Equal(got, data))
		}
		if got == nil {
			t.Fatal("readAll returned nil")
		}
	}
	boom := errors.New("boom")
	data := bytes.Repeat([]byte("x"), 2<<20)
	got, err := readAll(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)))
	want, wantErr := io.ReadAll(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)))
	if !errors.Is(err, wantErr) || !bytes.Equal(got, want) {
		t.Fatalf("failing reader: got %d bytes, %v; want %d bytes, %v", len(got), err, len(want), wantErr)
	}
	if got, _ := readAll(bytes.NewReader(nil)); got == nil || len(got) != 0 {
		t.Fatalf("empty input: %v", got)
	}
}
