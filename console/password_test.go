package console

import (
	"strings"
	"testing"
)

// TestDummyHashCostsARealCheck: the hash an address without a password
// is checked against parses as a real one with the same parameters and
// lengths, so that checking it runs the whole argon2id derivation (a
// malformed one would fail early and tell the address apart by time),
// and matches no password.
func TestDummyHashCostsARealCheck(t *testing.T) {
	p := PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1}
	dummy, err := dummyHash(p)
	if err != nil {
		t.Fatal(err)
	}
	real, err := HashPasswordWith("correct horse battery", p)
	if err != nil {
		t.Fatal(err)
	}
	dp, rp := strings.Split(dummy, "$"), strings.Split(real, "$")
	if len(dp) != len(rp) || dp[1] != rp[1] || dp[2] != rp[2] || dp[3] != rp[3] || len(dp[4]) != len(rp[4]) || len(dp[5]) != len(rp[5]) {
		t.Fatalf("dummy %q is not shaped as the real hash %q", dummy, real)
	}
	for _, pw := range []string{"", "correct horse battery", "no password: the same work as a real check"} {
		ok, err := verify(dummy, pw)
		if err != nil || ok {
			t.Errorf("verify(dummy, %q) = %v, %v; want a full check that fails", pw, ok, err)
		}
	}
	if other, _ := dummyHash(p); other == dummy {
		t.Error("two dummies alike: the salt and key are not random")
	}
}
