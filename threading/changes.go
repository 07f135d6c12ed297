package threading

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/deskmail/deskmail/store"
)

// Changes are field changes to a ticket, from an admin, an agent's
// email command or the API. Nil fields are left alone.
type Changes struct {
	Status   *int
	Priority *int
	Type     *string // "" clears
	Group    *string // "" clears
	// Responder assigns an agent by id; 0 unassigns.
	Responder  *int64
	AddTags    []string
	RemoveTags []string
	AddCC      []string
	RemoveCC   []string
	// CustomFields sets configured custom fields ("" clears one).
	CustomFields map[string]string
}

// CustomField is a configured custom ticket field.
type CustomField struct {
	Name string
	// Type is text, number or choice.
	Type    string
	Choices []string
}

// check returns the value to store for v, or an error saying what the
// field accepts.
func (f CustomField) check(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" || isNone(v) {
		return "", nil
	}
	switch f.Type {
	case "number":
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return "", fmt.Errorf("%s must be a number, not %q", f.Name, v)
		}
	case "choice":
		for _, c := range f.Choices {
			if strings.EqualFold(c, v) {
				return c, nil
			}
		}
		return "", fmt.Errorf("%s %q is not one of %s", f.Name, v, strings.Join(f.Choices, ", "))
	}
	if len(v) > 1024 {
		return "", fmt.Errorf("%s is longer than 1024 bytes", f.Name)
	}
	return v, nil
}

// Empty reports whether c changes nothing.
func (c Changes) Empty() bool {
	return c.Status == nil && c.Priority == nil && c.Type == nil && c.Group == nil && c.Responder == nil &&
		len(c.AddTags)+len(c.RemoveTags)+len(c.AddCC)+len(c.RemoveCC)+len(c.CustomFields) == 0
}

// Validate checks every change against the lifecycle without touching
// the ticket, so that a set of changes applies all together or not at
// all. It returns one error per bad change.
func (e *Engine) Validate(tk *store.Ticket, c Changes) []error {
	var errs []error
	if c.Status != nil {
		if e.Life.Category(*c.Status) == "" {
			errs = append(errs, fmt.Errorf("unknown status %d", *c.Status))
		} else if !e.inPipeline(tk, *c.Status) {
			errs = append(errs, fmt.Errorf("status %d is not part of this ticket's pipeline", *c.Status))
		}
	}
	if c.Priority != nil && (*c.Priority < 1 || *c.Priority > 4) {
		errs = append(errs, fmt.Errorf("priority %d is not 1 (low) to 4 (urgent)", *c.Priority))
	}
	for _, a := range c.AddCC {
		if !strings.Contains(a, "@") || strings.ContainsAny(a, " <>,;") {
			errs = append(errs, fmt.Errorf("cc %q is not an address", a))
		}
	}
	for name, v := range c.CustomFields {
		f, ok := e.customField(name)
		if !ok {
			errs = append(errs, fmt.Errorf("unknown custom field %q", name))
			continue
		}
		if _, err := f.check(v); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func (e *Engine) inPipeline(tk *store.Ticket, code int) bool {
	p := e.Life.Pipeline(tk.PipelineID)
	if len(p.Statuses) == 0 {
		return true
	}
	for _, s := range p.Statuses {
		if s == code {
			return true
		}
	}
	return false
}

// Apply validates and applies changes to a ticket inside tx, saves it,
// records history for each change, and returns the events the changes
// cause (status_changed, then resolved or closed).
func (e *Engine) Apply(tx *store.Tx, tk *store.Ticket, c Changes, by Actor, now time.Time) ([]EventKind, error) {
	if errs := e.Validate(tk, c); len(errs) > 0 {
		return nil, errs[0]
	}
	var events []EventKind
	if c.Status != nil && *c.Status != tk.Status {
		was := e.Life.Category(tk.Status)
		if err := e.Life.SetStatus(tx, tk, *c.Status, by, now); err != nil {
			return nil, err
		}
		events = append(events, EventStatusChanged)
		switch e.Life.Category(*c.Status) {
		case CategoryResolved:
			if was != CategoryResolved {
				events = append(events, EventTicketResolved)
			}
		case CategoryClosed:
			// Closing a resolved ticket tells the customer nothing new:
			// they had the closing mail when it was resolved.
			if was != CategoryResolved && was != CategoryClosed {
				events = append(events, EventTicketClosed)
			}
		}
	}
	if c.Priority != nil && *c.Priority != tk.Priority {
		if err := Record(tx, tk.ID, by, "priority_changed", "priority", strconv.Itoa(tk.Priority), strconv.Itoa(*c.Priority), "", now); err != nil {
			return nil, err
		}
		tk.Priority = *c.Priority
	}
	setStr := func(field string, cur **string, v *string) error {
		if v == nil {
			return nil
		}
		old := ""
		if *cur != nil {
			old = **cur
		}
		if old == *v {
			return nil
		}
		if *v == "" {
			*cur = nil
		} else {
			nv := *v
			*cur = &nv
		}
		return Record(tx, tk.ID, by, field+"_changed", field, old, *v, "", now)
	}
	if err := setStr("type", &tk.Type, c.Type); err != nil {
		return nil, err
	}
	if err := setStr("group", &tk.Group, c.Group); err != nil {
		return nil, err
	}
	if c.Responder != nil {
		old := ""
		if tk.Responder != nil {
			old = *tk.Responder
		}
		if *c.Responder == 0 {
			if tk.ResponderID != nil {
				tk.ResponderID, tk.Responder = nil, nil
				if err := Record(tx, tk.ID, by, "unassigned", "responder", old, "", "", now); err != nil {
					return nil, err
				}
			}
		} else if tk.ResponderID == nil || *tk.ResponderID != *c.Responder {
			a, err := tx.Agent(*c.Responder)
			if err != nil {
				return nil, err
			}
			id := a.ID
			tk.ResponderID, tk.Responder = &id, &a.Email
			if err := Record(tx, tk.ID, by, "assigned", "responder", old, a.Email, "", now); err != nil {
				return nil, err
			}
		}
	}
	for _, tag := range c.AddTags {
		if err := tx.AddTag(tk.ID, tag); err != nil {
			return nil, err
		}
		if err := Record(tx, tk.ID, by, "tag_added", "tags", "", tag, "", now); err != nil {
			return nil, err
		}
	}
	for _, tag := range c.RemoveTags {
		if err := tx.RemoveTag(tk.ID, tag); err != nil {
			return nil, err
		}
		if err := Record(tx, tk.ID, by, "tag_removed", "tags", tag, "", "", now); err != nil {
			return nil, err
		}
	}
	for _, a := range c.AddCC {
		if _, _, err := tx.EnsureContact(strings.ToLower(a), ""); err != nil {
			return nil, err
		}
		added, err := tx.AddCC(tk.ID, strings.ToLower(a))
		if err != nil {
			return nil, err
		}
		if added {
			if err := Record(tx, tk.ID, by, "cc_added", "cc_emails", "", strings.ToLower(a), "", now); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range c.RemoveCC {
		removed, err := tx.RemoveCC(tk.ID, strings.ToLower(a))
		if err != nil {
			return nil, err
		}
		if removed {
			if err := Record(tx, tk.ID, by, "cc_removed", "cc_emails", strings.ToLower(a), "", "", now); err != nil {
				return nil, err
			}
		}
	}
	names := make([]string, 0, len(c.CustomFields))
	for name := range c.CustomFields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f, _ := e.customField(name)
		v, _ := f.check(c.CustomFields[name])
		if old := tk.CustomFields[name]; old != v {
			if err := tx.SetCustomField(tk.ID, name, v); err != nil {
				return nil, err
			}
			if err := Record(tx, tk.ID, by, "custom_field_changed", name, old, v, "", now); err != nil {
				return nil, err
			}
		}
	}
	if err := tx.UpdateTicket(tk); err != nil {
		return nil, err
	}
	return events, nil
}

// customField returns a configured custom field by name.
func (e *Engine) customField(name string) (CustomField, bool) {
	for _, f := range e.CustomFields {
		if f.Name == name {
			return f, true
		}
	}
	return CustomField{}, false
}
