package threading

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/deskmail/deskmail/command"
	"github.com/deskmail/deskmail/locale"
	"github.com/deskmail/deskmail/store"
	"golang.org/x/text/unicode/norm"
)

// CommandResult is what an agent's commands mean for a ticket.
type CommandResult struct {
	Changes Changes
	// Note makes the mail a private note the customer never receives.
	Note bool
	// SendAndResolve sends the reply and resolves the ticket.
	SendAndResolve bool
	// Errors quote each offending command and say what is accepted.
	// When there is any, nothing is applied.
	Errors []string
}

// statusAliases maps the status words of every built-in language
// (locale) to a category; priorityNames likewise for priorities.
var (
	statusAliases = locale.StatusWords()
	priorityNames = locale.PriorityWords()
)

const acceptedCommands = "status, priority, assign (or agent), group, type, tags, cc, note, send-and-resolve"

func fold(s string) string {
	return strings.ToLower(norm.NFC.String(strings.Join(strings.Fields(s), " ")))
}

// ResolveCommands turns parsed commands into changes for tk, checking
// every value; sender is the authenticated agent (for "me").
func (e *Engine) ResolveCommands(tx *store.Tx, tk *store.Ticket, cmds []command.Command, sender *store.Agent) (CommandResult, error) {
	var r CommandResult
	bad := func(c command.Command, format string, args ...any) {
		r.Errors = append(r.Errors, fmt.Sprintf("%q: %s", c.Line, fmt.Sprintf(format, args...)))
	}
	for _, c := range cmds {
		v := strings.TrimSpace(c.Value)
		switch c.Key {
		case "status", "state", "statut":
			code, ok := e.statusFor(tk, v)
			if !ok {
				bad(c, "unknown status %q; use one of %s", v, e.statusChoices(tk))
				continue
			}
			r.Changes.Status = &code
		case "priority", "priorite", "priorité":
			p, ok := priorityNames[fold(v)]
			if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 4 {
				p, ok = n, true
			}
			if !ok {
				bad(c, "unknown priority %q; use low, medium, high, urgent or 1–4", v)
				continue
			}
			r.Changes.Priority = &p
		case "agent", "assign", "assignee", "responder", "assigner":
			id, err := e.agentFor(tx, v, sender)
			if err != nil {
				bad(c, "%v", err)
				continue
			}
			r.Changes.Responder = &id
		case "group", "groupe":
			g := v
			if isNone(v) {
				g = ""
			} else if g == "" {
				bad(c, "group needs a name (or none)")
				continue
			}
			r.Changes.Group = &g
		case "type":
			ty := v
			if isNone(v) {
				ty = ""
			} else if ty == "" {
				bad(c, "type needs a value (or none)")
				continue
			}
			r.Changes.Type = &ty
		case "tags", "tag":
			add, remove := splitSigned(v)
			if len(add)+len(remove) == 0 {
				bad(c, "tags needs +tag or -tag")
				continue
			}
			r.Changes.AddTags = append(r.Changes.AddTags, add...)
			r.Changes.RemoveTags = append(r.Changes.RemoveTags, remove...)
		case "cc":
			add, remove := splitSigned(v)
			if len(add)+len(remove) == 0 {
				bad(c, "cc needs +address or -address")
				continue
			}
			for _, a := range append(append([]string{}, add...), remove...) {
				if !strings.Contains(a, "@") || strings.ContainsAny(a, "<>\"") {
					bad(c, "%q is not an email address", a)
				}
			}
			r.Changes.AddCC = append(r.Changes.AddCC, lowerAll(add)...)
			r.Changes.RemoveCC = append(r.Changes.RemoveCC, lowerAll(remove)...)
		case "note", "private", "prive", "privé":
			if v != "" && !c.Block {
				bad(c, "#note takes no value: the whole mail becomes the note")
				continue
			}
			r.Note = true
		case "action":
			switch fold(v) {
			case "note", "private_note", "private note":
				r.Note = true
			case "send_and_resolve", "send and resolve", "send_and_close", "send and close", "resolve", "solve", "close":
				r.SendAndResolve = true
			default:
				bad(c, "unknown action %q; use note or send_and_close", v)
			}
		case "send_and_resolve", "send_and_close", "sendandclose", "sendandresolve", "solve", "resolve", "send_close":
			r.SendAndResolve = true
		case "requester", "demandeur", "customer", "client":
			// Used when an agent creates a ticket by mail; checked there.
			if !strings.Contains(v, "@") {
				bad(c, "requester needs the customer's email address")
			}
		case "source":
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 10 {
				bad(c, "source must be a Freshdesk source code 1–10")
			}
			// Accepted for compatibility with Freshdesk scripts; a mail
			// ticket keeps source 1.
		default:
			f, ok := e.customField(c.Key)
			if !ok {
				bad(c, "unknown command; accepted: %s%s", acceptedCommands, e.customFieldNames())
				continue
			}
			if _, err := f.check(v); err != nil {
				bad(c, "%v", err)
				continue
			}
			if r.Changes.CustomFields == nil {
				r.Changes.CustomFields = map[string]string{}
			}
			r.Changes.CustomFields[f.Name] = v
		}
	}
	if r.SendAndResolve && r.Changes.Status == nil {
		code, ok := e.firstOfCategory(tk, CategoryResolved)
		if !ok {
			r.Errors = append(r.Errors, "send-and-resolve: this ticket's pipeline has no resolved status")
		} else {
			r.Changes.Status = &code
		}
	}
	if r.Note && r.SendAndResolve {
		r.Errors = append(r.Errors, "a mail cannot be both a private note and a reply to send")
	}
	if len(r.Errors) == 0 {
		for _, err := range e.Validate(tk, r.Changes) {
			r.Errors = append(r.Errors, err.Error())
		}
	}
	return r, nil
}

func isNone(v string) bool {
	switch fold(v) {
	case "none", "nobody", "-", "personne", "aucun", "aucune", "niemand", "nadie":
		return true
	}
	return false
}

func splitSigned(v string) (add, remove []string) {
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' }) {
		switch {
		case strings.HasPrefix(f, "-") && len(f) > 1:
			remove = append(remove, f[1:])
		case strings.HasPrefix(f, "+") && len(f) > 1:
			add = append(add, f[1:])
		case f != "+" && f != "-":
			add = append(add, f)
		}
	}
	return add, remove
}

func lowerAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strings.ToLower(v)
	}
	return out
}

// statusFor resolves a status by code, configured name or alias.
func (e *Engine) statusFor(tk *store.Ticket, v string) (int, bool) {
	if n, err := strconv.Atoi(v); err == nil {
		if e.Life.Category(n) != "" && e.inPipeline(tk, n) {
			return n, true
		}
		return 0, false
	}
	want := fold(v)
	for _, code := range e.pipelineCodes(tk) {
		if s, ok := e.Life.Status(code); ok && fold(s.Name) == want {
			return code, true
		}
	}
	if cat, ok := statusAliases[want]; ok {
		return e.firstOfCategory(tk, cat)
	}
	return 0, false
}

func (e *Engine) pipelineCodes(tk *store.Ticket) []int {
	p := e.Life.Pipeline(tk.PipelineID)
	if len(p.Statuses) > 0 {
		return p.Statuses
	}
	return []int{2, 3, 4, 5}
}

// firstOfCategory prefers the built-in status of a category, then the
// first of the pipeline's statuses in it.
func (e *Engine) firstOfCategory(tk *store.Ticket, cat string) (int, bool) {
	codes := e.pipelineCodes(tk)
	builtin := map[string]int{CategoryOpen: 2, CategoryPending: 3, CategoryResolved: 4, CategoryClosed: 5}[cat]
	for _, c := range codes {
		if c == builtin {
			return c, true
		}
	}
	for _, c := range codes {
		if e.Life.Category(c) == cat {
			return c, true
		}
	}
	return 0, false
}

func (e *Engine) statusChoices(tk *store.Ticket) string {
	var names []string
	for _, code := range e.pipelineCodes(tk) {
		if s, ok := e.Life.Status(code); ok {
			names = append(names, fmt.Sprintf("%s (%d)", strings.ToLower(s.Name), code))
		}
	}
	return strings.Join(names, ", ")
}

// agentFor finds an agent by address, name, "me" or "none" (0).
func (e *Engine) agentFor(tx *store.Tx, v string, sender *store.Agent) (int64, error) {
	f := fold(v)
	switch {
	case f == "me" || f == "moi" || f == "mich" || f == "yo":
		if sender == nil {
			return 0, fmt.Errorf("\"me\" needs an authenticated agent")
		}
		return sender.ID, nil
	case isNone(v):
		return 0, nil
	case f == "":
		return 0, fmt.Errorf("assign needs an agent's address or name (or me, none)")
	}
	agents, err := tx.Agents()
	if err != nil {
		return 0, err
	}
	var byName []store.Agent
	for _, a := range agents {
		if !a.Active {
			continue
		}
		if strings.EqualFold(a.Email, v) {
			return a.ID, nil
		}
		name := fold(a.Name)
		first, _, _ := strings.Cut(name, " ")
		if name == f || first == f {
			byName = append(byName, a)
		}
	}
	switch len(byName) {
	case 1:
		return byName[0].ID, nil
	case 0:
		var list []string
		for _, a := range agents {
			if a.Active {
				list = append(list, a.Email)
			}
		}
		return 0, fmt.Errorf("no agent %q; agents are %s (or me, none)", v, strings.Join(list, ", "))
	}
	return 0, fmt.Errorf("%q matches %d agents; write the address", v, len(byName))
}

// agentCommands applies an authenticated agent's mail with commands:
// all of them or none. On errors the mail is kept as a private note and
// the agent is told; the customer receives nothing.
func (e *Engine) agentCommands(tx *store.Tx, tk *store.Ticket, in *Incoming, out *Outcome, parsed command.Parsed, now time.Time) (*Outcome, error) {
	res, err := e.ResolveCommands(tx, tk, parsed.Commands, out.Agent)
	if err != nil {
		return nil, err
	}
	errs := append(append([]string{}, parsed.Problems...), res.Errors...)
	agentID := &out.Agent.ID
	by := Actor{Type: "agent", Name: out.Agent.Email}
	if len(errs) > 0 {
		conv, err := e.addConversation(tx, tk, in, "note", false, true, nil, agentID, now)
		if err != nil {
			return nil, err
		}
		by.ConversationID = &conv.ID
		if err := Record(tx, tk.ID, by, "commands_rejected", "", "", "", "email commands rejected, nothing changed: "+strings.Join(errs, "; "), now); err != nil {
			return nil, err
		}
		if err := tx.UpdateTicket(tk); err != nil {
			return nil, err
		}
		out.Action, out.Ticket, out.Conversation = "appended", tk, conv
		out.Events = append(out.Events, EventCommandError)
		out.ErrorText = strings.Join(errs, "\n")
		return e.finish(tx, in, out)
	}
	in.ReplyText = parsed.Text
	note := res.Note || strings.TrimSpace(parsed.Text) == ""
	conv, err := e.addConversation(tx, tk, in, map[bool]string{true: "note", false: "reply"}[note], false, note, nil, agentID, now)
	if err != nil {
		return nil, err
	}
	by.ConversationID = &conv.ID
	if note {
		if err := Record(tx, tk.ID, by, "note_added", "", "", "", "private note by mail", now); err != nil {
			return nil, err
		}
		if res.Note {
			out.Events = append(out.Events, EventNoteAdded)
		}
	} else {
		events, err := e.AgentResponded(tx, tk, by, now)
		if err != nil {
			return nil, err
		}
		out.Events = append(append(out.Events, EventAgentReplied), events...)
	}
	events, err := e.Apply(tx, tk, res.Changes, by, now)
	if err != nil {
		return nil, err
	}
	out.Events = append(out.Events, events...)
	if tk, err = tx.Ticket(tk.ID); err != nil {
		return nil, err
	}
	out.Action, out.Ticket, out.Conversation = "appended", tk, conv
	return e.finish(tx, in, out)
}

// requesterOf returns the address of a #requester command, if any.
func requesterOf(p command.Parsed) string {
	for _, c := range p.Commands {
		switch c.Key {
		case "requester", "demandeur", "customer", "client":
			v := strings.Trim(strings.TrimSpace(c.Value), "<>")
			if a, ok := parsePerson(v); ok {
				return a.Email
			}
			return v
		}
	}
	return ""
}

// agentCreate opens a ticket for the customer an agent names with
// #requester (typically forwarding the customer's mail). Only an agent
// whose identity is proven (out.Agent, set by proveAgent) may do so.
func (e *Engine) agentCreate(tx *store.Tx, in *Incoming, out *Outcome, agent *store.Agent, parsed command.Parsed, now time.Time) (*Outcome, error) {
	if out.Agent == nil {
		// Thread sends an agent address that proves nothing to
		// unprovenAgentNew; never act for an agent without proof.
		return nil, fmt.Errorf("agent create for %s without proof", agent.Email)
	}
	req := strings.ToLower(requesterOf(parsed))
	who := Person{Email: req}
	if in.Forwarded != nil && strings.EqualFold(in.Forwarded.Email, req) {
		who.Name = in.Forwarded.Name
	}
	valid := strings.Contains(req, "@") && !strings.ContainsAny(req, " <>,;") && !e.isSupport(in, req)
	if !valid {
		who = e.requester(in)
	}
	// The customer sees the forwarded mail, not the agent's commands.
	in.Text = command.Parse(in.Text).Text
	in.ReplyText = parsed.Text
	if in.Forwarded == nil {
		in.Forwarded = &who
	}
	res, err := e.create(tx, in, out, who, nil, now, "created by agent "+agent.Email+" on behalf of "+who.Email)
	if err != nil {
		return nil, err
	}
	tk := res.Ticket
	by := Actor{Type: "agent", Name: agent.Email, ConversationID: &res.Conversation.ID}
	cr, err := e.ResolveCommands(tx, tk, parsed.Commands, agent)
	if err != nil {
		return nil, err
	}
	errs := append(append([]string{}, parsed.Problems...), cr.Errors...)
	if !valid {
		errs = append(errs, fmt.Sprintf("requester %q is not a customer address; the ticket was created for %s", req, who.Email))
	}
	if len(errs) > 0 {
		if err := Record(tx, tk.ID, by, "commands_rejected", "", "", "", "email commands rejected: "+strings.Join(errs, "; "), now); err != nil {
			return nil, err
		}
		res.Events = append(res.Events, EventCommandError)
		res.ErrorText = strings.Join(errs, "\n")
		return res, nil
	}
	events, err := e.Apply(tx, tk, cr.Changes, by, now)
	if err != nil {
		return nil, err
	}
	res.Events = append(res.Events, events...)
	if res.Ticket, err = tx.Ticket(tk.ID); err != nil {
		return nil, err
	}
	return res, nil
}

// customFieldNames lists the configured custom fields for error mail.
func (e *Engine) customFieldNames() string {
	if len(e.CustomFields) == 0 {
		return ""
	}
	names := make([]string, len(e.CustomFields))
	for i, f := range e.CustomFields {
		names[i] = f.Name
	}
	return ", and the custom fields " + strings.Join(names, ", ")
}
