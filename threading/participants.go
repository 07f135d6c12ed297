package threading

import (
	"strings"

	"github.com/deskmail/deskmail/store"
)

// Who may write onto a ticket.
//
// Message-IDs and ticket numbers are not secrets: every cc, forward and
// bounce carries them. So a header match (In-Reply-To/References) or a
// subject token threads a mail onto a ticket only when its sender has a
// right to be there:
//   - the sender is an agent (whose mail still changes nothing unless
//     proven, see proveAgent);
//   - the sender is a participant: the requester or a cc;
//   - the matched Message-ID is one of our outbound mails on that ticket
//     and was sent to the sender's address (they received it);
//   - the ticket's channel opts in (thread_same_domain) and the sender
//     writes from the requester's domain, a company rather than a
//     free-mail provider (Freshdesk's company rule).
//
// Anything else opens a new ticket and both tickets' history note the
// possible relation. The rule is here, in one place, for every path.

// mayWrite reports whether the sender of in may thread onto tk. matched
// is the Message-ID the headers matched ("" for the subject token) and
// outbound whether it is one of ours. why names the rule that allowed
// it, for the history.
func (e *Engine) mayWrite(tx *store.Tx, tk *store.Ticket, in *Incoming, from string, isAgent bool, matched string, outbound bool) (ok bool, why string, err error) {
	if isAgent {
		return true, "agent", nil
	}
	for _, addr := range e.senderAddresses(in, from) {
		part, err := tx.IsParticipant(tk.ID, addr)
		if err != nil {
			return false, "", err
		}
		if part {
			return true, "participant", nil
		}
		if matched != "" && outbound {
			sent, err := tx.SentTo(tk.ID, matched, addr)
			if err != nil {
				return false, "", err
			}
			if sent {
				return true, "recipient of our mail", nil
			}
		}
	}
	if tk.ChannelID != nil && e.SameDomain[*tk.ChannelID] {
		if d := domainOf(tk.Requester.Email); d != "" && !freeMail[d] {
			for _, addr := range e.senderAddresses(in, from) {
				if domainOf(addr) == d {
					return true, "same company domain as the requester", nil
				}
			}
		}
	}
	return false, "", nil
}

// senderAddresses are the addresses a mail speaks for: its From, and
// the Reply-To of a no-reply relay (the requester rule).
func (e *Engine) senderAddresses(in *Incoming, from string) []string {
	out := []string{}
	if from != "" {
		out = append(out, from)
	}
	if req := lower(e.requester(in).Email); req != "" && req != from {
		out = append(out, req)
	}
	return out
}

// isRequester reports whether the mail comes from the ticket's
// requester (directly or through a no-reply relay naming them).
func (e *Engine) isRequester(tk *store.Ticket, in *Incoming, from string) bool {
	req := lower(tk.Requester.Email)
	if req == "" {
		return false
	}
	for _, a := range e.senderAddresses(in, from) {
		if a == req {
			return true
		}
	}
	return false
}

func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return lower(addr[at+1:])
}

// freeMail are mail providers whose users share a domain without
// sharing a company: the same-domain rule never applies to them.
var freeMail = map[string]bool{
	"gmail.com": true, "googlemail.com": true, "outlook.com": true, "hotmail.com": true, "hotmail.fr": true,
	"live.com": true, "live.fr": true, "msn.com": true, "yahoo.com": true, "yahoo.fr": true, "ymail.com": true,
	"icloud.com": true, "me.com": true, "mac.com": true, "aol.com": true, "gmx.com": true, "gmx.de": true,
	"gmx.net": true, "gmx.fr": true, "web.de": true, "t-online.de": true, "orange.fr": true, "wanadoo.fr": true,
	"free.fr": true, "laposte.net": true, "sfr.fr": true, "neuf.fr": true, "protonmail.com": true, "proton.me": true,
	"pm.me": true, "mail.com": true, "yandex.ru": true, "yandex.com": true, "mail.ru": true, "zoho.com": true,
	"fastmail.com": true, "hey.com": true, "qq.com": true, "163.com": true, "126.com": true, "tutanota.com": true,
}
