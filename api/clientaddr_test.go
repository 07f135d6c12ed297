package api

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, c := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"127.0.0.1:5000", nil, "127.0.0.1"},
		{"127.0.0.1:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		// The rightmost hop that is not a proxy; forged hops left of it are ignored.
		{"127.0.0.1:5000", []string{"198.51.100.1, 203.0.113.9, 10.1.1.1"}, "203.0.113.9"},
		{"127.0.0.1:5000", []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"},
		{"[::1]:5000", []string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{"127.0.0.1:5000", []string{"203.0.113.9:4711"}, "203.0.113.9"},
		{"127.0.0.1:5000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		// Only proxies: the leftmost.
		{"127.0.0.1:5000", []string{"10.0.0.2, 10.0.0.3"}, "10.0.0.2"},
		// Garbage where the client should be: the last good hop.
		{"127.0.0.1:5000", []string{"unknown, 10.0.0.3"}, "10.0.0.3"},
		{"127.0.0.1:5000", []string{"unknown"}, "127.0.0.1"},
		// An untrusted peer's header is ignored.
		{"192.0.2.50:5000", []string{"203.0.113.9"}, "192.0.2.50"},
		{"[2001:db8::1]:5000", []string{"203.0.113.9"}, "2001:db8::1"},
	} {
		r := &http.Request{RemoteAddr: c.peer, Header: http.Header{}}
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := clientAddr(r, trusted); got != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
	r := &http.Request{RemoteAddr: "127.0.0.1:1", Header: http.Header{"X-Forwarded-For": {"203.0.113.9"}}}
	if got := clientAddr(r, nil); got != "127.0.0.1" {
		t.Errorf("no trusted proxy: %s, want the peer", got)
	}
}
