package main

import (
	"net/http"
	"testing"
)

// TestAPIRateLimitConfig runs the built binary with http.rate_limit and
// http.role_rate_limits: the admin's key gets the admin limit (4 a
// minute, above the general 2), then 429; with rate_limit -1 a key
// makes more requests than the default 200 a minute.
func TestAPIRateLimitConfig(t *testing.T) {
	d := startAPIDaemon(t, "http:\n  rate_limit: 2\n  role_rate_limits: {admin: 4}\n")
	for i := 1; i <= 5; i++ {
		want := http.StatusOK
		if i == 5 {
			want = http.StatusTooManyRequests
		}
		if got := getTickets(t, http.DefaultClient, "http://"+d.http, d.key, ""); got != want {
			t.Fatalf("request %d: status %d, want %d", i, got, want)
		}
	}

	d = startAPIDaemon(t, "http:\n  rate_limit: -1\n")
	for i := 1; i <= 210; i++ {
		if got := getTickets(t, http.DefaultClient, "http://"+d.http, d.key, ""); got != http.StatusOK {
			t.Fatalf("request %d without a limit: status %d", i, got)
		}
	}
}
