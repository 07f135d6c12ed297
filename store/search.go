package store

import (
	"fmt"
	"strings"
	"time"

	"github.com/deskmail/deskmail/search"
)

// TicketSearchFields are the ticket fields a search query may name
// (Freshdesk's): status, priority, agent_id (the responder), group_id,
// type, tag, created_at, updated_at, due_by and fr_due_by. Callers add
// the configured custom fields.
func TicketSearchFields() search.Schema {
	return search.Schema{
		"status":     {Type: search.Integer},
		"priority":   {Type: search.Integer},
		"agent_id":   {Type: search.Integer, Nullable: true},
		"group_id":   {Type: search.Integer, Nullable: true},
		"type":       {Type: search.String, Nullable: true},
		"tag":        {Type: search.String, Nullable: true},
		"created_at": {Type: search.Date},
		"updated_at": {Type: search.Date},
		"due_by":     {Type: search.Date, Nullable: true},
		"fr_due_by":  {Type: search.Date, Nullable: true},
	}
}

// ContactSearchFields are the contact fields a search query may name.
func ContactSearchFields() search.Schema {
	return search.Schema{
		"email":      {Type: search.String},
		"name":       {Type: search.String},
		"language":   {Type: search.String},
		"created_at": {Type: search.Date},
		"updated_at": {Type: search.Date},
	}
}

// TicketQuery selects tickets for SearchTickets.
type TicketQuery struct {
	// Where is the parsed query, over TicketSearchFields and custom
	// fields (search.Field.Custom, Key the stored name).
	Where search.Expr
	// Groups numbers the group names for group_id: group_id N is
	// Groups[N-1]; a ticket whose group is not listed has none.
	Groups []string
	// Channels, when non-nil, keeps only tickets of these channels and
	// tickets without a channel (an agent's scope).
	Channels []string
	Offset   int
	Limit    int
}

// SearchTickets returns one page of the tickets (not deleted) that
// match q, newest first, and how many match in all. Every value of the
// query is a bound parameter.
func (t *Tx) SearchTickets(q TicketQuery) ([]Ticket, int, error) {
	c := &compiler{groups: q.Groups}
	cond, err := c.ticket(q.Where)
	if err != nil {
		return nil, 0, fmt.Errorf("store: search tickets: %w", err)
	}
	where := " WHERE t.deleted=0 AND " + cond
	if q.Channels != nil {
		if len(q.Channels) == 0 {
			where += " AND t.channel_id IS NULL"
		} else {
			where += " AND (t.channel_id IS NULL OR ch.name IN (" + placeholders(len(q.Channels)) + "))"
			for _, ch := range q.Channels {
				c.args = append(c.args, ch)
			}
		}
	}
	var total int
	if err := t.scanRow(`SELECT COUNT(*)`+ticketFrom+where, c.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: search tickets: %w", err)
	}
	if total == 0 || q.Offset >= total {
		return []Ticket{}, total, nil
	}
	args := append(c.args, q.Limit, q.Offset)
	tks, err := t.queryTickets(`SELECT `+ticketCols+ticketFrom+where+` ORDER BY t.created_at DESC, t.id DESC LIMIT ? OFFSET ?`, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: search tickets: %w", err)
	}
	return tks, total, nil
}

// ContactQuery selects contacts for SearchContacts.
type ContactQuery struct {
	// Where is the parsed query, over ContactSearchFields.
	Where  search.Expr
	Offset int
	Limit  int
}

// SearchContacts returns one page of the contacts that match q, by id,
// and how many match in all. Soft-deleted contacts are never found, as
// in Freshdesk.
func (t *Tx) SearchContacts(q ContactQuery) ([]Contact, int, error) {
	c := &compiler{}
	cond, err := c.contact(q.Where)
	if err != nil {
		return nil, 0, fmt.Errorf("store: search contacts: %w", err)
	}
	cond = "deleted_at IS NULL AND (" + cond + ")"
	var total int
	if err := t.scanRow(`SELECT COUNT(*) FROM contacts WHERE `+cond, c.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: search contacts: %w", err)
	}
	out := []Contact{}
	if total == 0 || q.Offset >= total {
		return out, total, nil
	}
	rows, err := t.scanQuery(`SELECT `+contactCols+` FROM contacts WHERE `+cond+` ORDER BY id LIMIT ? OFFSET ?`, append(c.args, q.Limit, q.Offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: search contacts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		ct, err := scanContact(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("store: search contacts: %w", err)
		}
		out = append(out, *ct)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: search contacts: %w", err)
	}
	return out, total, nil
}

// compiler turns a search tree into a WHERE clause: the SQL text comes
// only from this file's constants and the schema's column names, every
// value of the query goes to args.
type compiler struct {
	groups []string
	args   []any
}

func (c *compiler) bool(e search.Expr, leaf func(*search.Cond) (string, error)) (string, error) {
	var terms []search.Expr
	var sep string
	switch n := e.(type) {
	case *search.And:
		terms, sep = n.Terms, " AND "
	case *search.Or:
		terms, sep = n.Terms, " OR "
	case *search.Cond:
		return leaf(n)
	default:
		return "", fmt.Errorf("unknown query node %T", e)
	}
	parts := make([]string, len(terms))
	for i, term := range terms {
		s, err := c.bool(term, leaf)
		if err != nil {
			return "", err
		}
		parts[i] = s
	}
	return "(" + strings.Join(parts, sep) + ")", nil
}

func (c *compiler) ticket(e search.Expr) (string, error) { return c.bool(e, c.ticketCond) }

func (c *compiler) contact(e search.Expr) (string, error) { return c.bool(e, c.contactCond) }

var ticketColumns = map[string]string{
	"status": "t.status", "priority": "t.priority", "agent_id": "t.responder_id", "type": "t.type",
	"created_at": "t.created_at", "updated_at": "t.updated_at", "due_by": "sl.due_at", "fr_due_by": "sl.fr_due_at",
}

var contactColumns = map[string]string{
	"email": "email", "name": "name", "language": "language", "created_at": "created_at", "updated_at": "updated_at",
}

func (c *compiler) ticketCond(n *search.Cond) (string, error) {
	if n.Field.Custom {
		return c.custom(n)
	}
	switch n.Name {
	case "tag":
		if n.Value.Null {
			return "NOT EXISTS (SELECT 1 FROM ticket_tags tg WHERE tg.ticket_id=t.id)", nil
		}
		c.args = append(c.args, n.Value.Str)
		return "EXISTS (SELECT 1 FROM ticket_tags tg WHERE tg.ticket_id=t.id AND lower(tg.tag)=lower(?))", nil
	case "type":
		if n.Value.Null {
			return "(t.type IS NULL OR t.type='')", nil
		}
	case "group_id":
		return c.compare(c.groupID(), n)
	}
	col, ok := ticketColumns[n.Name]
	if !ok {
		return "", fmt.Errorf("tickets cannot be searched by %q", n.Name)
	}
	return c.compare(col, n)
}

func (c *compiler) contactCond(n *search.Cond) (string, error) {
	col, ok := contactColumns[n.Name]
	if !ok || n.Field.Custom {
		return "", fmt.Errorf("contacts cannot be searched by %q", n.Name)
	}
	return c.compare(col, n)
}

// groupID is the SQL of a ticket's group_id: the position of its group
// name in c.groups, NULL when it has none or one not listed.
func (c *compiler) groupID() string {
	if len(c.groups) == 0 {
		return "CAST(NULL AS INTEGER)"
	}
	var b strings.Builder
	b.WriteString("(CASE t.group_name")
	for i, g := range c.groups {
		fmt.Fprintf(&b, " WHEN ? THEN %d", i+1)
		c.args = append(c.args, g)
	}
	b.WriteString(" END)")
	return b.String()
}

// custom compares a configured custom field, stored as text in
// ticket_custom_fields; number fields compare as numbers.
func (c *compiler) custom(n *search.Cond) (string, error) {
	const has = "SELECT 1 FROM ticket_custom_fields cf WHERE cf.ticket_id=t.id AND cf.name=?"
	c.args = append(c.args, n.Field.Key)
	if n.Value.Null {
		return "NOT EXISTS (" + has + ")", nil
	}
	col := "cf.value"
	if n.Field.Type == search.Number {
		col = "CAST(cf.value AS DOUBLE PRECISION)"
	}
	cond, err := c.compare(col, n)
	if err != nil {
		return "", err
	}
	return "EXISTS (" + has + " AND " + cond + ")", nil
}

// compare is col OP value for one condition, by the field's type.
func (c *compiler) compare(col string, n *search.Cond) (string, error) {
	v := n.Value
	if v.Null {
		return col + " IS NULL", nil
	}
	op := map[search.Op]string{search.Eq: "=", search.Ge: ">=", search.Le: "<="}[n.Op]
	if op == "" {
		return "", fmt.Errorf("unknown comparison %v", n.Op)
	}
	switch n.Field.Type {
	case search.Integer:
		c.args = append(c.args, v.Int)
		return col + op + "?", nil
	case search.Number:
		c.args = append(c.args, v.Num)
		return col + op + "?", nil
	case search.Date:
		// Times are fixed-width UTC text: a day is [midnight, next midnight).
		from, to := ts(v.Day), ts(v.Day.Add(24*time.Hour))
		switch n.Op {
		case search.Ge:
			c.args = append(c.args, from)
			return col + ">=?", nil
		case search.Le:
			c.args = append(c.args, to)
			return col + "<?", nil
		}
		c.args = append(c.args, from, to)
		return "(" + col + ">=? AND " + col + "<?)", nil
	case search.String:
		if n.Op != search.Eq {
			return "", fmt.Errorf("%s compares with \":\" only", n.Name)
		}
		c.args = append(c.args, v.Str)
		return "lower(" + col + ")=lower(?)", nil
	}
	return "", fmt.Errorf("unknown field type %v", n.Field.Type)
}
