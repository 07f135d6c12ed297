package coding

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestQPLiteralSet checks the constant table behind qpLiteral against
// the comparisons it replaces, for every byte.
func TestQPLiteralSet(t *testing.T) {
	if len(qpLiteralSet) != 256 {
		t.Fatalf("qpLiteralSet has %d entries", len(qpLiteralSet))
	}
	for i := 0; i < 256; i++ {
		if got, want := qpLiteral(byte(i)), qpLiteralByte(byte(i)); got != want {
			t.Errorf("qpLiteral(%#x) = %v, want %v", i, got, want)
		}
	}
}

// TestQPPlainClass checks plainRun's constant table against the
// comparisons it replaces (upstream QPCleaner.Read's cases), for every
// byte.
func TestQPPlainClass(t *testing.T) {
	if len(qpPlainClass) != 256 {
		t.Fatalf("qpPlainClass has %d entries", len(qpPlainClass))
	}
	for i := 0; i < 256; i++ {
		b := byte(i)
		want := byte(qpStop)
		if b == '\r' || b == '\n' {
			want = qpNewline
		} else if b == '\t' || (' ' <= b && b <= '~' && b != '=') {
			want = qpCounted
		}
		if got := qpPlainClass[b]; got != want {
			t.Errorf("qpPlainClass[%#x] = %c, want %c", i, got, want)
		}
	}
}

// refPlainRun is plainRun's loop one byte at a time (as deskmail first
// wrote it), the reference for TestPlainRunMatchesByteLoop.
func refPlainRun(window []byte, lineLen int) (int, int) {
	run := 0
	for _, b := range window {
		if lineLen >= MaxQPLineLen {
			break
		}
		if b == '\r' || b == '\n' {
			lineLen = 0
		} else if b == '\t' || (' ' <= b && b <= '~' && b != '=') {
			lineLen++
		} else {
			break
		}
		run++
	}
	return run, lineLen
}

// TestPlainRunMatchesByteLoop checks plainRun (run and line length)
// against the byte loop on random windows of long and short lines
// around the 1024-byte line limit, from random starting line lengths.
func TestPlainRunMatchesByteLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 23))
	for i := 0; i < 20000; i++ {
		in := make([]byte, r.IntN(3000))
		for j := range in {
			switch k := r.IntN(1000); {
			case k < 3:
				in[j] = byte(r.UintN(256))
			case k < 6:
				in[j] = '\n'
			case k < 8:
				in[j] = '\r'
			case k < 9:
				in[j] = '='
			default:
				in[j] = byte(' ' + r.IntN(95))
			}
			if in[j] == '=' && r.IntN(4) != 0 {
				in[j] = 'x'
			}
		}
		lineLen := r.IntN(MaxQPLineLen + 2)
		if r.IntN(3) == 0 {
			lineLen = MaxQPLineLen - r.IntN(3)
		}
		max := 1 + r.IntN(4000)
		qp := NewQPCleaner(bytes.NewReader(in))
		qp.in.Peek(1) // fill the buffer
		qp.lineLen = lineLen
		got := qp.plainRun(max)
		window, _ := qp.in.Peek(min(qp.in.Buffered(), max))
		want, wantLen := refPlainRun(window, lineLen)
		if got != want || qp.lineLen != wantLen {
			t.Fatalf("case %d (line length %d, max %d): run %d, line length %d; want %d, %d", i, lineLen, max, got, qp.lineLen, want, wantLen)
		}
	}
}

// TestQPTrimRightMatchesTrimRightFunc checks qpTrimRight against the
// bytes.TrimRightFunc call it replaced, on random lines of whitespace,
// ASCII, multi-byte and invalid UTF-8.
func TestQPTrimRightMatchesTrimRightFunc(t *testing.T) {
	pieces := []string{" ", "\t", "\r", "\n", "\r\n", "a", "=", "é", "\u00a0", "\u2003", "\x85", "\xc2", "\xff", "\v", "\f"}
	r := rand.New(rand.NewPCG(29, 31))
	for i := 0; i < 50000; i++ {
		var b []byte
		for n := r.IntN(12); n > 0; n-- {
			b = append(b, pieces[r.IntN(len(pieces))]...)
		}
		got, want := qpTrimRight(b), bytes.TrimRightFunc(b, isQPDiscardWhitespace)
		if !bytes.Equal(got, want) || len(got) != len(want) {
			t.Fatalf("%q: got %q, want %q", b, got, want)
		}
	}
}
