package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestTrustedRelays(t *testing.T) {
	c := Default()
	if !slices.Equal(c.SMTP.TrustedRelays, DefaultTrustedRelays) || c.SMTP.RelaySenderRatePerMinute != 6000 {
		t.Errorf("defaults: trusted_relays %v, relay_sender_rate_per_minute %d", c.SMTP.TrustedRelays, c.SMTP.RelaySenderRatePerMinute)
	}
	c, err := Parse("c.yaml", []byte("smtp:\n  trusted_relays: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := c.SMTP.TrustedRelayPrefixes(); err != nil || len(ps) != 0 {
		t.Errorf("trusted_relays: [] gives %v, %v; want no relay", ps, err)
	}
	c, err = Parse("c.yaml", []byte("smtp:\n  trusted_relays: [10.1.2.3, 192.0.2.0/24, \"2001:db8::/32\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := c.SMTP.TrustedRelayPrefixes()
	want := []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	if err != nil || !slices.Equal(ps, want) {
		t.Errorf("prefixes %v, %v; want %v", ps, err, want)
	}
	_, err = Parse("c.yaml", []byte("smtp:\n  trusted_relays:\n    - 127.0.0.0/8\n    - mx.example.com\n    - 10.0.0.0/33\n"))
	got := ""
	if err != nil {
		got = err.Error()
	}
	for _, w := range []string{`c.yaml:4: smtp.trusted_relays[1]: "mx.example.com" is not an IP address or CIDR`, `c.yaml:5: smtp.trusted_relays[2]: "10.0.0.0/33" is not a CIDR`} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	if c := Default(); !slices.Equal(c.HTTP.TrustedProxies, DefaultTrustedProxies) {
		t.Errorf("default trusted_proxies %v", c.HTTP.TrustedProxies)
	}
	c, err := Parse("c.yaml", []byte("http:\n  trusted_proxies: [10.0.0.5, \"2001:db8::/48\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := c.HTTP.TrustedProxyPrefixes()
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32"), netip.MustParsePrefix("2001:db8::/48")}
	if err != nil || !slices.Equal(ps, want) {
		t.Errorf("prefixes %v, %v; want %v", ps, err, want)
	}
	_, err = Parse("c.yaml", []byte("http:\n  trusted_proxies: [192.0.2.0/33]\n"))
	if err == nil || !strings.Contains(err.Error(), `c.yaml:2: http.trusted_proxies[0]: "192.0.2.0/33" is not a CIDR`) {
		t.Errorf("bad CIDR: %v", err)
	}
}

func TestPublicURL(t *testing.T) {
	if _, err := Parse("c.yaml", []byte("http:\n  public_url: https://help.example.com/desk/\n")); err != nil {
		t.Fatal(err)
	}
	for v, w := range map[string]string{
		"help.example.com":            "must start with https:// or http://",
		"ftp://help.example.com":      "must start with https:// or http://",
		"https://":                    "must name a host",
		"https://h.example.com/?x=1":  "must not have a query or fragment",
		"https://u:p@h.example.com":   "must name a host",
		"https://h.example.com/#frag": "must not have a query or fragment",
	} {
		_, err := Parse("c.yaml", []byte("http:\n  public_url: \""+v+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), `c.yaml:2: http.public_url: "`+v+`" `+w) {
			t.Errorf("public_url %q: %v, want %q", v, err, w)
		}
	}
}
