package outbound

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/deskmail/deskmail/config"
)

// loadDKIM reads every configured signing key. Keys are checked by
// config.Validate too; reading them again here catches a file changed
// since.
func loadDKIM(entries []config.DKIMConfig) (map[string]*dkim.SignOptions, error) {
	out := map[string]*dkim.SignOptions{}
	for _, d := range entries {
		key, err := d.LoadKey()
		if err != nil {
			return nil, fmt.Errorf("dkim %s: %w", d.Domain, err)
		}
		headers := d.Headers
		if len(headers) == 0 {
			headers = config.DefaultDKIMHeaders
		}
		dom := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d.Domain), "."))
		out[dom] = &dkim.SignOptions{
			Domain: dom, Selector: d.Selector, Signer: key,
			// Relaxed/relaxed survives the header refolding and
			// whitespace changes relays are known to make (RFC 6376 §3.4).
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             append([]string(nil), headers...),
		}
	}
	return out, nil
}

// dkimFor picks the signing entry for the first address whose domain,
// or a parent of it, has a key: the From address first (aligned with
// it for DMARC, RFC 7489 §3.1.1), then the envelope sender.
func (o *Outbox) dkimFor(addrs ...string) *dkim.SignOptions {
	if len(o.dkim) == 0 {
		return nil
	}
	for _, a := range addrs {
		at := strings.LastIndexByte(a, '@')
		if at < 0 {
			continue
		}
		dom := strings.ToLower(strings.TrimSuffix(a[at+1:], "."))
		for dom != "" {
			if opts, ok := o.dkim[dom]; ok {
				return opts
			}
			_, parent, ok := strings.Cut(dom, ".")
			if !ok || !strings.Contains(parent, ".") {
				break
			}
			dom = parent
		}
	}
	return nil
}

// dkimSign returns raw with a DKIM-Signature header field prepended
// when a key applies, raw unchanged otherwise. Mail is signed once,
// when it is enqueued, and the signed text is what the outbox stores:
// every delivery attempt — including a re-send after a crash — sends
// the same bytes.
func (o *Outbox) dkimSign(raw []byte, addrs ...string) ([]byte, error) {
	opts := o.dkimFor(addrs...)
	if opts == nil {
		return raw, nil
	}
	s, err := dkim.NewSigner(opts)
	if err != nil {
		return nil, fmt.Errorf("dkim %s: %w", opts.Domain, err)
	}
	if _, err := s.Write(raw); err != nil {
		s.Close()
		return nil, fmt.Errorf("dkim %s: %w", opts.Domain, err)
	}
	if err := s.Close(); err != nil {
		return nil, fmt.Errorf("dkim %s: %w", opts.Domain, err)
	}
	sig := s.Signature()
	var b bytes.Buffer
	b.Grow(len(sig) + len(raw))
	b.WriteString(sig)
	b.Write(raw)
	return b.Bytes(), nil
}
