package threading

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/deskmail/deskmail/command"
	"github.com/deskmail/deskmail/store"
)

// Person is a display name and an address.
type Person struct {
	Name  string
	Email string
}

// Incoming is one parsed message as threading needs it. The ingest
// pipeline fills it from the parser's output and the envelope.
type Incoming struct {
	MessageID   string
	GeneratedID bool
	InReplyTo   []string
	References  []string
	From        Person
	ReplyTo     []Person
	To          []Person
	Cc          []Person
	// RcptTo are the envelope recipients (SMTP RCPT TO), when known.
	RcptTo    []string
	Subject   string
	Text      string
	HTML      string
	ReplyText string
	Files     []store.Attachment
	// Kind is normal, auto_reply, bounce or list.
	Kind string
	// Bounce facts (Kind == "bounce").
	BounceOriginalID string
	BounceRecipients []string
	BounceStatus     string
	BouncePermanent  bool
	// Forwarded is the original sender of a forwarded mail, when the
	// forward makes it clear.
	Forwarded *Person

	ReceivedAt time.Time
	RawID      int64
	ChannelID  *int64
	PipelineID *int64
	// SenderProof names how the pipeline proved the From address
	// ("smtp-auth", "dkim"); empty when it could not.
	SenderProof string
	// Quiet marks history imports: nothing is mailed.
	Quiet bool
	// Sent marks mail sent from the support mailbox itself (its Sent
	// folder): threaded as an agent reply, never mailed again.
	Sent bool
	// Language is the mail's Content-Language (its first tag, lower
	// case), or "".
	Language string
	// ThreadConversation is the Outlook conversation of its
	// Thread-Index header (ThreadIndexConversation), or "".
	ThreadConversation string
}

// EventKind names what happened, for outbound mail and metrics.
type EventKind string

// The events threading reports.
const (
	EventTicketCreated   EventKind = "ticket_created"
	EventCustomerReplied EventKind = "customer_replied"
	EventAgentReplied    EventKind = "agent_replied"
	EventTicketResolved  EventKind = "ticket_resolved"
	EventTicketClosed    EventKind = "ticket_closed"
	EventNoteAdded       EventKind = "note_added"
	// EventStatusChanged: the ticket's status changed (by any path:
	// a reply, a command, the API, a rule). It causes no mail.
	EventStatusChanged EventKind = "status_changed"
	// EventSLABreached: a target was missed (raised by the SLA
	// scheduler, not by threading).
	EventSLABreached EventKind = "sla_breached"
	// EventCommandError tells the agent their commands were rejected.
	EventCommandError EventKind = "command_error"
)

// Outcome is what threading did with a message.
type Outcome struct {
	// Action is one of the `deskmail ingest` actions.
	Action       string
	Ticket       *store.Ticket
	Conversation *store.Conversation
	// Agent is set when the message came from an authenticated agent.
	Agent *store.Agent
	// Events are the changes outbound mail may follow.
	Events []EventKind
	// Suppress explains why no mail may be sent to the requester in
	// answer to this message (auto-reply, list, bounce, loop).
	Suppress string
	// Unverified is set when the sender is a configured agent whose
	// identity could not be proven.
	Unverified bool
	// InReplyTo is the Message-ID outbound mail should answer.
	InReplyTo string
	// ErrorText says which email commands were wrong and why.
	ErrorText string
	// NoticeTo, when set, is the address a command_error notice goes
	// to when no proven agent is (an agent address that proved nothing).
	NoticeTo string
	// NoMail marks mail the team already sent (the support mailbox's
	// Sent folder): its events reach webhooks and rules, but the
	// outbound side must send nothing for them.
	NoMail bool
}

// Engine decides which ticket a message belongs to and applies it.
type Engine struct {
	Life      *Lifecycle
	Token     *SubjectToken
	Signer    *Signer
	Addresses *Addresses
	// NoReply are sender patterns ("noreply@*", "*@forms.example.com")
	// whose Reply-To names the real requester.
	NoReply []string
	// ImplicitSupport treats the first To address of each message as a
	// support address (no configuration: `deskmail ingest` defaults).
	ImplicitSupport bool
	// CustomFields are the configured custom ticket fields.
	CustomFields []CustomField
	// SameDomain are the channels (by id) whose tickets accept mail
	// from the requester's company domain by header match
	// (channels[].thread_same_domain).
	SameDomain map[int64]bool
	// BounceNeedsVERP makes only a report sent back to an outbox
	// mail's signed envelope sender flag anyone (outbound.verp on); a
	// matching Message-ID alone then proves nothing.
	BounceNeedsVERP bool
	Now             func() time.Time
}

func lower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func (e *Engine) now(in *Incoming) time.Time {
	if !in.ReceivedAt.IsZero() {
		return in.ReceivedAt
	}
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) isSupport(in *Incoming, addr string) bool {
	if e.Addresses != nil && e.Addresses.IsSupport(addr) {
		return true
	}
	if e.ImplicitSupport && len(in.To) > 0 {
		base, _ := SplitAddress(lower(addr))
		sup, _ := SplitAddress(lower(in.To[0].Email))
		return base == sup
	}
	return false
}

// Thread puts one message on the right ticket inside tx: it records
// the Message-ID (so that a second copy is a duplicate), finds or
// creates the ticket, stores the conversation, applies the lifecycle
// rules and writes history. A normal mail from an address flagged
// bouncing clears the flag (noted on the ticket it lands on). The
// caller commits.
func (e *Engine) Thread(tx *store.Tx, in *Incoming) (*Outcome, error) {
	var cleared *store.Contact
	out, err := e.thread(tx, in, &cleared)
	if err != nil || cleared == nil || out == nil || out.Ticket == nil {
		return out, err
	}
	note := fmt.Sprintf("%s wrote again: bouncing flag cleared (it was: %s)", cleared.Email, cleared.BounceReason)
	if err := Record(tx, out.Ticket.ID, Actor{Type: "mail", Name: cleared.Email}, "bounce_cleared", "", "", "", note, e.now(in)); err != nil {
		return nil, err
	}
	return out, nil
}

func (e *Engine) thread(tx *store.Tx, in *Incoming, cleared **store.Contact) (*Outcome, error) {
	now := e.now(in)
	tx.SetNow(now)
	defer tx.SetNow(time.Time{})
	from := lower(in.From.Email)

	// 1. Duplicate, or one of our own Message-IDs coming back: a loop.
	refs, err := tx.LookupMessageIDs([]string{in.MessageID})
	if err != nil {
		return nil, err
	}
	if ref, ok := refs[in.MessageID]; ok {
		out := &Outcome{Action: "duplicate"}
		if ref.Direction == "out" {
			out.Action = "ignored"
			out.Suppress = "loop: our own Message-ID"
		}
		if ref.TicketID != nil {
			if tk, err := tx.Ticket(*ref.TicketID); err == nil {
				out.Ticket = tk
			}
		}
		if ref.ConversationID != nil && ref.Direction == "in" {
			// Point at the conversation the first copy became.
			out.Conversation = &store.Conversation{ID: *ref.ConversationID}
		}
		return out, nil
	}
	if err := tx.AddMessageID(store.MessageRef{MessageID: in.MessageID, Direction: "in", ChannelID: in.ChannelID, RawID: &in.RawID}); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return &Outcome{Action: "duplicate"}, nil
		}
		return nil, err
	}

	if in.Sent {
		return e.sentReply(tx, in, from, now, false)
	}
	if team, err := e.historyTeamMail(tx, in, from); err != nil {
		return nil, err
	} else if team {
		out, err := e.sentReply(tx, in, from, now, true)
		if out != nil || err != nil {
			return out, err
		}
		// Team mail of the history that answers no ticket and names no
		// customer goes on as live mail would.
	}

	// 2. Mail from our own support addresses is a loop.
	if from != "" && e.isSupport(in, from) {
		return &Outcome{Action: "ignored", Suppress: "loop: sent from a support address"}, nil
	}

	if in.Kind == "bounce" {
		return e.bounce(tx, in, now)
	}
	if *cleared, err = clearBounceFlag(tx, in, from); err != nil {
		return nil, err
	}

	agent, err := tx.AgentByEmail(from)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}

	m, err := e.find(tx, in, from, agent != nil)
	if err != nil {
		return nil, err
	}
	tk, via := m.tk, m.via
	out := &Outcome{}
	switch in.Kind {
	case "auto_reply":
		out.Suppress = "auto-reply"
	case "list":
		out.Suppress = "mailing list"
	}

	// Who is writing: a proven agent, an agent address that proves
	// nothing, or a customer. Every path below reads the answer from
	// out.Agent, which only proveAgent sets.
	proof := e.proveAgent(agent, in, m.token)
	if agent != nil {
		if proof.ok {
			out.Agent = agent
		} else {
			out.Unverified = true
		}
	}

	if in.Kind == "auto_reply" {
		if tk == nil {
			return &Outcome{Action: "ignored", Suppress: "auto-reply"}, nil
		}
		conv, err := e.addConversation(tx, tk, in, "auto_reply", true, true, nil, nil, now)
		if err != nil {
			return nil, err
		}
		tk.UpdatedAt = now
		if err := tx.UpdateTicket(tk); err != nil {
			return nil, err
		}
		if err := Record(tx, tk.ID, Actor{Type: "mail", Name: from, ConversationID: &conv.ID}, "auto_reply_received", "", "", "", "automatic reply recorded; status unchanged", now); err != nil {
			return nil, err
		}
		return e.finish(tx, in, &Outcome{Action: "appended", Ticket: tk, Conversation: conv, Suppress: "auto-reply"})
	}

	if tk == nil && agent != nil {
		parsed := command.Parse(in.ReplyText)
		forward := in.Forwarded != nil && in.Forwarded.Email != "" && !e.isSupport(in, in.Forwarded.Email)
		switch {
		case (forward || requesterOf(parsed) != "") && out.Agent == nil:
			// Opening a ticket for someone else is an agent's act: an
			// address that proves nothing gets nothing of it.
			return e.unprovenAgentNew(tx, in, out, agent, proof, parsed, now)
		case requesterOf(parsed) != "":
			// An agent naming the customer with #requester creates the
			// ticket on their behalf (with the mail's other commands).
			return e.agentCreate(tx, in, out, agent, parsed, now)
		case forward:
			// An agent forwarding a customer's mail to support creates a
			// ticket for that customer.
			return e.create(tx, in, out, *in.Forwarded, nil, now, fmt.Sprintf("forwarded by agent %s (%s)", agent.Email, proof.how))
		}
	}

	if tk == nil {
		// A new ticket from an agent address is just a ticket.
		out.Unverified = false
		res, err := e.create(tx, in, out, e.requester(in), nil, now, "")
		if err != nil {
			return nil, err
		}
		if err := e.noteRefused(tx, res.Ticket, m.refused, in, from, now); err != nil {
			return nil, err
		}
		return res, nil
	}

	if out.Agent != nil {
		return e.agentReply(tx, tk, in, out, now)
	}
	if out.Unverified {
		conv, err := e.addConversation(tx, tk, in, "note", true, true, nil, nil, now)
		if err != nil {
			return nil, err
		}
		note := "mail from agent address " + from + " could not be verified (" + proof.why + "); stored as a private note, nothing changed"
		if err := Record(tx, tk.ID, Actor{Type: "mail", Name: from, ConversationID: &conv.ID}, "unverified_agent_mail", "", "", "", note, now); err != nil {
			return nil, err
		}
		if err := tx.UpdateTicket(tk); err != nil {
			return nil, err
		}
		out.Action, out.Ticket, out.Conversation = "appended", tk, conv
		return e.finish(tx, in, out)
	}
	return e.customerReply(tx, tk, in, out, via, now)
}

// agentProof is what proves, or fails to prove, that mail from an
// agent's address was written by that agent.
type agentProof struct {
	ok bool
	// how names the proof ("smtp-auth", "dkim", "reply token").
	how string
	// why says, when ok is false, what was missing.
	why string
}

// proveAgent is the one place that decides whether mail from an agent
// address proves the agent: an SMTP AUTH session or a trusted DKIM
// signature (found by the pipeline: in.SenderProof), or a signed agent
// reply token issued to that address for the ticket. Replies to
// customers, commands, forwards and #requester all read its answer
// through Outcome.Agent; no path may act for an agent without it.
func (e *Engine) proveAgent(agent *store.Agent, in *Incoming, token TokenCheck) agentProof {
	if agent == nil {
		return agentProof{}
	}
	if in.SenderProof != "" {
		return agentProof{ok: true, how: in.SenderProof}
	}
	if token.Agent {
		return agentProof{ok: true, how: "reply token"}
	}
	why := "no signed reply address, SMTP AUTH session or trusted DKIM signature"
	if token.Problem != "" {
		why += "; " + token.Problem
	}
	return agentProof{why: why}
}

// unprovenAgentNew stores a forward or #requester mail from an agent
// address that proves nothing: it opens no ticket for the person it
// names and mails nobody else. The mail is kept on a ticket of the
// agent address itself, its history says why, and the only mail sent
// is a notice to the real agent address.
func (e *Engine) unprovenAgentNew(tx *store.Tx, in *Incoming, out *Outcome, agent *store.Agent, proof agentProof, parsed command.Parsed, now time.Time) (*Outcome, error) {
	what, other := "forward", ""
	if r := requesterOf(parsed); r != "" {
		what, other = "#requester", r
	} else if in.Forwarded != nil {
		other = in.Forwarded.Email
	}
	res, err := e.create(tx, in, out, Person{Name: in.From.Name, Email: agent.Email}, nil, now, "")
	if err != nil {
		return nil, err
	}
	note := fmt.Sprintf("mail from agent address %s could not be verified (%s): the %s for %s was not applied, no ticket was opened for them and nobody else was mailed", agent.Email, proof.why, what, other)
	if err := Record(tx, res.Ticket.ID, Actor{Type: "mail", Name: agent.Email, ConversationID: &res.Conversation.ID}, "unverified_agent_mail", "", "", "", note, now); err != nil {
		return nil, err
	}
	res.Events = []EventKind{EventCommandError}
	res.NoticeTo = agent.Email
	res.ErrorText = fmt.Sprintf("This mail could not be verified as coming from you (%s), so the %s for %s was not applied: no ticket was opened for them and nobody else was mailed. Send it again through the authenticated submission server, or reply to a notification.", proof.why, what, other)
	return res, nil
}

// noteRefused tells the history of a new ticket, and of each ticket its
// headers named, that they may be related: the mail quoted a
// Message-ID of a ticket its sender is no participant of. History is
// for agents only; nothing is mailed about it.
func (e *Engine) noteRefused(tx *store.Tx, tk *store.Ticket, refused []*store.Ticket, in *Incoming, from string, now time.Time) error {
	for _, old := range refused {
		by := Actor{Type: "system", Name: "threading"}
		if err := Record(tx, tk.ID, by, "possibly_related", "", "", "", fmt.Sprintf("this mail quotes a Message-ID of ticket #%d, but %s is not a participant there: opened as a new ticket", old.ID, from), now); err != nil {
			return err
		}
		if err := Record(tx, old.ID, by, "possibly_related", "", "", "", fmt.Sprintf("a mail from %s quoting a Message-ID of this ticket opened ticket #%d instead: %s is not a participant here", from, tk.ID, from), now); err != nil {
			return err
		}
	}
	return nil
}

// maxThreadCandidates bounds how many referenced Message-IDs one
// message may make us look up: In-Reply-To, the newest References and
// the thread's root. Real chains are short; a hostile one with
// thousands of ids costs no more than this.
const maxThreadCandidates = 100

// threadCandidates are the Message-IDs whose tickets may thread in:
// In-Reply-To first, then References newest to oldest, at most
// maxThreadCandidates, the References' root always among them.
func threadCandidates(in *Incoming) []string {
	var cands []string
	seen := map[string]bool{in.MessageID: true}
	addCand := func(id string) {
		if id != "" && !seen[id] && len(cands) < maxThreadCandidates {
			seen[id] = true
			cands = append(cands, id)
		}
	}
	for _, id := range in.InReplyTo {
		addCand(id)
	}
	for i := len(in.References) - 1; i >= 0; i-- {
		addCand(in.References[i])
	}
	if len(in.References) > 0 && !seen[in.References[0]] {
		// The thread's root, even when a hostile or very long chain
		// pushed it past the bound.
		if len(cands) == maxThreadCandidates {
			cands = cands[:len(cands)-1]
		}
		addCand(in.References[0])
	}
	return cands
}

// LookedUp returns the Message-IDs that threading in looks up in
// message_ids: its own (a duplicate, a loop) and the candidates of its
// headers. A batch prefetches them (store.Tx.PrefetchMessageIDs).
func LookedUp(in *Incoming) []string {
	return append([]string{in.MessageID}, threadCandidates(in)...)
}

// Senders returns the addresses, as threading looks their contacts
// up, that in's requester is likely to be: its sender and its first
// Reply-To. A
// batch prefetches them (store.Tx.PrefetchContacts).
func Senders(in *Incoming) []string {
	out := []string{lower(in.From.Email)}
	if len(in.ReplyTo) > 0 {
		// Only the first can become the requester (requester); a
		// hostile Reply-To of thousands would make every batch it is
		// in prefetch and lock them all.
		out = append(out, lower(in.ReplyTo[0].Email))
	}
	return out
}

// match is what find found: the ticket (nil for a new one), the rule
// that matched it, what a reply-address token proved, and the tickets
// the mail's headers named but whose participant rule refused it.
type match struct {
	tk      *store.Ticket
	via     string
	token   TokenCheck
	refused []*store.Ticket
}

// find applies the matching rules in order: headers (participants
// only), reply-address token, Outlook Thread-Index (participants only),
// subject token (participants only).
func (e *Engine) find(tx *store.Tx, in *Incoming, from string, isAgent bool) (match, error) {
	// The reply-address token is checked first even when headers match:
	// it is also what proves an agent's identity.
	tokenTicket, check, err := e.tokenTicket(tx, in, from)
	if err != nil {
		return match{}, err
	}
	m := match{token: check}
	// Headers: In-Reply-To first, then References newest to oldest.
	cands := threadCandidates(in)
	if len(cands) > 0 {
		refs, err := tx.LookupMessageIDs(cands)
		if err != nil {
			return match{}, err
		}
		tried := map[int64]bool{}
		for _, id := range cands {
			ref, ok := refs[id]
			if !ok || ref.TicketID == nil {
				continue
			}
			tk, err := tx.Ticket(*ref.TicketID)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return match{}, err
			}
			if tk.Deleted {
				continue
			}
			ok, _, err = e.mayWrite(tx, tk, in, from, isAgent, id, ref.Direction == "out")
			if err != nil {
				return match{}, err
			}
			if !ok {
				if !tried[tk.ID] {
					tried[tk.ID] = true
					m.refused = append(m.refused, tk)
				}
				continue
			}
			if m.token.Agent && m.token.TicketID != tk.ID {
				// The agent token proves identity for its own ticket only.
				m.token.Agent = false
				m.token.Problem = "reply token belongs to another ticket"
			}
			m.tk, m.via = tk, "headers"
			return m, nil
		}
	}
	if tokenTicket != nil {
		// A valid ticket token proves the mail answers something we sent
		// about this ticket (DESIGN: reply address).
		m.tk, m.via = tokenTicket, "token"
		return m, nil
	}
	// Outlook's Thread-Index, only for participants: the header is
	// copied into every forward and CC, so knowing it proves nothing.
	if in.ThreadConversation != "" {
		tk, err := e.threadConversationTicket(tx, in.ThreadConversation)
		if err != nil {
			return match{}, err
		}
		if tk != nil {
			ok, _, err := e.mayWrite(tx, tk, in, from, isAgent, "", false)
			if err != nil {
				return match{}, err
			}
			if ok {
				m.tk, m.via = tk, "thread-index"
				return m, nil
			}
			if !slices.ContainsFunc(m.refused, func(r *store.Ticket) bool { return r.ID == tk.ID }) {
				m.refused = append(m.refused, tk)
			}
		}
	}
	// Subject token, only for participants: a guessed number must not
	// let a stranger read or write someone else's ticket.
	if e.Token != nil {
		if id, ok := e.Token.Find(in.Subject); ok {
			tk, err := tx.Ticket(id)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return match{}, err
			}
			if err == nil && !tk.Deleted {
				ok, _, err := e.mayWrite(tx, tk, in, from, isAgent, "", false)
				if err != nil {
					return match{}, err
				}
				if ok {
					m.tk, m.via = tk, "subject"
					return m, nil
				}
			}
		}
	}
	return m, nil
}

// sentNew opens a ticket for mail the team sent from the shared
// mailbox (its Sent folder, or found in an imported history) that
// answers nothing deskmail knows: the
// first recipient in To, then Cc, that is neither a support address
// nor an agent is the requester, the other such recipients are CCs
// (the team put them there), the team's mail is the first, outgoing
// conversation, and the pipeline's agent-reply status applies, as
// after any agent reply. Nothing is mailed: the customer already has
// it. Mail to no customer (only colleagues) is ignored (kept raw); in a
// history (history set) sentNew returns nil instead, and the caller
// threads it as live mail.
func (e *Engine) sentNew(tx *store.Tx, in *Incoming, from string, now time.Time, history bool) (*Outcome, error) {
	var people []Person
	for _, p := range append(append([]Person{}, in.To...), in.Cc...) {
		email := lower(p.Email)
		if email == "" || e.isSupport(in, email) || e.isNoReply(email) {
			continue
		}
		if _, err := tx.AgentByEmail(email); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if !slices.ContainsFunc(people, func(q Person) bool { return lower(q.Email) == email }) {
			people = append(people, Person{Email: email, Name: p.Name})
		}
	}
	if len(people) == 0 {
		if history {
			return nil, nil
		}
		return &Outcome{Action: "ignored", Suppress: "sent mail to no customer"}, nil
	}
	req := people[0]
	contact, _, err := tx.EnsureContact(req.Email, req.Name)
	if err != nil {
		return nil, err
	}
	subject := in.Subject
	if e.Token != nil {
		subject = e.Token.Strip(subject)
	}
	if strings.TrimSpace(subject) == "" {
		subject = "(no subject)"
	}
	pipe := e.Life.Pipeline(in.PipelineID)
	tk := &store.Ticket{Subject: subject, Status: pipe.NewStatus, Priority: 1, RequesterID: contact.ID,
		ChannelID: in.ChannelID, PipelineID: in.PipelineID, Source: 1, CreatedAt: now}
	if err := tx.CreateTicket(tk); err != nil {
		return nil, err
	}
	for _, cc := range people[1:] {
		if _, _, err := tx.EnsureContact(cc.Email, cc.Name); err != nil {
			return nil, err
		}
		if _, err := tx.AddCC(tk.ID, cc.Email); err != nil {
			return nil, err
		}
	}
	actor, agentID, err := sentActor(tx, from)
	if err != nil {
		return nil, err
	}
	conv, err := e.addConversation(tx, tk, in, "reply", false, false, nil, agentID, now)
	if err != nil {
		return nil, err
	}
	actor.ConversationID = &conv.ID
	if err := Record(tx, tk.ID, actor, "created", "", "", "", "ticket opened by the team's own mail to "+req.Email+" ("+sentWhere(history)+")", now); err != nil {
		return nil, err
	}
	events, err := e.AgentResponded(tx, tk, actor, now)
	if err != nil {
		return nil, err
	}
	if err := tx.UpdateTicket(tk); err != nil {
		return nil, err
	}
	if tk, err = tx.Ticket(tk.ID); err != nil {
		return nil, err
	}
	// The mail went out already: its events reach webhooks and rules,
	// nothing is mailed.
	return e.finish(tx, in, &Outcome{Action: "created", Ticket: tk, Conversation: conv, NoMail: true,
		Events: append([]EventKind{EventTicketCreated, EventAgentReplied}, events...)})
}

// sentWhere says where the team's mail was found, for the history.
func sentWhere(history bool) string {
	if history {
		return "found in the imported history"
	}
	return "sent from the support mailbox, found in its Sent folder"
}

// historyTeamMail reports whether in is mail of an imported history
// (Quiet: deskmail import, an IMAP folder's existing mail) written by
// the team — from an agent's or a support address: that mail is the
// team's reply, as if it were in the Sent folder. Automatic replies and
// bounces are not (an old helpdesk's confirmations stay out).
func (e *Engine) historyTeamMail(tx *store.Tx, in *Incoming, from string) (bool, error) {
	if !in.Quiet || from == "" || in.Kind == "auto_reply" || in.Kind == "bounce" {
		return false, nil
	}
	if e.isSupport(in, from) {
		return true, nil
	}
	_, err := tx.AgentByEmail(from)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, err
}

// sentActor is who sent mail from the support mailbox: the agent whose
// address it is (and their id), else the address itself.
func sentActor(tx *store.Tx, from string) (Actor, *int64, error) {
	agent, err := tx.AgentByEmail(from)
	switch {
	case err == nil:
		return Actor{Type: "agent", Name: agent.Email}, &agent.ID, nil
	case errors.Is(err, store.ErrNotFound):
		return Actor{Type: "mail", Name: from}, nil, nil
	default:
		return Actor{}, nil, err
	}
}

// learnLanguage gives a contact without a language the Content-Language
// of a mail they wrote themselves (not one an agent forwarded or opened
// for them), so that mail to them is written in it.
func learnLanguage(tx *store.Tx, c *store.Contact, in *Incoming) error {
	if c.Language != "" || in.Language == "" || !strings.EqualFold(c.Email, in.From.Email) {
		return nil
	}
	c.Language = in.Language
	return tx.SetContactLanguage(c.ID, in.Language)
}

// threadConversationTicket returns the live ticket an Outlook
// conversation is on, or nil.
func (e *Engine) threadConversationTicket(tx *store.Tx, conv string) (*store.Ticket, error) {
	id, err := tx.ThreadConversationTicket(conv)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	tk, err := tx.Ticket(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil || tk.Deleted {
		return nil, err
	}
	return tk, nil
}

// tokenTicket finds a signed token in the recipient addresses (envelope
// first, then To and Cc) and returns its ticket and what it proves.
func (e *Engine) tokenTicket(tx *store.Tx, in *Incoming, from string) (*store.Ticket, TokenCheck, error) {
	var check TokenCheck
	if e.Signer == nil {
		return nil, check, nil
	}
	addrs := append([]string{}, in.RcptTo...)
	for _, p := range append(append([]Person{}, in.To...), in.Cc...) {
		addrs = append(addrs, p.Email)
	}
	for _, a := range addrs {
		_, tag := SplitAddress(a)
		if tag == "" {
			continue
		}
		c, ok := e.Signer.Check(tag, from)
		if c.Problem != "" && check.Problem == "" {
			check.Problem = c.Problem
		}
		if !ok {
			continue
		}
		tk, err := tx.Ticket(c.TicketID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, check, err
		}
		if !tk.Deleted {
			return tk, c, nil
		}
	}
	return nil, check, nil
}

// builtinNoReply are the no-reply local parts every web form and
// notification system uses; configured patterns add to them.
var builtinNoReply = []string{"noreply@*", "no-reply@*", "no_reply@*", "donotreply@*", "do-not-reply@*"}

// requester picks the requester: the sender, or its Reply-To when the
// sender is a known no-reply or relay address.
func (e *Engine) requester(in *Incoming) Person {
	if len(in.ReplyTo) > 0 && in.ReplyTo[0].Email != "" && e.isNoReply(in.From.Email) {
		return in.ReplyTo[0]
	}
	return in.From
}

func (e *Engine) isNoReply(addr string) bool {
	addr = lower(addr)
	for _, p := range append(builtinNoReply, e.NoReply...) {
		if ok, _ := path.Match(lower(p), addr); ok {
			return true
		}
	}
	return false
}

// ccCandidates are the message's other recipients that become cc's:
// not support addresses, not the requester, not agents.
func (e *Engine) ccCandidates(tx *store.Tx, in *Incoming, requester string) ([]string, error) {
	var out []string
	seen := map[string]bool{lower(requester): true}
	for _, p := range append(append([]Person{}, in.To...), in.Cc...) {
		a := lower(p.Email)
		if a == "" || seen[a] || !strings.Contains(a, "@") || e.isSupport(in, a) {
			continue
		}
		seen[a] = true
		if _, err := tx.AgentByEmail(a); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		out = append(out, a)
	}
	if from := lower(in.From.Email); from != "" && !seen[from] && !e.isSupport(in, from) && !e.isNoReply(from) {
		// The sender is not the requester (Reply-To rule): keep them in
		// the loop, unless it is the no-reply or relay address whose
		// Reply-To named the requester: mail to it goes nowhere.
		if _, err := tx.AgentByEmail(from); errors.Is(err, store.ErrNotFound) {
			out = append(out, from)
		}
	}
	return out, nil
}

// create opens a new ticket (or a follow-up of parent).
func (e *Engine) create(tx *store.Tx, in *Incoming, out *Outcome, req Person, parent *store.Ticket, now time.Time, note string) (*Outcome, error) {
	if req.Email == "" {
		req = Person{Email: "unknown@invalid", Name: "Unknown sender"}
	}
	contact, _, err := tx.EnsureContact(lower(req.Email), req.Name)
	if err != nil {
		return nil, err
	}
	if err := learnLanguage(tx, contact, in); err != nil {
		return nil, err
	}
	subject := in.Subject
	if e.Token != nil {
		subject = e.Token.Strip(subject)
	}
	if in.Forwarded != nil || parent != nil {
		subject = BaseSubject(subject)
	}
	if strings.TrimSpace(subject) == "" {
		subject = "(no subject)"
	}
	pipe := e.Life.Pipeline(in.PipelineID)
	tk := &store.Ticket{
		Subject:     subject,
		Status:      pipe.NewStatus,
		Priority:    1,
		RequesterID: contact.ID,
		ChannelID:   in.ChannelID,
		PipelineID:  in.PipelineID,
		Source:      1,
		CreatedAt:   now,
		// The requester wrote the mail that opens the ticket.
		RequesterRespondedAt: &now,
	}
	if parent != nil {
		tk.ParentID = &parent.ID
		tk.Priority = parent.Priority
		tk.Type, tk.Group, tk.ResponderID = parent.Type, parent.Group, parent.ResponderID
		tk.ChannelID, tk.PipelineID = parent.ChannelID, parent.PipelineID
		tk.Status = e.Life.Pipeline(parent.PipelineID).NewStatus
	}
	if err := tx.CreateTicket(tk); err != nil {
		return nil, err
	}
	if in.Forwarded == nil && !out.Unverified {
		// The requester's own To/Cc join the ticket (an agent address
		// that proved nothing adds nobody).
		ccs, err := e.ccCandidates(tx, in, req.Email)
		if err != nil {
			return nil, err
		}
		for _, cc := range ccs {
			// Everyone on a ticket is a contact, created on first sight.
			if _, _, err := tx.EnsureContact(cc, ""); err != nil {
				return nil, err
			}
			if _, err := tx.AddCC(tk.ID, cc); err != nil {
				return nil, err
			}
		}
	}
	kind := "reply"
	if in.Forwarded != nil {
		kind = "forward"
	}
	conv, err := e.addConversation(tx, tk, in, kind, true, false, &contact.ID, nil, now)
	if err != nil {
		return nil, err
	}
	by := Actor{Type: "mail", Name: lower(in.From.Email), ConversationID: &conv.ID}
	action := "created"
	hist := "ticket created from mail"
	if parent != nil {
		action = "followup_created"
		hist = fmt.Sprintf("follow-up of closed ticket #%d created by a reply", parent.ID)
		if err := Record(tx, parent.ID, by, "followup_created", "", "", "", fmt.Sprintf("reply to this closed ticket opened follow-up #%d", tk.ID), now); err != nil {
			return nil, err
		}
	}
	if note != "" {
		hist += " (" + note + ")"
	}
	if err := Record(tx, tk.ID, by, "created", "", "", "", hist, now); err != nil {
		return nil, err
	}
	if contact.DeletedAt != nil {
		// Freshdesk sends a deleted contact's mail to spam: the ticket
		// is kept, in the trash, and nobody is mailed.
		tk.Deleted = true
		if err := tx.UpdateTicket(tk); err != nil {
			return nil, err
		}
		if err := Record(tx, tk.ID, Actor{Type: "system", Name: "threading"}, "deleted", "", "", "",
			"moved to the trash: "+contact.Email+" is a deleted contact (restore the contact, then the ticket, to work on it)", now); err != nil {
			return nil, err
		}
	}
	if tk, err = tx.Ticket(tk.ID); err != nil {
		return nil, err
	}
	out.Action, out.Ticket, out.Conversation = action, tk, conv
	if !tk.Deleted {
		out.Events = append(out.Events, EventTicketCreated)
	}
	return e.finish(tx, in, out)
}

// customerReply applies a customer's (or colleague's) message to an
// existing ticket.
func (e *Engine) customerReply(tx *store.Tx, tk *store.Ticket, in *Incoming, out *Outcome, via string, now time.Time) (*Outcome, error) {
	from := lower(in.From.Email)
	cat := e.Life.Category(tk.Status)
	if cat == CategoryClosed && !e.Life.ClosedReplyPolicy(tk, now) {
		return e.create(tx, in, out, e.requester(in), tk, now, "")
	}
	contact, _, err := tx.EnsureContact(from, in.From.Name)
	if err != nil {
		return nil, err
	}
	if err := learnLanguage(tx, contact, in); err != nil {
		return nil, err
	}
	conv, err := e.addConversation(tx, tk, in, "reply", true, false, &contact.ID, nil, now)
	if err != nil {
		return nil, err
	}
	by := Actor{Type: "mail", Name: from, ConversationID: &conv.ID}

	// Only the requester (or an agent) adds people to a ticket: the
	// addresses they put in To/Cc join as cc's. Nobody joins because
	// they wrote in.
	if e.isRequester(tk, in, from) {
		ccs, err := e.ccCandidates(tx, in, lower(tk.Requester.Email))
		if err != nil {
			return nil, err
		}
		for _, cc := range ccs {
			if cc == from {
				continue
			}
			isPart, err := tx.IsParticipant(tk.ID, cc)
			if err != nil {
				return nil, err
			}
			if isPart {
				continue
			}
			// Everyone on a ticket is a contact, created on first sight.
			if _, _, err := tx.EnsureContact(cc, ""); err != nil {
				return nil, err
			}
			if added, err := tx.AddCC(tk.ID, cc); err != nil {
				return nil, err
			} else if added {
				if err := Record(tx, tk.ID, by, "cc_added", "cc_emails", "", cc, "copied by the requester on a reply", now); err != nil {
					return nil, err
				}
			}
		}
	}

	how := map[string]string{"headers": "In-Reply-To/References", "token": "reply-address token", "thread-index": "Outlook Thread-Index", "subject": "subject token"}[via]
	if err := Record(tx, tk.ID, by, "customer_replied", "", "", "", "reply by mail, matched by "+how, now); err != nil {
		return nil, err
	}
	// The pipeline's customer_reply_status applies to every reply: a
	// ticket waiting (pending), resolved or reopenable-closed comes back
	// and is reported "reopened"; one in another open-category status
	// (a custom "In progress") follows the pipeline too.
	out.Action = "appended"
	statusChanged := false
	target := e.Life.OpenStatus(tk)
	if target != tk.Status && e.Life.Category(target) != "" && (cat != CategoryOpen || e.Life.Category(target) == CategoryOpen) {
		if err := e.Life.SetStatus(tx, tk, target, by, now); err != nil {
			return nil, err
		}
		statusChanged = true
		switch cat {
		case CategoryPending, CategoryResolved, CategoryClosed:
			if e.Life.Category(target) == CategoryOpen {
				out.Action = "reopened"
				if err := Record(tx, tk.ID, by, "reopened", "", "", "", fmt.Sprintf("customer reply reopened the %s ticket", cat), now); err != nil {
					return nil, err
				}
			}
		}
	}
	tk.RequesterRespondedAt = &now
	if err := tx.UpdateTicket(tk); err != nil {
		return nil, err
	}
	if tk, err = tx.Ticket(tk.ID); err != nil {
		return nil, err
	}
	out.Ticket, out.Conversation = tk, conv
	out.Events = append(out.Events, EventCustomerReplied)
	if statusChanged {
		out.Events = append(out.Events, EventStatusChanged)
	}
	return e.finish(tx, in, out)
}

// agentReply stores an authenticated agent's mail as a public reply
// and applies the pipeline's agent-reply rule.
func (e *Engine) agentReply(tx *store.Tx, tk *store.Ticket, in *Incoming, out *Outcome, now time.Time) (*Outcome, error) {
	if parsed := command.Parse(in.ReplyText); len(parsed.Commands) > 0 || len(parsed.Problems) > 0 {
		return e.agentCommands(tx, tk, in, out, parsed, now)
	}
	conv, err := e.addConversation(tx, tk, in, "reply", false, false, nil, &out.Agent.ID, now)
	if err != nil {
		return nil, err
	}
	by := Actor{Type: "agent", Name: out.Agent.Email, ConversationID: &conv.ID}
	events, err := e.AgentResponded(tx, tk, by, now)
	if err != nil {
		return nil, err
	}
	if err := tx.UpdateTicket(tk); err != nil {
		return nil, err
	}
	if tk, err = tx.Ticket(tk.ID); err != nil {
		return nil, err
	}
	out.Action, out.Ticket, out.Conversation = "appended", tk, conv
	out.Events = append(append(out.Events, EventAgentReplied), events...)
	return e.finish(tx, in, out)
}

// AgentResponded applies the agent-reply rule and first-response
// timestamps to tk (in memory; the caller saves it).
//
// It returns the events besides the reply itself: status_changed when
// the pipeline's agent-reply status changed the ticket's status.
func (e *Engine) AgentResponded(tx *store.Tx, tk *store.Ticket, by Actor, now time.Time) ([]EventKind, error) {
	if tk.FirstRespondedAt == nil {
		tk.FirstRespondedAt = &now
	}
	tk.AgentRespondedAt = &now
	var events []EventKind
	if code, ok := e.Life.AgentReplyStatus(tk); ok {
		cat := e.Life.Category(tk.Status)
		// An agent reply does not pull a resolved or closed ticket back.
		if cat == CategoryOpen || cat == CategoryPending {
			was := tk.Status
			if err := e.Life.SetStatus(tx, tk, code, by, now); err != nil {
				return nil, err
			}
			if tk.Status != was {
				events = append(events, EventStatusChanged)
			}
		}
	}
	return events, Record(tx, tk.ID, by, "agent_replied", "", "", "", "agent reply", now)
}

func (e *Engine) addConversation(tx *store.Tx, tk *store.Ticket, in *Incoming, kind string, incoming, private bool, contactID, agentID *int64, now time.Time) (*store.Conversation, error) {
	var to, cc []string
	for _, p := range in.To {
		to = append(to, lower(p.Email))
	}
	for _, p := range in.Cc {
		cc = append(cc, lower(p.Email))
	}
	raw := in.RawID
	c := &store.Conversation{
		TicketID: tk.ID, RawID: &raw, Incoming: incoming, Private: private, Kind: kind, ContactID: contactID,
		FromEmail: lower(in.From.Email), FromName: in.From.Name, ToEmails: to, CcEmails: cc, Subject: in.Subject,
		BodyText: in.Text, BodyHTML: in.HTML, ReplyText: in.ReplyText, MessageID: in.MessageID, CreatedAt: now,
		Files: append([]store.Attachment(nil), in.Files...), AgentID: agentID,
	}
	if agentID != nil || in.Sent {
		// An agent's mail becomes their new text only: quoted history and
		// signature are not sent on to the customer.
		c.BodyText, c.BodyHTML = in.ReplyText, ""
	}
	if err := tx.AddConversation(c); err != nil {
		return nil, err
	}
	return c, nil
}

// finish points the message's Message-ID at its ticket.
func (e *Engine) finish(tx *store.Tx, in *Incoming, out *Outcome) (*Outcome, error) {
	if out.Ticket != nil {
		var conv *int64
		if out.Conversation != nil {
			conv = &out.Conversation.ID
		}
		if err := tx.SetMessageIDTarget(in.MessageID, &out.Ticket.ID, conv); err != nil {
			return nil, err
		}
		if in.ThreadConversation != "" {
			if err := tx.SetThreadConversation(in.ThreadConversation, out.Ticket.ID); err != nil {
				return nil, err
			}
		}
	}
	out.InReplyTo = in.MessageID
	return out, nil
}

// sentReply threads mail the team sent from the shared mailbox (its
// Sent folder) or found in an imported history (history set) onto its
// ticket as an outgoing agent reply. Nothing is mailed: the customer
// already has it. Mail that belongs to no ticket opens one (sentNew);
// nil means history mail that sentNew leaves to the live rules.
func (e *Engine) sentReply(tx *store.Tx, in *Incoming, from string, now time.Time, history bool) (*Outcome, error) {
	// The mailbox is ours and authenticated, so the subject token needs
	// no participant check: pass isAgent.
	m, err := e.find(tx, in, from, true)
	if err != nil {
		return nil, err
	}
	tk := m.tk
	if tk == nil {
		return e.sentNew(tx, in, from, now, history)
	}
	actor, agentID, err := sentActor(tx, from)
	if err != nil {
		return nil, err
	}
	// Only the new text: the quoted history is already on the ticket.
	conv, err := e.addConversation(tx, tk, in, "reply", false, false, nil, agentID, now)
	if err != nil {
		return nil, err
	}
	actor.ConversationID = &conv.ID
	events, err := e.AgentResponded(tx, tk, actor, now)
	if err != nil {
		return nil, err
	}
	if err := Record(tx, tk.ID, actor, "sent_from_mailbox", "", "", "", "reply "+sentWhere(history), now); err != nil {
		return nil, err
	}
	if err := tx.UpdateTicket(tk); err != nil {
		return nil, err
	}
	if tk, err = tx.Ticket(tk.ID); err != nil {
		return nil, err
	}
	return e.finish(tx, in, &Outcome{Action: "appended", Ticket: tk, Conversation: conv, NoMail: true,
		Events: append([]EventKind{EventAgentReplied}, events...)})
}
