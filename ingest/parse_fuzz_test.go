package ingest

import (
	"os"
	"testing"
	"time"
)

// FuzzParse checks Parse's invariants on arbitrary input: no panic, a
// bounded running time, and a result that marshals to the contract's
// JSON with valid UTF-8 in every text field.
func FuzzParse(f *testing.F) {
	for _, path := range fixtureFiles(f) {
		raw, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte("From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		start := time.Now()
		m, err := Parse(raw, ParseOptions{})
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Parse took %v on %d bytes", d, len(raw))
		}
		if err != nil {
			if m != nil {
				t.Fatal("message and error both returned")
			}
			return
		}
		checkInvariants(t, m)
	})
}
