package config

import (
	"strings"
	"testing"
)

func TestHTTPRateLimits(t *testing.T) {
	c, err := Parse("c.yaml", []byte("http:\n  rate_limit: -1\n  role_rate_limits: {admin: 1000, agent: 50}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.RateLimit != -1 || c.HTTP.RoleRateLimits["admin"] != 1000 || c.HTTP.RoleRateLimits["agent"] != 50 {
		t.Errorf("rate_limit %d, role_rate_limits %v", c.HTTP.RateLimit, c.HTTP.RoleRateLimits)
	}
	if c := Default(); c.HTTP.RateLimit != 0 || c.HTTP.RoleRateLimits != nil {
		t.Errorf("defaults: rate_limit %d (0: the API's own), role_rate_limits %v", c.HTTP.RateLimit, c.HTTP.RoleRateLimits)
	}
	_, err = Parse("c.yaml", []byte("http:\n  role_rate_limits:\n    boss: 5\n"))
	if err == nil || !strings.Contains(err.Error(), `http.role_rate_limits.boss: unknown role "boss" (agent, admin)`) {
		t.Errorf("unknown role: %v", err)
	}
}
