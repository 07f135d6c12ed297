package outbound

import (
	"slices"
	"testing"

	"github.com/deskmail/deskmail/config"
)

// TestDeliveryChanges: every setting the worker reads is named when it
// changes, settings it does not read are not.
func TestDeliveryChanges(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{
			Outbound: config.OutboundConfig{Relay: "relay.example:25"},
			Channels: []config.ChannelConfig{
				{Name: "support", Addresses: []string{"support@example.com"}, Relay: &config.RelayConfig{Address: "a.example:25"}},
				{Name: "sales", Addresses: []string{"sales@example.com"}},
			},
		}
	}
	cases := []struct {
		name   string
		change func(*config.Config)
		want   []string
	}{
		{"nothing", func(*config.Config) {}, nil},
		{"channel relay", func(c *config.Config) { c.Channels[0].Relay.Address = "b.example:25" }, []string{"channels.support.relay"}},
		{"channel relay removed", func(c *config.Config) { c.Channels[0].Relay = nil }, []string{"channels.support.addresses", "channels.support.relay"}},
		{"channel relay added", func(c *config.Config) { c.Channels[1].Relay = &config.RelayConfig{Address: "c.example:25"} },
			[]string{"channels.sales.addresses", "channels.sales.relay"}},
		{"address routed to a relay", func(c *config.Config) { c.Channels[0].Addresses = append(c.Channels[0].Addresses, "help@example.com") },
			[]string{"channels.support.addresses"}},
		{"address of a channel without relay", func(c *config.Config) { c.Channels[1].Addresses = []string{"deals@example.com"} }, nil},
		{"outbound relay", func(c *config.Config) { c.Outbound.Relay = "other.example:25" }, []string{"outbound.relay"}},
		{"hostname", func(c *config.Config) { c.SMTP.Hostname = "mx.example" }, []string{"smtp.hostname"}},
		{"templates are not the worker's", func(c *config.Config) { c.Outbound.TemplatesDir = "/x"; c.Channels[0].DisplayName = "ACME" }, nil},
	}
	for _, tc := range cases {
		b := base()
		tc.change(b)
		if got := DeliveryChanges(base(), b); !slices.Equal(got, tc.want) {
			t.Errorf("%s: DeliveryChanges = %q, want %q", tc.name, got, tc.want)
		}
	}
}
