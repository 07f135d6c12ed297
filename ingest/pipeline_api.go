package ingest

import (
	"context"
	"errors"
	"fmt"
	"html"
	"slices"
	"strings"
	"time"

	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// This file holds the changes the HTTP API makes to tickets. Each one
// runs in one store transaction, through the same threading engine
// (lifecycle rules, history) and the same Env.Notify (outbox) as mail,
// so an API reply is mailed, threaded and recorded exactly like an
// agent's reply by mail, and a mail is queued if and only if the
// change commits.

// ErrNotNote is returned when a conversation that is not a note is
// edited: mail that was received or sent cannot be changed.
var ErrNotNote = errors.New("only notes can be edited")

// ErrNotAgent is returned when notify_emails names an address that is
// not an active agent.
var ErrNotAgent = errors.New("not an active agent")

// APIMessage is the body of a reply, a note or a new ticket's
// description written through the API.
type APIMessage struct {
	// HTML is the body as sent (Freshdesk bodies are HTML). It is
	// sanitized before it is stored; its text rendering becomes the
	// plain-text body. When HTML is empty, Text is used as plain text.
	HTML string
	Text string
	// Cc are extra recipients of a reply.
	Cc []string
	// Files are attachments (Content set).
	Files []store.Attachment
}

// bodies returns the plain text and sanitized HTML of m.
func (m APIMessage) bodies() (text, htmlBody string) {
	if strings.TrimSpace(m.HTML) != "" {
		htmlBody = sanitizeHTML(m.HTML)
		return htmlToText(htmlBody), htmlBody
	}
	text = strings.TrimSpace(strings.ReplaceAll(m.Text, "\r\n", "\n"))
	if text == "" {
		return "", ""
	}
	return text, "<div>" + strings.ReplaceAll(html.EscapeString(text), "\n", "<br>") + "</div>"
}

func (m APIMessage) files() []store.Attachment {
	out := make([]store.Attachment, 0, len(m.Files))
	for _, f := range m.Files {
		f.OriginalFilename = f.Filename
		f.Filename = SafeFilename(f.Filename)
		if f.Filename == "" {
			f.Filename = "attachment"
		}
		out = append(out, f)
	}
	return out
}

// NewTicket is a ticket created by an agent through the API.
type NewTicket struct {
	RequesterEmail string
	RequesterName  string
	Subject        string
	Description    APIMessage
	// Status and Priority: 0 means the pipeline's new status and Low.
	Status   int
	Priority int
	Type     string
	Group    string
	// ResponderID assigns an agent (0: nobody).
	ResponderID int64
	Tags        []string
	CcEmails    []string
	// Channel is a configured channel name ("" for the default one).
	Channel string
	// Source is Freshdesk's source code (default 2, portal; 10 for an
	// outbound email).
	Source int
	// Outbound makes the description the agent's first message, mailed
	// to the requester (and cc's) as an agent reply, instead of the
	// requester's message answered by a confirmation.
	Outbound bool
}

// ChannelNames lists the configured channel names, the default first.
func (p *Pipeline) ChannelNames() []string {
	var rest []string
	for name := range p.channels {
		if name != p.addrs.Default() {
			rest = append(rest, name)
		}
	}
	slices.Sort(rest)
	return append([]string{p.addrs.Default()}, rest...)
}

func apiActor(ctx context.Context, agent *store.Agent, conv *int64) threading.Actor {
	name := ""
	if agent != nil {
		name = agent.Email
	}
	typ := "api"
	if Via(ctx) != "api" {
		// An agent in person (the web console), as by their mail
		// commands; the history note names the front end.
		typ = "agent"
	}
	return threading.Actor{Type: typ, Name: name, ConversationID: conv}
}

// viaKey is the context key of WithVia.
type viaKey struct{}

// WithVia marks the changes made with ctx as coming through another
// front end than the API ("console" for the web console): the ticket
// history records them as the agent's own (actor type "agent", as
// their mail commands are) and its notes name the front end. The
// rules and the code path are the API's.
func WithVia(ctx context.Context, via string) context.Context {
	return context.WithValue(ctx, viaKey{}, via)
}

// Via returns the front end ctx was marked with ("api" by default).
func Via(ctx context.Context) string {
	if v, ok := ctx.Value(viaKey{}).(string); ok && v != "" {
		return v
	}
	return "api"
}

// throughVia words the front end for a history note: "through the
// API", "through the console".
func throughVia(ctx context.Context) string {
	if v := Via(ctx); v != "api" {
		return "through the " + v
	}
	return "through the API"
}

func channelName(tk *store.Ticket) string {
	if tk.Channel != nil {
		return *tk.Channel
	}
	return ""
}

// CreateTicket creates a ticket for a requester (the contact is
// created on first sight), applies status, priority, type, group,
// responder, tags and cc's through the lifecycle (history is written
// for each), stores the description as the first conversation and
// queues the mail it causes: a confirmation to the requester, or with
// Outbound the description itself as the agent's reply. Everything
// commits in one transaction.
func (p *Pipeline) CreateTicket(ctx context.Context, nt NewTicket, agent *store.Agent) (*store.Ticket, error) {
	email := strings.ToLower(strings.TrimSpace(nt.RequesterEmail))
	if email == "" {
		return nil, errors.New("create ticket: requester email missing")
	}
	chName := nt.Channel
	if chName == "" {
		chName = p.addrs.Default()
	}
	var chID, pipeID *int64
	if ci, ok := p.channels[chName]; ok {
		id, pid := ci.id, ci.pipeline
		chID, pipeID = &id, &pid
	} else if nt.Channel != "" {
		return nil, fmt.Errorf("create ticket: unknown channel %q", nt.Channel)
	}
	subject := strings.TrimSpace(nt.Subject)
	if subject == "" {
		subject = "(no subject)"
	}
	source := nt.Source
	if source == 0 {
		source = 2
	}
	now := p.env.Now()
	var tk *store.Ticket
	err := p.st.Write(ctx, func(tx *store.Tx) error {
		contact, _, err := tx.EnsureContact(email, nt.RequesterName)
		if err != nil {
			return err
		}
		pipe := p.engine.Life.Pipeline(pipeID)
		tk = &store.Ticket{Subject: subject, Status: pipe.NewStatus, Priority: 1, RequesterID: contact.ID,
			ChannelID: chID, PipelineID: pipeID, Source: source, CreatedAt: now}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		text, body := nt.Description.bodies()
		conv := &store.Conversation{TicketID: tk.ID, Subject: subject, BodyText: text, BodyHTML: body, ReplyText: text,
			CcEmails: lowerAll(nt.CcEmails), CreatedAt: now, Files: nt.Description.files(), Kind: "reply"}
		if nt.Outbound {
			conv.AgentID, conv.FromEmail, conv.FromName = &agent.ID, agent.Email, agent.Name
			conv.ToEmails = []string{contact.Email}
		} else {
			conv.Incoming, conv.ContactID, conv.FromEmail, conv.FromName = true, &contact.ID, contact.Email, contact.Name
		}
		if err := tx.AddConversation(conv); err != nil {
			return err
		}
		by := apiActor(ctx, agent, &conv.ID)
		how := "ticket created " + throughVia(ctx)
		if nt.Outbound {
			how = "outbound ticket created " + throughVia(ctx)
		}
		if err := threading.Record(tx, tk.ID, by, "created", "", "", "", how, now); err != nil {
			return err
		}
		c := threading.Changes{AddTags: nt.Tags, AddCC: nt.CcEmails}
		if nt.Status != 0 {
			c.Status = &nt.Status
		}
		if nt.Priority != 0 {
			c.Priority = &nt.Priority
		}
		if nt.Type != "" {
			c.Type = &nt.Type
		}
		if nt.Group != "" {
			c.Group = &nt.Group
		}
		if nt.ResponderID != 0 {
			c.Responder = &nt.ResponderID
		}
		events, err := p.engine.Apply(tx, tk, c, by, now)
		if err != nil {
			return fmt.Errorf("create ticket: %w", err)
		}
		var first threading.EventKind = threading.EventTicketCreated
		if nt.Outbound {
			more, err := p.engine.AgentResponded(tx, tk, by, now)
			if err != nil {
				return err
			}
			events = append(events, more...)
			first = threading.EventAgentReplied
		} else {
			tk.RequesterRespondedAt = &now
		}
		if err := tx.UpdateTicket(tk); err != nil {
			return err
		}
		if tk, err = tx.Ticket(tk.ID); err != nil {
			return err
		}
		ns := []Notice{{Event: first, Ticket: tk, Channel: chName, Agent: agent, Conversation: conv}}
		for _, ev := range events {
			ns = append(ns, Notice{Event: ev, Ticket: tk, Channel: chName, Agent: agent})
		}
		if _, err := p.dispatch(tx, ns, now); err != nil {
			return err
		}
		tk, err = tx.Ticket(tk.ID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create ticket: %w", err)
	}
	return tk, nil
}

// UpdateFromAPI applies changes (and, when subject is non-nil, a new subject)
// to a ticket through the lifecycle in one transaction, and queues the
// mail the changes cause (closing mail…). It is Pipeline.Update plus
// what only the API can change.
func (p *Pipeline) UpdateFromAPI(ctx context.Context, ticketID int64, c threading.Changes, subject *string, agent *store.Agent) (*store.Ticket, error) {
	var tk *store.Ticket
	err := p.st.Write(ctx, func(tx *store.Tx) error {
		var err error
		if tk, err = tx.Ticket(ticketID); err != nil {
			return err
		}
		now := p.env.Now()
		by := apiActor(ctx, agent, nil)
		if subject != nil && strings.TrimSpace(*subject) != tk.Subject && strings.TrimSpace(*subject) != "" {
			old := tk.Subject
			tk.Subject = strings.TrimSpace(*subject)
			if err := threading.Record(tx, tk.ID, by, "subject_changed", "subject", old, tk.Subject, "", now); err != nil {
				return err
			}
		}
		events, err := p.engine.Apply(tx, tk, c, by, now)
		if err != nil {
			return err
		}
		if tk, err = tx.Ticket(ticketID); err != nil {
			return err
		}
		if _, err := p.dispatch(tx, p.notices(events, tk, agent), now); err != nil {
			return err
		}
		tk, err = tx.Ticket(ticketID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ticket %d: %w", ticketID, err)
	}
	return tk, nil
}

// lastCustomerMessageID is the Message-ID of the newest incoming
// public mail of a ticket: what an agent's reply answers.
func lastCustomerMessageID(convs []store.Conversation) string {
	for i := len(convs) - 1; i >= 0; i-- {
		c := convs[i]
		if c.Incoming && !c.Private && c.MessageID != "" && c.Kind == "reply" {
			return c.MessageID
		}
	}
	for i := len(convs) - 1; i >= 0; i-- {
		if convs[i].MessageID != "" {
			return convs[i].MessageID
		}
	}
	return ""
}

// Reply stores a public reply by agent on a ticket, applies the agent
// reply rules (first-response timestamps, the pipeline's agent-reply
// status) and queues it as mail to the requester and cc's, In-Reply-To
// the customer's latest mail — the same as an agent's reply by mail.
func (p *Pipeline) Reply(ctx context.Context, ticketID int64, m APIMessage, agent *store.Agent) (*store.Ticket, *store.Conversation, error) {
	if agent == nil {
		return nil, nil, errors.New("reply: no agent")
	}
	var tk *store.Ticket
	var conv *store.Conversation
	err := p.st.Write(ctx, func(tx *store.Tx) error {
		var err error
		if tk, err = tx.Ticket(ticketID); err != nil {
			return err
		}
		convs, err := tx.Conversations(ticketID)
		if err != nil {
			return err
		}
		now := p.env.Now()
		text, body := m.bodies()
		conv = &store.Conversation{TicketID: tk.ID, Kind: "reply", AgentID: &agent.ID, FromEmail: agent.Email, FromName: agent.Name,
			ToEmails: []string{tk.Requester.Email}, CcEmails: lowerAll(m.Cc), Subject: "Re: " + tk.Subject,
			BodyText: text, BodyHTML: body, ReplyText: text, CreatedAt: now, Files: m.files()}
		if err := tx.AddConversation(conv); err != nil {
			return err
		}
		by := apiActor(ctx, agent, &conv.ID)
		events, err := p.engine.AgentResponded(tx, tk, by, now)
		if err != nil {
			return err
		}
		if err := tx.UpdateTicket(tk); err != nil {
			return err
		}
		if tk, err = tx.Ticket(ticketID); err != nil {
			return err
		}
		ns := append([]Notice{{Event: threading.EventAgentReplied, Ticket: tk, Conversation: conv, Channel: channelName(tk),
			InReplyTo: lastCustomerMessageID(convs), Agent: agent}}, p.notices(events, tk, agent)...)
		if _, err := p.dispatch(tx, ns, now); err != nil {
			return err
		}
		tk, err = tx.Ticket(ticketID)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reply to ticket %d: %w", ticketID, err)
	}
	return tk, conv, nil
}

// AddNote stores a note on a ticket (private unless private is false;
// incoming marks a note written on behalf of the customer). The
// assigned agent is told, as for a #note by mail, and so is each agent
// named in notify (Freshdesk's notify_emails: in addition, not
// instead); the author is never told of their own note. The named
// agents' addresses are kept as the note's ToEmails (the API's
// notified_to). Naming an address that is no active agent is
// ErrNotAgent and stores nothing.
func (p *Pipeline) AddNote(ctx context.Context, ticketID int64, m APIMessage, private, incoming bool, notify []string, agent *store.Agent) (*store.Conversation, error) {
	if agent == nil {
		return nil, errors.New("note: no agent")
	}
	var conv *store.Conversation
	err := p.st.Write(ctx, func(tx *store.Tx) error {
		tk, err := tx.Ticket(ticketID)
		if err != nil {
			return err
		}
		notified, err := notifyList(tx, notify)
		if err != nil {
			return err
		}
		now := p.env.Now()
		text, body := m.bodies()
		conv = &store.Conversation{TicketID: tk.ID, Kind: "note", Private: private, Incoming: incoming, AgentID: &agent.ID,
			FromEmail: agent.Email, FromName: agent.Name, ToEmails: notified, Subject: tk.Subject,
			BodyText: text, BodyHTML: body, ReplyText: text, CreatedAt: now, Files: m.files()}
		if err := tx.AddConversation(conv); err != nil {
			return err
		}
		kind := "private"
		if !private {
			kind = "public"
		}
		if err := threading.Record(tx, tk.ID, apiActor(ctx, agent, &conv.ID), "note_added", "", "", "", kind+" note added "+throughVia(ctx), now); err != nil {
			return err
		}
		if err := tx.UpdateTicket(tk); err != nil {
			return err
		}
		// One notice: the outbox tells the assigned agent, as for any
		// note, and each agent named besides; webhooks and rules hear
		// of the note once.
		_, err = p.dispatch(tx, []Notice{{Event: threading.EventNoteAdded, Ticket: tk, Conversation: conv, Channel: channelName(tk), Agent: agent, NotifyAlso: notified}}, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("note on ticket %d: %w", ticketID, err)
	}
	return conv, nil
}

// notifyList resolves a note's notify_emails to the active agents'
// addresses (lower case, each once, in the order given); an address
// that is no active agent is ErrNotAgent.
func notifyList(tx *store.Tx, notify []string) ([]string, error) {
	out := []string{}
	for _, n := range notify {
		ag, err := tx.AgentByEmail(strings.ToLower(strings.TrimSpace(n)))
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("notify %s: %w", n, ErrNotAgent)
		}
		if err != nil {
			return nil, err
		}
		email := strings.ToLower(ag.Email)
		if !slices.Contains(out, email) {
			out = append(out, email)
		}
	}
	return out, nil
}

// EditNote replaces a note's body (and records the edit in the
// ticket's history). Other conversations give ErrNotNote.
func (p *Pipeline) EditNote(ctx context.Context, convID int64, m APIMessage, agent *store.Agent) (*store.Conversation, error) {
	var conv *store.Conversation
	err := p.st.Write(ctx, func(tx *store.Tx) error {
		c, err := tx.Conversation(convID)
		if err != nil {
			return err
		}
		if c.Kind != "note" {
			return ErrNotNote
		}
		text, body := m.bodies()
		if err := tx.UpdateConversationBody(convID, text, body); err != nil {
			return err
		}
		if err := threading.Record(tx, c.TicketID, apiActor(ctx, agent, &c.ID), "note_edited", "", "", "", "note edited "+throughVia(ctx), p.env.Now()); err != nil {
			return err
		}
		conv, err = tx.Conversation(convID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("edit conversation %d: %w", convID, err)
	}
	return conv, nil
}

// DeleteConversation removes a conversation and records it in the
// ticket's history.
func (p *Pipeline) DeleteConversation(ctx context.Context, convID int64, agent *store.Agent) error {
	err := p.st.Write(ctx, func(tx *store.Tx) error {
		c, err := tx.Conversation(convID)
		if err != nil {
			return err
		}
		if err := tx.DeleteConversation(convID); err != nil {
			return err
		}
		note := fmt.Sprintf("%s %d from %s deleted %s", c.Kind, c.ID, c.FromEmail, throughVia(ctx))
		return threading.Record(tx, c.TicketID, apiActor(ctx, agent, nil), "conversation_deleted", "", "", "", note, p.env.Now())
	})
	if err != nil {
		return fmt.Errorf("delete conversation %d: %w", convID, err)
	}
	return nil
}

// SetDeleted moves a ticket to the trash (deleted) or restores it, as
// Freshdesk's DELETE /tickets/{id} and PUT /tickets/{id}/restore do.
// A trashed ticket is left out of lists; its mail still threads.
func (p *Pipeline) SetDeleted(ctx context.Context, ticketID int64, deleted bool, agent *store.Agent) error {
	err := p.st.Write(ctx, func(tx *store.Tx) error {
		tk, err := tx.Ticket(ticketID)
		if err != nil {
			return err
		}
		if tk.Deleted == deleted {
			return nil
		}
		tk.Deleted = deleted
		action := "deleted"
		if !deleted {
			action = "restored"
		}
		if err := threading.Record(tx, tk.ID, apiActor(ctx, agent, nil), action, "", "", "", "ticket "+action+" "+throughVia(ctx), p.env.Now()); err != nil {
			return err
		}
		return tx.UpdateTicket(tk)
	})
	if err != nil {
		return fmt.Errorf("ticket %d: %w", ticketID, err)
	}
	return nil
}

func lowerAll(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ApplyIn applies changes to a ticket inside the caller's transaction
// with the lifecycle's rules, history, mail (the closing mail rule:
// closing a resolved ticket sends none), webhooks and automation rules
// — what the SLA scheduler's automatic close uses. The caller commits.
func (p *Pipeline) ApplyIn(tx *store.Tx, tk *store.Ticket, c threading.Changes, by threading.Actor, now time.Time) error {
	events, err := p.engine.Apply(tx, tk, c, by, now)
	if err != nil {
		return err
	}
	if tk, err = tx.Ticket(tk.ID); err != nil {
		return err
	}
	_, err = p.dispatch(tx, p.notices(events, tk, nil), now)
	return err
}

// ClosedStatus returns the status an automatic close moves a ticket
// to: the first closed-category status of its pipeline (5 by default).
func (p *Pipeline) ClosedStatus(tk *store.Ticket) int {
	for _, code := range p.engine.Life.Pipeline(tk.PipelineID).Statuses {
		if p.engine.Life.Category(code) == threading.CategoryClosed {
			return code
		}
	}
	return 5
}
