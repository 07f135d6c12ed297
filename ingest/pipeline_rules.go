package ingest

import (
	"fmt"
	"html"
	"strings"
	"time"

	"github.com/deskmail/deskmail/command"
	"github.com/deskmail/deskmail/rules"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
	"github.com/deskmail/deskmail/webhook"
)

// This file is the one seam every ticket event passes: a mail, a
// Sent-folder reply, an API call, an agent's mail command, the CLI and
// the SLA scheduler all hand the notices of a change to dispatch,
// inside the change's transaction. dispatch gives them to the outbound
// side (Env.Notify: mail and webhooks), then runs the automation rules
// (Env.Rules) on them; a rule's actions go through ruleDoer, which is
// the same lifecycle code (threading.Engine.ResolveCommands and Apply)
// as an agent's email commands.

// notices turns the events of one lifecycle change into notices.
func (p *Pipeline) notices(events []threading.EventKind, tk *store.Ticket, agent *store.Agent) []Notice {
	ns := make([]Notice, 0, len(events))
	for _, ev := range events {
		ns = append(ns, Notice{Event: ev, Ticket: tk, Channel: channelName(tk), Agent: agent})
	}
	return ns
}

// withClosed adds the ticket_closed a change into a closed status from
// a resolved one reports to webhooks and rules: the lifecycle reports
// no ticket_closed then (the customer had the closing mail when the
// ticket was resolved), so the notice sends no mail.
func withClosed(ns []Notice) []Notice {
	var out []Notice
	for _, n := range ns {
		out = append(out, n)
		if n.Event != threading.EventStatusChanged || n.Ticket == nil || n.Ticket.Category != threading.CategoryClosed {
			continue
		}
		told := false
		for _, m := range ns {
			if m.Event == threading.EventTicketClosed && m.Ticket != nil && m.Ticket.ID == n.Ticket.ID {
				told = true
			}
		}
		if !told {
			c := n
			c.Event, c.NoMail = threading.EventTicketClosed, true
			out = append(out, c)
		}
	}
	return out
}

// dispatch hands the notices of one change to the outbound side and
// then runs the rules on them, inside tx; now stamps what rules do.
// ran reports whether a rule acted (the caller reads the ticket again).
func (p *Pipeline) dispatch(tx *store.Tx, ns []Notice, now time.Time) (ran bool, err error) {
	ns = withClosed(ns)
	if p.env.Notify != nil {
		for _, n := range ns {
			if err := p.env.Notify(tx, n); err != nil {
				return false, fmt.Errorf("outbound %s: %w", n.Event, err)
			}
		}
	}
	return p.runRules(tx, ns, now)
}

// RunRules runs the automation rules on notices whose outbound side
// the caller handled (the SLA scheduler's sla_breached), inside tx.
func (p *Pipeline) RunRules(tx *store.Tx, ns ...Notice) error {
	_, err := p.runRules(tx, ns, tx.Now())
	return err
}

func (p *Pipeline) runRules(tx *store.Tx, ns []Notice, now time.Time) (bool, error) {
	if p.env.Rules.Len() == 0 {
		return false, nil
	}
	type key struct {
		ev     threading.EventKind
		ticket int64
		conv   int64
	}
	seen := map[key]bool{}
	var evs []rules.Event
	for _, n := range ns {
		// Imported history runs no rules; command_error is the agent's
		// own mistake, not a ticket event; a copy was counted once.
		if n.Quiet || n.Copy || n.Ticket == nil || n.Event == threading.EventCommandError {
			continue
		}
		k := key{ev: n.Event, ticket: n.Ticket.ID}
		if n.Conversation != nil {
			k.conv = n.Conversation.ID
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		ev := rules.Event{Kind: string(n.Event), TicketID: n.Ticket.ID, Conversation: n.Conversation}
		if n.Breach != nil {
			ev.Payload = n.Breach
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return false, nil
	}
	if now.IsZero() {
		now = tx.Now()
	}
	d := &ruleDoer{p: p, now: now}
	if err := p.env.Rules.Run(tx, d, evs...); err != nil {
		return false, err
	}
	return d.acted, nil
}

// ruleDoer carries out rule actions with the pipeline's lifecycle.
type ruleDoer struct {
	p     *Pipeline
	now   time.Time
	acted bool
}

func (d *ruleDoer) notify(tx *store.Tx, ns []Notice) error {
	if d.p.env.Notify == nil {
		return nil
	}
	for _, n := range ns {
		if err := d.p.env.Notify(tx, n); err != nil {
			return fmt.Errorf("outbound %s: %w", n.Event, err)
		}
	}
	return nil
}

func ruleEvents(ns []Notice) []rules.Event {
	out := make([]rules.Event, 0, len(ns))
	for _, n := range ns {
		out = append(out, rules.Event{Kind: string(n.Event), TicketID: n.Ticket.ID, Conversation: n.Conversation})
	}
	return out
}

// Change implements rules.Doer: the commands are resolved and applied
// exactly as an agent's email commands (#status pending…).
func (d *ruleDoer) Change(tx *store.Tx, tk *store.Ticket, cmds []command.Command, by threading.Actor) ([]rules.Event, []string, error) {
	res, err := d.p.engine.ResolveCommands(tx, tk, cmds, nil)
	if err != nil {
		return nil, nil, err
	}
	if len(res.Errors) > 0 {
		return nil, res.Errors, nil
	}
	events, err := d.p.engine.Apply(tx, tk, res.Changes, by, d.now)
	if err != nil {
		return nil, nil, err
	}
	d.acted = true
	if tk, err = tx.Ticket(tk.ID); err != nil {
		return nil, nil, err
	}
	ns := withClosed(d.p.notices(events, tk, nil))
	if err := d.notify(tx, ns); err != nil {
		return nil, nil, err
	}
	return ruleEvents(ns), nil, nil
}

// Note implements rules.Doer: a private note by the rule, mailed to
// the agents named (as the API's notify_emails does); without agents
// it is mailed to nobody.
func (d *ruleDoer) Note(tx *store.Tx, tk *store.Ticket, text string, notify []string, by threading.Actor) (*rules.Event, error) {
	conv := &store.Conversation{TicketID: tk.ID, Kind: "note", Private: true, FromName: by.Name, Subject: tk.Subject,
		BodyText: text, BodyHTML: "<div>" + strings.ReplaceAll(html.EscapeString(text), "\n", "<br>") + "</div>", ReplyText: text,
		CreatedAt: d.now}
	if err := tx.AddConversation(conv); err != nil {
		return nil, err
	}
	d.acted = true
	actor := by
	actor.ConversationID = &conv.ID
	if err := threading.Record(tx, tk.ID, actor, "note_added", "", "", "", "private note by rule "+by.Name, d.now); err != nil {
		return nil, err
	}
	if err := tx.UpdateTicket(tk); err != nil {
		return nil, err
	}
	tk, err := tx.Ticket(tk.ID)
	if err != nil {
		return nil, err
	}
	ns := []Notice{{Event: threading.EventNoteAdded, Ticket: tk, Conversation: conv, Channel: channelName(tk), NoMail: true}}
	for _, a := range notify {
		email := strings.ToLower(strings.TrimSpace(a))
		if email == "assignee" {
			if tk.Responder == nil {
				continue
			}
			email = *tk.Responder
		}
		ag, err := tx.AgentByEmail(email)
		if err != nil || !ag.Active {
			// An agent who left is not mailed; the note stays.
			continue
		}
		cp := *tk
		cp.Responder = &ag.Email
		ns = append(ns, Notice{Event: threading.EventNoteAdded, Ticket: &cp, Conversation: conv, Channel: channelName(tk), Copy: true})
	}
	if err := d.notify(tx, ns); err != nil {
		return nil, err
	}
	ev := ruleEvents(ns[:1])[0]
	return &ev, nil
}

// Webhook implements rules.Doer through Env.Webhook.
func (d *ruleDoer) Webhook(tx *store.Tx, hook string, ev rules.Event, rule string) error {
	if d.p.env.Webhook == nil {
		return fmt.Errorf("webhook %s: no webhooks configured", hook)
	}
	tk, err := tx.Ticket(ev.TicketID)
	if err != nil {
		return err
	}
	n := Notice{Event: threading.EventKind(ev.Kind), Ticket: tk, Conversation: ev.Conversation, Channel: channelName(tk)}
	if b, ok := ev.Payload.(*webhook.Breach); ok {
		n.Breach = b
	}
	return d.p.env.Webhook(tx, hook, n, rule)
}
