package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/deskmail/deskmail/locale"
)

// RuleConfig is one automation rule: on one of its events, when every
// condition of If holds, do every action of Then (see the rules
// package). The seed's "a private note moves the ticket to Pending"
// is
//
//	rules:
//	  - on: note_added
//	    then: {status: pending}
type RuleConfig struct {
	// Name is shown in history and logs (default "rule N", N counted
	// from 1 in file order).
	Name string `yaml:"name"`
	// On names the events (one or a list) that run the rule.
	On   Strings        `yaml:"on"`
	If   RuleConditions `yaml:"if"`
	Then RuleActions    `yaml:"then"`
}

// RuleConditions must all hold for a rule to act; each list holds when
// any of its values matches. An empty list always holds.
type RuleConditions struct {
	// Channel names configured channels.
	Channel Strings `yaml:"channel"`
	// From is a sender address (alice@example.com) or a domain
	// (example.com or @example.com, subdomains included): the
	// message's sender, else the requester.
	From Strings `yaml:"from"`
	// SubjectContains matches the ticket's subject, case-insensitive.
	SubjectContains Strings `yaml:"subject_contains"`
	// Priority is 1–4 or a name (low, medium, high, urgent…).
	Priority Strings `yaml:"priority"`
	// Status is a status code, a status name or a category (open,
	// pending, resolved, closed).
	Status Strings `yaml:"status"`
	// Tags holds when the ticket has any of them.
	Tags Strings `yaml:"tags"`
}

// RuleActions are what a rule does. Status, priority, assign, group
// and tags are applied as the same-named email commands of an agent
// are (#status pending, #assign bob@example.com…).
type RuleActions struct {
	Status   string `yaml:"status"`
	Priority string `yaml:"priority"`
	// Assign is an agent's address or name, or none.
	Assign string `yaml:"assign"`
	// Group is a group name, or none.
	Group      string  `yaml:"group"`
	AddTags    Strings `yaml:"add_tags"`
	RemoveTags Strings `yaml:"remove_tags"`
	// Note adds a private note with this text.
	Note string `yaml:"note"`
	// Notify mails these agents (addresses, or "assignee" for the
	// ticket's agent) a notification of the ticket.
	Notify Strings `yaml:"notify"`
	// Webhook names a configured webhook that receives the event.
	Webhook string `yaml:"webhook"`
}

// Empty reports whether a rule's then: does nothing.
func (a RuleActions) Empty() bool {
	return a.Status == "" && a.Priority == "" && a.Assign == "" && a.Group == "" && a.Note == "" && a.Webhook == "" &&
		len(a.AddTags)+len(a.RemoveTags)+len(a.Notify) == 0
}

// RuleEvents are the events a rule may run on.
var RuleEvents = []string{"ticket_created", "customer_replied", "agent_replied", "note_added", "status_changed",
	"ticket_resolved", "ticket_closed", "sla_breached"}

// Strings is one string or a list of strings (on: note_added, or
// on: [ticket_created, customer_replied]).
type Strings []string

// UnmarshalYAML accepts a scalar or a list of scalars.
func (s *Strings) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = Strings{n.Value}
		return nil
	case yaml.SequenceNode:
		out := Strings{}
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return errors.New("must be a value or a list of values, not a nested list or mapping")
			}
			out = append(out, e.Value)
		}
		*s = out
		return nil
	}
	return errors.New("must be a value or a list of values (written [a, b]), not a mapping")
}

// RuleName is the name of rule i: its own, else "rule N".
func (c *Config) RuleName(i int) string {
	if n := strings.TrimSpace(c.Rules[i].Name); n != "" {
		return n
	}
	return fmt.Sprintf("rule %d", i+1)
}

// ParsePriority reads 1–4 or a priority name of any built-in language.
func ParsePriority(v string) (int, bool) {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		return n, n >= 1 && n <= 4
	}
	p, ok := locale.PriorityWords()[strings.ToLower(strings.TrimSpace(v))]
	return p, ok
}

// knowsStatus reports whether v names a status: a code, a name or a
// category word.
func (c *Config) knowsStatus(v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	for _, s := range c.AllStatuses() {
		if strconv.Itoa(s.Code) == v || strings.ToLower(s.Name) == v {
			return true
		}
	}
	_, ok := locale.StatusWords()[v]
	return ok
}

func (c *Config) statusNames() string {
	var names []string
	for _, s := range c.AllStatuses() {
		names = append(names, fmt.Sprintf("%s (%d)", strings.ToLower(s.Name), s.Code))
	}
	return strings.Join(names, ", ")
}

func (c *Config) validateRules(add func(at loc, format string, args ...any)) {
	names := map[string]int{}
	chans := map[string]bool{}
	for _, ch := range c.Channels {
		chans[ch.Name] = true
	}
	agents := map[string]bool{}
	for _, a := range c.Agents {
		agents[strings.ToLower(a.Email)] = true
	}
	groups := map[string]bool{}
	for _, a := range c.Agents {
		groups[a.Group] = a.Group != ""
	}
	for _, ch := range c.Channels {
		groups[ch.Group] = groups[ch.Group] || ch.Group != ""
	}
	hooks := map[string]bool{}
	for _, w := range c.Webhooks {
		hooks[w.Name] = true
	}
	for i, r := range c.Rules {
		name := c.RuleName(i)
		if prev, ok := names[name]; ok {
			add(c.at("rules", i, "name"), "rule %q is also declared at line %d (rule names appear in history: make them unique)", name, prev)
		}
		names[name] = c.at("rules", i).line
		if len(r.On) == 0 {
			add(c.at("rules", i), "rule %q has no on: (write on: note_added, or a list of %s)", name, strings.Join(RuleEvents, ", "))
		}
		for j, e := range r.On {
			if !slices.Contains(RuleEvents, e) {
				add(c.at("rules", i, "on", j), "%q is not an event (%s)", e, strings.Join(RuleEvents, ", "))
			}
		}
		for j, ch := range r.If.Channel {
			if !chans[ch] {
				add(c.at("rules", i, "if", "channel", j), "channel %q is not declared under channels", ch)
			}
		}
		for j, f := range r.If.From {
			f = strings.TrimPrefix(strings.TrimSpace(f), "@")
			if f == "" || strings.ContainsAny(f, " <>,;\"") || strings.Count(f, "@") > 1 {
				add(c.at("rules", i, "if", "from", j), "%q must be an address (alice@example.com) or a domain (example.com)", r.If.From[j])
			}
		}
		for j, s := range r.If.SubjectContains {
			if strings.TrimSpace(s) == "" {
				add(c.at("rules", i, "if", "subject_contains", j), "must not be empty")
			}
		}
		for j, p := range r.If.Priority {
			if _, ok := ParsePriority(p); !ok {
				add(c.at("rules", i, "if", "priority", j), "%q is not a priority (1–4, low, medium, high, urgent)", p)
			}
		}
		for j, s := range r.If.Status {
			if !c.knowsStatus(s) {
				add(c.at("rules", i, "if", "status", j), "%q is not a status (a code, a name or open, pending, resolved, closed; statuses are %s)", s, c.statusNames())
			}
		}
		t := r.Then
		if t.Empty() {
			add(c.at("rules", i), "rule %q has no then: actions (status, priority, assign, group, add_tags, remove_tags, note, notify, webhook)", name)
		}
		if t.Status != "" && !c.knowsStatus(t.Status) {
			add(c.at("rules", i, "then", "status"), "%q is not a status (%s, or open, pending, resolved, closed)", t.Status, c.statusNames())
		}
		if t.Priority != "" {
			if _, ok := ParsePriority(t.Priority); !ok {
				add(c.at("rules", i, "then", "priority"), "%q is not a priority (1–4, low, medium, high, urgent)", t.Priority)
			}
		}
		if a := strings.ToLower(strings.TrimSpace(t.Assign)); a != "" && a != "none" && !agents[a] {
			add(c.at("rules", i, "then", "assign"), "%q is not an agent declared under agents (write an address, or none)", t.Assign)
		}
		if g := strings.TrimSpace(t.Group); g != "" && strings.ToLower(g) != "none" && !groups[g] {
			add(c.at("rules", i, "then", "group"), "group %q is not named under agents[].group or channels[].group (or write none)", t.Group)
		}
		for j, a := range t.Notify {
			a = strings.ToLower(strings.TrimSpace(a))
			if a != "assignee" && !agents[a] {
				add(c.at("rules", i, "then", "notify", j), "%q is not an agent declared under agents (or assignee)", t.Notify[j])
			}
		}
		for _, list := range []struct {
			key  string
			tags Strings
		}{{"add_tags", t.AddTags}, {"remove_tags", t.RemoveTags}} {
			for j, tag := range list.tags {
				if tag = strings.TrimSpace(tag); tag == "" || strings.ContainsAny(tag, " ,;+") || strings.HasPrefix(tag, "-") {
					add(c.at("rules", i, "then", list.key, j), "tag %q must be one word without spaces, commas or a leading + or -", list.tags[j])
				}
			}
		}
		if t.Webhook != "" && !hooks[t.Webhook] {
			add(c.at("rules", i, "then", "webhook"), "webhook %q is not declared under webhooks", t.Webhook)
		}
	}
}
