package lazyregexp

import (
	"sync"
	"testing"
)

func TestCompiledOnceAndShared(t *testing.T) {
	r := New(`(?i)^re:\s*(.*)$`)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m := r.FindStringSubmatch("RE: hello"); len(m) != 2 || m[1] != "hello" {
				t.Errorf("FindStringSubmatch = %q", m)
			}
		}()
	}
	wg.Wait()
	if r.Regexp() != r.Regexp() {
		t.Fatal("compiled twice")
	}
	if r.String() != `(?i)^re:\s*(.*)$` {
		t.Fatalf("String = %q", r.String())
	}
}

func TestBadPatternPanicsInTests(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a bad pattern did not panic at New inside a test binary")
		}
	}()
	New(`(`)
}
