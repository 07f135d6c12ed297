package threading

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deskmail/deskmail/store"
)

// Bounces: who may silence a customer.
//
// Anyone can send a delivery status report naming any address, so a
// report flags a recipient bouncing (and stops agent replies to them)
// only when it proves that it answers mail deskmail sent to that
// recipient, and the failure is permanent:
//
//   - proof: the report was sent to the signed envelope sender of one
//     outbox mail (support+b<outbox id>.<mac>@…, Signer.BounceToken,
//     found in the envelope recipient or, for mailbox channels, in
//     To), or — only when outbound.verp is off, so that no signed
//     sender exists — it names that mail's Message-ID as the
//     bounced message. A Message-ID is a weaker proof: every
//     recipient of the mail, and whoever they reply to, knows it;
//   - recipient: a failed recipient the report names that the mail
//     was sent to (a mail to one recipient needs no name);
//   - permanent: an enhanced status code of class 5 (RFC 3463).
//
// A proven report of a transient failure (4.x.x, or no status code) is
// recorded on the mail's ticket and flags nobody. A report that proves
// nothing is kept (the raw message, and a row in the bounces table
// that `deskmail status` counts) and noted on a ticket it names by one
// of our Message-IDs or a valid ticket token; it flags nobody.
//
// A flag is cleared when the address next writes a normal mail
// (clearBounceFlag), or by an admin.

// bounceMatch is what a report proved.
type bounceMatch struct {
	mail *store.OutboxMail // the outbox mail it answers, when found
	// verp: found by the signed envelope sender.
	verp bool
	// why, when the report does not prove the failure of mail we
	// sent to the recipients it names.
	why string
}

// correlateBounce finds the outbox mail a report answers.
func (e *Engine) correlateBounce(tx *store.Tx, in *Incoming) (bounceMatch, error) {
	if e.Signer != nil {
		addrs := append([]string(nil), in.RcptTo...)
		for _, p := range in.To {
			addrs = append(addrs, p.Email)
		}
		for _, a := range addrs {
			_, tag := SplitAddress(lower(a))
			if tag == "" {
				continue
			}
			id, ok := e.Signer.CheckBounce(tag)
			if !ok {
				continue
			}
			m, err := tx.OutboxMailByID(id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return bounceMatch{}, err
			}
			return bounceMatch{mail: m, verp: true}, nil
		}
	}
	var ids []string
	if in.BounceOriginalID != "" {
		ids = append(ids, in.BounceOriginalID)
	}
	ids = append(ids, in.InReplyTo...)
	ids = append(ids, in.References...)
	for _, id := range ids {
		m, err := tx.OutboxMailByMessageID(id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return bounceMatch{}, err
		}
		if m.State == store.OutboxSuppressed {
			// It never left: a report about it is made up.
			continue
		}
		if e.BounceNeedsVERP {
			return bounceMatch{mail: m, why: fmt.Sprintf("it names our Message-ID %s but did not come back to that mail's signed envelope sender", m.MessageID)}, nil
		}
		return bounceMatch{mail: m}, nil
	}
	return bounceMatch{why: "it answers no mail we sent (no signed envelope sender, no Message-ID of ours)"}, nil
}

// namedTicket is the ticket an unproven report names: one of our
// Message-IDs (in or out) or a valid ticket token in a recipient.
func (e *Engine) namedTicket(tx *store.Tx, in *Incoming) (*store.Ticket, error) {
	var ids []string
	if in.BounceOriginalID != "" {
		ids = append(ids, in.BounceOriginalID)
	}
	ids = append(ids, in.InReplyTo...)
	ids = append(ids, in.References...)
	if len(ids) > 0 {
		refs, err := tx.LookupMessageIDs(ids)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if ref, ok := refs[id]; ok && ref.TicketID != nil {
				if t, err := tx.Ticket(*ref.TicketID); err == nil {
					return t, nil
				}
			}
		}
	}
	if e.Signer != nil {
		for _, a := range in.RcptTo {
			if _, tag := SplitAddress(lower(a)); tag != "" {
				if c, ok := e.Signer.Check(tag, ""); ok {
					if t, err := tx.Ticket(c.TicketID); err == nil {
						return t, nil
					}
				}
			}
		}
	}
	return nil, nil
}

// bounce judges a delivery status report (see the comment at the top
// of this file), records it and flags the recipients it proves.
func (e *Engine) bounce(tx *store.Tx, in *Incoming, now time.Time) (*Outcome, error) {
	out := &Outcome{Action: "bounce", Suppress: "bounce"}
	match, err := e.correlateBounce(tx, in)
	if err != nil {
		return nil, err
	}
	named := []string{}
	for _, r := range in.BounceRecipients {
		if r = lower(r); r != "" {
			named = append(named, r)
		}
	}
	raw := in.RawID
	b := &store.Bounce{RawID: &raw, ReceivedAt: now, MessageID: in.MessageID, FromEmail: lower(in.From.Email),
		Status: in.BounceStatus, Recipients: named}

	var flag []string
	if m := match.mail; m != nil && match.why == "" {
		b.OutboxID = &m.ID
		sent := map[string]bool{}
		for _, r := range m.RcptTo {
			sent[lower(r)] = true
		}
		for _, r := range named {
			if sent[r] {
				flag = append(flag, r)
			}
		}
		switch {
		case len(named) == 0 && len(m.RcptTo) == 1 && match.verp:
			flag = []string{lower(m.RcptTo[0])}
		case len(flag) == 0:
			match.why = fmt.Sprintf("it names %s, to whom mail %s was not sent", orNobody(named), m.MessageID)
		}
	}
	var tk *store.Ticket
	if m := match.mail; m != nil && m.TicketID != nil {
		if t, err := tx.Ticket(*m.TicketID); err == nil {
			tk = t
		}
	}
	permanent := strings.HasPrefix(in.BounceStatus, "5.")
	status := in.BounceStatus
	if status == "" {
		status = "no status code"
	}
	var note string
	switch {
	case match.why != "":
		b.Outcome = store.BounceUncorrelated
		b.Note = "delivery report flags nobody: " + match.why
		if tk == nil {
			if tk, err = e.namedTicket(tx, in); err != nil {
				return nil, err
			}
		}
	case !permanent:
		b.Outcome = store.BounceTransient
		b.Note = fmt.Sprintf("mail %s to %s was not delivered yet (%s): a transient failure flags nobody", match.mail.MessageID, strings.Join(flag, ", "), status)
	default:
		b.Outcome = store.BounceFlagged
		b.Note = fmt.Sprintf("mail %s to %s bounced (%s); flagged as bouncing", match.mail.MessageID, strings.Join(flag, ", "), status)
	}
	if tk != nil {
		b.TicketID = &tk.ID
	}
	if err := tx.AddBounce(b); err != nil {
		return nil, err
	}
	note = fmt.Sprintf("%s [bounce %d, from %s, Message-ID %s]", b.Note, b.ID, orNobody([]string{b.FromEmail}), in.MessageID)
	if b.Outcome == store.BounceFlagged {
		for _, r := range flag {
			reason := fmt.Sprintf("delivery report %s (bounce %d) from %s: mail %s failed (%s)", in.MessageID, b.ID, orNobody([]string{b.FromEmail}), match.mail.MessageID, status)
			if _, err := tx.MarkBouncing(r, store.BounceFlag{Reason: reason, Status: in.BounceStatus, BounceID: &b.ID}); err != nil {
				return nil, err
			}
		}
	}
	if tk == nil {
		return out, nil
	}
	actor := Actor{Type: "mail", Name: lower(in.From.Email)}
	if b.Outcome != store.BounceUncorrelated {
		// A proven report is the ticket's business: agents read it as a
		// private message.
		conv, err := e.addConversation(tx, tk, in, "bounce", true, true, nil, nil, now)
		if err != nil {
			return nil, err
		}
		actor.ConversationID = &conv.ID
		out.Conversation = conv
	}
	if err := Record(tx, tk.ID, actor, "bounce", "", "", "", note, now); err != nil {
		return nil, err
	}
	if out.Conversation != nil {
		tk.UpdatedAt = now
		if err := tx.UpdateTicket(tk); err != nil {
			return nil, err
		}
	}
	out.Ticket = tk
	return e.finish(tx, in, out)
}

func orNobody(list []string) string {
	var kept []string
	for _, s := range list {
		if s != "" {
			kept = append(kept, s)
		}
	}
	if len(kept) == 0 {
		return "nobody"
	}
	return strings.Join(kept, ", ")
}

// clearBounceFlag clears the bouncing flag of the sender of a normal
// (not automated) mail: the address works again. It returns the
// contact when a flag was cleared.
func clearBounceFlag(tx *store.Tx, in *Incoming, from string) (*store.Contact, error) {
	if in.Kind != "normal" || from == "" {
		return nil, nil
	}
	c, err := tx.ClearBouncing(from)
	if err != nil || c == nil || !c.Bouncing {
		return nil, err
	}
	return c, nil
}
