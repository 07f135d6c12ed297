package api

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddr is the address a request comes from, for the
// failed-login limit. When the peer is a trusted proxy, it is the
// rightmost X-Forwarded-For hop that is not itself a trusted proxy
// (every proxy appends the address it was connected from, so hops to
// the left of that one were written by the client and prove nothing);
// an X-Forwarded-For from any other peer is ignored. A list made only
// of trusted proxies gives its leftmost entry.
func ClientAddr(r *http.Request, trusted []netip.Prefix) string { return clientAddr(r, trusted) }

func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	peer := peerAddr(r)
	a, err := netip.ParseAddr(peer)
	if err != nil || !inPrefixes(a.Unmap(), trusted) {
		return peer
	}
	hops := forwardedHops(r.Header.Values("X-Forwarded-For"))
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		h, ok := parseHop(hops[i])
		if !ok {
			// A hop a trusted proxy wrote is an address; anything else
			// came from further left, so the last good hop is the client.
			break
		}
		client = h.String()
		if !inPrefixes(h, trusted) {
			break
		}
	}
	return client
}

// peerAddr is the request's TCP peer without the port.
func peerAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// forwardedHops splits X-Forwarded-For header values (each a
// comma-separated list; several headers form one list, in order).
func forwardedHops(values []string) []string {
	var out []string
	for _, v := range values {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				out = append(out, h)
			}
		}
	}
	return out
}

// parseHop reads one X-Forwarded-For entry: an address, optionally
// with a port ("192.0.2.1:4711", "[2001:db8::1]:443").
func parseHop(h string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(h); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
