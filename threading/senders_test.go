package threading

import (
	"fmt"
	"slices"
	"testing"
)

// TestSendersBounded: a batch prefetches (and locks, on PostgreSQL)
// the contacts of Senders, so a hostile Reply-To of thousands of
// addresses yields only the one that can become the requester.
func TestSendersBounded(t *testing.T) {
	in := &Incoming{From: Person{Email: "Ann@Example.test"}}
	for i := range 5000 {
		in.ReplyTo = append(in.ReplyTo, Person{Email: fmt.Sprintf("R%d@example.test", i)})
	}
	if got, want := Senders(in), []string{"ann@example.test", "r0@example.test"}; !slices.Equal(got, want) {
		t.Errorf("Senders = %v, want %v", got, want)
	}
	in.ReplyTo = nil
	if got := Senders(in); !slices.Equal(got, []string{"ann@example.test"}) {
		t.Errorf("Senders without Reply-To = %v", got)
	}
}
