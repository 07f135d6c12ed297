package ingest

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// dkimPass reports whether one of the Authentication-Results headers
// written by a trusted server (RFC 8601 authserv-id) says dkim=pass for
// the From address's domain (header.d equal to it or a parent, or
// header.i in it), or dmarc=pass for it. Headers from servers we do not trust are ignored:
// anyone can write them.
func dkimPass(headers []string, trusted map[string]bool, from string) bool {
	at := strings.LastIndexByte(from, '@')
	if at < 0 {
		return false
	}
	domain := from[at+1:]
	for _, h := range headers {
		id, results, err := authres.Parse(h)
		if err != nil || !trusted[strings.ToLower(id)] {
			continue
		}
		for _, r := range results {
			if m, ok := r.(*authres.DMARCResult); ok && m.Value == authres.ResultPass {
				// dmarc=pass means the From domain itself was aligned.
				if f := strings.ToLower(m.From); f == "" || f == domain {
					return true
				}
				continue
			}
			d, ok := r.(*authres.DKIMResult)
			if !ok || d.Value != authres.ResultPass {
				continue
			}
			dd := strings.ToLower(d.Domain)
			if dd == "" && d.Identifier != "" {
				if i := strings.LastIndexByte(d.Identifier, '@'); i >= 0 {
					dd = strings.ToLower(d.Identifier[i+1:])
				}
			}
			if dd != "" && (dd == domain || strings.HasSuffix(domain, "."+dd)) {
				return true
			}
		}
	}
	return false
}
