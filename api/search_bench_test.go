package api_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
)

// BenchmarkSearchTickets serves GET /api/v2/search/tickets on 100,000
// tickets (one client over loopback) for a selective and a broad query,
// and the default list for comparison.
func BenchmarkSearchTickets(b *testing.B) {
	db := benchDatabase(b)
	h := newHarness(b, hopts{dbPath: db})
	auth := basic(h.keys[alice])
	for _, c := range []struct{ name, path string }{
		{"selective", "/api/v2/search/tickets?" + url.Values{"query": {`"status:3 AND priority:>4"`}}.Encode()},
		{"broad", "/api/v2/search/tickets?" + url.Values{"query": {`"(status:2 OR status:3) AND tag:'bench' AND created_at:>'2000-01-01'"`}}.Encode()},
		{"page10", "/api/v2/search/tickets?" + url.Values{"query": {`"priority:<4"`}, "page": {"10"}}.Encode()},
		{"list", "/api/v2/tickets"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s%s", h.url, c.path), nil)
				req.Header.Set("Authorization", auth)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
		})
	}
}
