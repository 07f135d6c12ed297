// Package rules runs deskmail's automation rules: a declarative list
// in the configuration (rules:) that, on a ticket event, checks
// conditions and changes the ticket.
//
// Contract:
//
//   - Run is called inside the store transaction of the change that
//     raised the events (a mail, a Sent-folder reply, an API call, an
//     agent's mail command, the CLI, the SLA scheduler), so a rule's
//     effects commit with that change or not at all.
//   - A rule acts through a Doer, which applies status, priority,
//     assignee, group and tags exactly as an agent's email commands
//     are applied (the threading lifecycle: pipeline, categories,
//     history, outbound mail); this package has no status rules of its
//     own. History names the rule as the actor of every change.
//   - The events a rule's actions cause (status_changed, a note's
//     note_added, ticket_resolved…) run the rules again, in the same
//     transaction, breadth first. Within one Run a rule acts at most
//     once per ticket: when an event caused by rules matches a rule
//     that already acted (A's action triggers B triggers A), that
//     rule is skipped — the loop is cut after one pass — and the cut
//     is logged and recorded in the ticket's history (rule_loop_cut).
//   - An action the lifecycle refuses (a status not in the ticket's
//     pipeline, an agent who left) leaves the ticket as it was for
//     that rule, is recorded (rule_failed) and logged; the triggering
//     change still commits. Only store errors make Run fail.
//
// Conditions all have to hold; a list holds when any value matches.
// The rules run in file order on each event, every one checked
// against the ticket as the event left it (so a rule's action does not
// make a later rule match the same event; it raises its own event).
// An Engine is read-only after New and safe for concurrent use.
package rules

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/deskmail/deskmail/command"
	"github.com/deskmail/deskmail/locale"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// Rule is one configured rule, its values normalized (see
// config.RuleConfig for what each means).
type Rule struct {
	Name string   `json:"name"`
	On   []string `json:"on"`

	Channels        []string `json:"channels"`
	From            []string `json:"from"`
	SubjectContains []string `json:"subject_contains"`
	Priorities      []int    `json:"priorities"`
	Statuses        []string `json:"statuses"`
	Tags            []string `json:"tags"`

	Status     string   `json:"status"`
	Priority   string   `json:"priority"`
	Assign     string   `json:"assign"`
	Group      string   `json:"group"`
	AddTags    []string `json:"add_tags"`
	RemoveTags []string `json:"remove_tags"`
	Note       string   `json:"note"`
	Notify     []string `json:"notify"`
	Webhook    string   `json:"webhook"`
}

// Event is one thing that happened to a ticket.
type Event struct {
	// Kind is ticket_created, customer_replied, agent_replied,
	// note_added, status_changed, ticket_resolved, ticket_closed or
	// sla_breached.
	Kind     string
	TicketID int64
	// Conversation is the message that caused it, if any: its sender
	// is what from: matches (else the requester).
	Conversation *store.Conversation
	// Payload is carried unchanged to Doer.Webhook (the SLA breach).
	Payload any
}

// Doer carries out actions with the lifecycle's code. Each method runs
// inside tx and hands the mail and webhooks its change causes to the
// outbound side; the events it returns are run through the rules.
type Doer interface {
	// Change applies commands as an agent's email commands are
	// applied (all or none). problems, when not empty, say why they
	// were refused; nothing changed then.
	Change(tx *store.Tx, tk *store.Ticket, cmds []command.Command, by threading.Actor) (caused []Event, problems []string, err error)
	// Note adds a private note with text and mails it to the agents
	// named (addresses, or "assignee"), returning its note_added event.
	Note(tx *store.Tx, tk *store.Ticket, text string, notify []string, by threading.Actor) (*Event, error)
	// Webhook queues ev for the named webhook, saying which rule sent
	// it.
	Webhook(tx *store.Tx, hook string, ev Event, rule string) error
}

// Engine holds the rules.
type Engine struct {
	rules []Rule
	log   *slog.Logger
}

// New returns an engine for rules (in order). A nil logger discards.
func New(rules []Rule, logger *slog.Logger) *Engine {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{log: logger}
	for _, r := range rules {
		r.From = lowerAll(r.From)
		for i, f := range r.From {
			if !strings.Contains(f, "@") {
				r.From[i] = "@" + f
			}
		}
		r.SubjectContains = lowerAll(r.SubjectContains)
		r.Statuses = lowerAll(r.Statuses)
		r.Tags = lowerAll(r.Tags)
		e.rules = append(e.rules, r)
	}
	return e
}

// Len is the number of rules.
func (e *Engine) Len() int {
	if e == nil {
		return 0
	}
	return len(e.rules)
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

// item is an event waiting to be run, with the rules that led to it.
type item struct {
	ev   Event
	path []string
}

// Run runs the rules on evs (the events of one change) and on every
// event their actions cause, inside tx.
func (e *Engine) Run(tx *store.Tx, d Doer, evs ...Event) error {
	if e.Len() == 0 || len(evs) == 0 {
		return nil
	}
	type key struct {
		rule   int
		ticket int64
	}
	acted := map[key]bool{}
	cut := map[key]bool{}
	queue := make([]item, 0, len(evs))
	for _, ev := range evs {
		queue = append(queue, item{ev: ev})
	}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		// Every rule is checked against the ticket as the event left it;
		// one that acts works on the ticket as it is now.
		tk, err := tx.Ticket(it.ev.TicketID)
		if err != nil {
			return fmt.Errorf("rules: %s: %w", it.ev.Kind, err)
		}
		for i := range e.rules {
			r := &e.rules[i]
			if !slices.Contains(r.On, it.ev.Kind) || !r.matches(tk, it.ev) {
				continue
			}
			k := key{i, tk.ID}
			if acted[k] {
				// Another event of the same change matching again is no
				// loop; one caused by rules is.
				if len(it.path) > 0 && !cut[k] {
					cut[k] = true
					if err := e.cutLoop(tx, tk, r, it); err != nil {
						return err
					}
				}
				continue
			}
			acted[k] = true
			cur, err := tx.Ticket(tk.ID)
			if err != nil {
				return fmt.Errorf("rules: %w", err)
			}
			caused, err := e.act(tx, d, r, cur, it.ev)
			if err != nil {
				return fmt.Errorf("rules: %s: %w", r.Name, err)
			}
			path := append(slices.Clone(it.path), r.Name)
			for _, c := range caused {
				queue = append(queue, item{ev: c, path: path})
			}
		}
	}
	return nil
}

func (e *Engine) cutLoop(tx *store.Tx, tk *store.Ticket, r *Rule, it item) error {
	chain := strings.Join(append(slices.Clone(it.path), r.Name), " → ")
	e.log.Warn("rule loop cut", "ticket", tk.ID, "rule", r.Name, "event", it.ev.Kind, "chain", chain)
	note := fmt.Sprintf("rule %q not run again on %s: its own actions led back to it (%s); a rule acts once per change", r.Name, it.ev.Kind, chain)
	return threading.Record(tx, tk.ID, threading.Actor{Type: "rule", Name: r.Name}, "rule_loop_cut", "", "", "", note, tx.Now())
}

// matches reports whether every condition of r holds for tk and ev.
func (r *Rule) matches(tk *store.Ticket, ev Event) bool {
	if len(r.Channels) > 0 && (tk.Channel == nil || !slices.Contains(r.Channels, *tk.Channel)) {
		return false
	}
	if len(r.From) > 0 {
		from := strings.ToLower(tk.Requester.Email)
		if ev.Conversation != nil && ev.Conversation.FromEmail != "" {
			from = strings.ToLower(ev.Conversation.FromEmail)
		}
		if !slices.ContainsFunc(r.From, func(f string) bool { return fromMatches(f, from) }) {
			return false
		}
	}
	if len(r.SubjectContains) > 0 {
		subj := strings.ToLower(tk.Subject)
		if !slices.ContainsFunc(r.SubjectContains, func(s string) bool { return strings.Contains(subj, s) }) {
			return false
		}
	}
	if len(r.Priorities) > 0 && !slices.Contains(r.Priorities, tk.Priority) {
		return false
	}
	if len(r.Statuses) > 0 && !slices.ContainsFunc(r.Statuses, func(s string) bool { return statusMatches(s, tk) }) {
		return false
	}
	if len(r.Tags) > 0 && !slices.ContainsFunc(tk.Tags, func(t string) bool { return slices.Contains(r.Tags, strings.ToLower(t)) }) {
		return false
	}
	return true
}

// fromMatches: an address matches itself; "@example.com" matches the
// domain and its subdomains.
func fromMatches(f, addr string) bool {
	if !strings.HasPrefix(f, "@") {
		return f == addr
	}
	_, domain, ok := strings.Cut(addr, "@")
	return ok && (domain == f[1:] || strings.HasSuffix(domain, "."+f[1:]))
}

// statusMatches compares a status condition (code, name or category
// word) with the ticket's status.
func statusMatches(s string, tk *store.Ticket) bool {
	if n, err := strconv.Atoi(s); err == nil {
		return n == tk.Status
	}
	if s == strings.ToLower(tk.StatusName) {
		return true
	}
	if cat, ok := categoryWords[s]; ok {
		return cat == tk.Category
	}
	return false
}

// categoryWords maps the status words of every built-in language to
// their category (read-only).
var categoryWords = locale.StatusWords()

// commands are r's field changes as the email commands that make them.
func (r *Rule) commands() []command.Command {
	var cmds []command.Command
	add := func(key, value string) {
		if value != "" {
			cmds = append(cmds, command.Command{Key: key, Value: value, Line: key + ": " + value})
		}
	}
	add("status", r.Status)
	add("priority", r.Priority)
	add("assign", r.Assign)
	add("group", r.Group)
	var tags []string
	for _, t := range r.AddTags {
		tags = append(tags, "+"+t)
	}
	for _, t := range r.RemoveTags {
		tags = append(tags, "-"+t)
	}
	add("tags", strings.Join(tags, " "))
	return cmds
}

// act carries out r's actions on tk for ev and returns the events
// they caused.
func (e *Engine) act(tx *store.Tx, d Doer, r *Rule, tk *store.Ticket, ev Event) ([]Event, error) {
	by := threading.Actor{Type: "rule", Name: r.Name}
	var caused []Event
	var did []string
	if cmds := r.commands(); len(cmds) > 0 {
		evs, problems, err := d.Change(tx, tk, cmds, by)
		if err != nil {
			return nil, err
		}
		if len(problems) > 0 {
			msg := strings.Join(problems, "; ")
			e.log.Warn("rule refused: ticket left as it was", "ticket", tk.ID, "rule", r.Name, "event", ev.Kind, "problems", msg)
			note := fmt.Sprintf("rule %q on %s changed nothing: %s", r.Name, ev.Kind, msg)
			return nil, threading.Record(tx, tk.ID, by, "rule_failed", "", "", "", note, tx.Now())
		}
		caused = append(caused, evs...)
		for _, c := range cmds {
			did = append(did, c.Line)
		}
		if tk2, err := tx.Ticket(tk.ID); err == nil {
			tk = tk2
		} else {
			return nil, err
		}
	}
	if r.Note != "" || len(r.Notify) > 0 {
		text := r.Note
		if text == "" {
			text = fmt.Sprintf("Rule %q (on %s) asks you to look at this ticket.", r.Name, ev.Kind)
		}
		nev, err := d.Note(tx, tk, text, r.Notify, by)
		if err != nil {
			return nil, err
		}
		if r.Note != "" {
			did = append(did, "note")
			if nev != nil {
				caused = append(caused, *nev)
			}
		}
		if len(r.Notify) > 0 {
			did = append(did, "notify: "+strings.Join(r.Notify, ", "))
		}
	}
	if r.Webhook != "" {
		if err := d.Webhook(tx, r.Webhook, ev, r.Name); err != nil {
			return nil, err
		}
		did = append(did, "webhook: "+r.Webhook)
	}
	note := fmt.Sprintf("rule %q on %s: %s", r.Name, ev.Kind, strings.Join(did, ", "))
	if err := threading.Record(tx, tk.ID, by, "rule_applied", "", "", "", note, tx.Now()); err != nil {
		return nil, err
	}
	e.log.Info("rule applied", "ticket", tk.ID, "rule", r.Name, "event", ev.Kind, "actions", strings.Join(did, ", "))
	return caused, nil
}
