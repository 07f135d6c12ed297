package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestCheckTreeIsDrivenByTags proves that the structural check knows a
// field from its yaml tag alone: a struct it has never seen, with the
// kinds of fields others add (IP ranges, durations, secrets, nested
// lists), is checked with no list of keys anywhere.
func TestCheckTreeIsDrivenByTags(t *testing.T) {
	type relay struct {
		Host string `yaml:"host"`
		Port int    `yaml:"port"`
	}
	type section struct {
		TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
		Floor          int            `yaml:"rate_floor"`
		Window         Duration       `yaml:"window"`
		Token          Secret         `yaml:"token"`
		Relays         []relay        `yaml:"relays"`
		Enabled        *bool          `yaml:"enabled"`
	}
	type root struct {
		Section section `yaml:"section"`
	}
	src := `section:
  trusted_proxies: [10.0.0.0/8, 10.0.0/8, "2001:db8::/32"]
  rate_floor: 3
  window: 5m
  token: {file: /x, colour: red}
  relays:
    - {host: a, port: 25}
    - {host: b, prot: 25}
  enabled: yes please
  trusted_proxy: 1
`
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	got := checkTreeOf("s.yaml", &n, reflect.TypeFor[root]()).sorted().Error()
	want := strings.Join([]string{
		`s.yaml:2: section.trusted_proxies[1]: "10.0.0/8" is not an IP range in CIDR notation (write 192.0.2.0/24 or 2001:db8::/32)`,
		`s.yaml:5: section.token.colour: unknown option (deskmail.example.yaml lists every option)`,
		`s.yaml:8: section.relays[1].prot: unknown option; did you mean section.relays[1].port?`,
		`s.yaml:9: section.enabled: "yes please" must be true or false`,
		`s.yaml:10: section.trusted_proxy: unknown option; did you mean section.trusted_proxies?`,
	}, "\n")
	if got != want {
		t.Fatalf("problems:\n%s\nwant:\n%s", got, want)
	}
	// What was reported is gone from the tree: the rest decodes.
	var r root
	if err := n.Decode(&r); err != nil {
		t.Fatalf("cleaned tree does not decode: %v", err)
	}
	if r.Section.TrustedProxies[0].String() != "10.0.0.0/8" || r.Section.Floor != 3 || r.Section.Window.Minutes() != 5 || r.Section.Token.File != "/x" || r.Section.Relays[1].Host != "b" {
		t.Fatalf("decoded %+v", r.Section)
	}
}
