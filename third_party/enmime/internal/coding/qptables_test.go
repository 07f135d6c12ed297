package coding

import "testing"

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
