package ingest

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/authres"

	"github.com/deskmail/deskmail/internal/lazyregexp"
)

// Which Authentication-Results headers are believed (RFC 8601 §5: a
// receiver can trust only the A-R headers its own border MTA added, and
// that MTA removes forged ones bearing its authserv-id):
//
//   - only the fields at the top of the message, above the first
//     Received header that a host outside threading.trusted_auth_servers
//     added (a Received without a "from" clause is an internal hop of
//     the host above it, not a hand-off);
//   - for mail our SMTP receiver took, only when the client is a trusted
//     relay (the border MTA itself): otherwise everything below our own
//     Received came from the client;
//   - only with an authserv-id in the trusted list, and of each
//     authserv-id only the topmost field (the one its host wrote last).

// trustedAuthResults returns the Authentication-Results values of raw
// that its trusted border wrote.
func (p *Pipeline) trustedAuthResults(r Raw) []string {
	if len(p.trusted) == 0 || (r.Source == SourceSMTP && !p.trustedPeer(r.Envelope.ClientIP)) {
		return nil
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(r.Data)))
	if err != nil && h.Len() == 0 {
		return nil
	}
	fields := h.Fields()
	ours := r.Source == SourceSMTP // the receiver prepends its Received
	first := true
	seen := map[string]bool{}
	var out []string
	for fields.Next() {
		v := fields.Value()
		if !first {
			ours = false
		}
		first = false
		switch strings.ToLower(fields.Key()) {
		case "received":
			if ours {
				// Our receiver's own line ("by HOST (deskmail) with …")
				// is the first field; anything else is judged as usual.
				ours = false
				if strings.Contains(v, "(deskmail)") {
					continue
				}
			}
			from, by := receivedHosts(v)
			if !from {
				continue
			}
			if !p.trusted[by] {
				return out
			}
		case "authentication-results":
			id, _, err := authres.Parse(v)
			id = strings.ToLower(id)
			if err != nil || !p.trusted[id] || seen[id] {
				seen[id] = true
				continue
			}
			seen[id] = true
			out = append(out, v)
		}
	}
	return out
}

// trustedPeer reports whether an SMTP client may hand us
// Authentication-Results: it is one of the trusted relays in front of
// deskmail (smtp.trusted_relays, by default the loopback ranges).
func (p *Pipeline) trustedPeer(ip string) bool {
	a, err := netip.ParseAddr(strings.Trim(ip, "[]"))
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, n := range p.relays {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

var (
	receivedComment = lazyregexp.New(`\([^()]*\)`)
	receivedBy      = lazyregexp.New(`(?i)(?:^|\s)by\s+([^\s;]+)`)
	receivedFrom    = lazyregexp.New(`(?i)^\s*from\s`)
)

// receivedHosts reads a Received header: whether it records a hand-off
// (a "from" clause) and the host that added it (the "by" clause,
// lower-case). Comments are removed first: "(Authenticated sender: by
// …)" is not the by clause.
func receivedHosts(v string) (from bool, by string) {
	for i := 0; i < 5 && strings.Contains(v, "("); i++ {
		v = receivedComment.ReplaceAllString(v, " ")
	}
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	if m := receivedBy.FindStringSubmatch(v); m != nil {
		by = strings.ToLower(strings.TrimSuffix(m[1], "."))
	}
	return receivedFrom.MatchString(v), by
}

// authProof reads believed Authentication-Results for the From address
// and names what proves it: "dkim" when a dkim=pass signature's
// header.i is that very address; with domainOK (the channel's
// agent_domain_proof), "dkim-domain" when header.d is its domain and
// "dmarc" when dmarc=pass names it in header.from. A domain signature
// proves the domain, not the person.
func authProof(headers []string, from string, domainOK bool) string {
	from = strings.ToLower(from)
	at := strings.LastIndexByte(from, '@')
	if at < 0 {
		return ""
	}
	domain := from[at+1:]
	proof := ""
	for _, h := range headers {
		_, results, err := authres.Parse(h)
		if err != nil {
			continue
		}
		for _, r := range results {
			switch r := r.(type) {
			case *authres.DKIMResult:
				if r.Value != authres.ResultPass {
					continue
				}
				if strings.ToLower(r.Identifier) == from {
					return "dkim"
				}
				if domainOK && proof == "" && strings.ToLower(strings.TrimSuffix(r.Domain, ".")) == domain {
					proof = "dkim-domain"
				}
			case *authres.DMARCResult:
				if r.Value == authres.ResultPass && domainOK && proof == "" && strings.ToLower(r.From) == domain {
					proof = "dmarc"
				}
			}
		}
	}
	return proof
}
