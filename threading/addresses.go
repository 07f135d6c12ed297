package threading

import "strings"

// Addresses maps support addresses (and their plus-addressed forms) to
// channel names. It is read-only after construction and safe for
// concurrent use.
type Addresses struct {
	byAddr map[string]string
	first  string
}

// NewAddresses builds the map from channel name → its addresses. The
// order of channels decides the default channel (the first).
func NewAddresses(channels []string, addrs map[string][]string) *Addresses {
	a := &Addresses{byAddr: map[string]string{}}
	for _, ch := range channels {
		if a.first == "" {
			a.first = ch
		}
		for _, addr := range addrs[ch] {
			a.byAddr[strings.ToLower(strings.TrimSpace(addr))] = ch
		}
	}
	return a
}

// Lookup returns the channel of a support address. Plus-addressed
// forms (support+anything@example.com) belong to the same channel.
func (a *Addresses) Lookup(addr string) (channel string, ok bool) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	if ch, ok := a.byAddr[addr]; ok {
		return ch, true
	}
	base, tag := SplitAddress(addr)
	if tag == "" {
		return "", false
	}
	ch, ok := a.byAddr[base]
	return ch, ok
}

// IsSupport reports whether addr is one of our support addresses.
func (a *Addresses) IsSupport(addr string) bool {
	_, ok := a.Lookup(addr)
	return ok
}

// Default returns the first channel's name.
func (a *Addresses) Default() string { return a.first }
