package store

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// people remembers, for one transaction, the agents and contacts it
// has read: one message asks several times whether its sender and
// recipients are agents, and looks its requester and the agents it
// notifies up again and again (measured: 3.7 contact and 2 agent
// lookups per ingested message, each a round trip to PostgreSQL).
// Every statement of the transaction that writes contacts or agents,
// and every rollback to a savepoint, forgets it all (Tx.forget), so
// what it answers is what the database would answer in this
// transaction, except for changes other instances commit meanwhile,
// which a REPEATABLE READ transaction would not see either.
type people struct {
	agents    []Agent // nil until read
	contacts  map[string]*Contact
	contactID map[int64]*Contact
	// noContact holds the addresses no contact had.
	noContact map[string]bool
	// reserved are contact ids taken ahead from the sequence for
	// addresses of noContact (see contactByEmailReserving), good while
	// the address is still in noContact.
	reserved map[string]int64
}

// forgetPeople drops what the transaction remembers of contacts and
// agents if query, about to run with args, may change them (see
// people).
func (t *Tx) forgetPeople(query string, args []any) {
	p := t.people
	if p == nil {
		return
	}
	if strings.Contains(query, "agents") {
		t.people = nil
		return
	}
	if !strings.Contains(query, "contacts") {
		return
	}
	// The INSERTs that add a contact (EnsureContact, CreateContact)
	// change no contact that was read: only the addresses remembered
	// as nobody's, if one of them is the new contact's.
	email, ok := "", false
	if strings.HasPrefix(query, "INSERT INTO contacts(email,") && !strings.Contains(query, "DO UPDATE") && len(args) > 0 {
		email, ok = args[0].(string)
	}
	if !ok {
		t.people = nil
		return
	}
	for a := range p.noContact {
		if !asciiOnly(a) || !asciiOnly(email) || asciiEqualFold(a, email) {
			delete(p.noContact, a)
		}
	}
}

func (t *Tx) peopleCache() *people {
	if t.people == nil {
		t.people = &people{}
	}
	return t.people
}

// cachedAgents returns every agent, read once per transaction; the
// caller must not change the slice.
func (t *Tx) cachedAgents() ([]Agent, error) {
	if p := t.people; p != nil && p.agents != nil {
		return p.agents, nil
	}
	rows, err := t.query(`SELECT ` + agentCols + ` FROM agents ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: agents: %w", err)
	}
	defer rows.Close()
	out := []Agent{}
	for rows.Next() {
		var a Agent
		if err := rows.Scan(&a.ID, &a.Email, &a.Name, &a.Role, &a.Active); err != nil {
			return nil, fmt.Errorf("store: agents: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: agents: %w", err)
	}
	t.peopleCache().agents = out
	return out, nil
}

// asciiOnly reports whether s has no byte above 0x7f: addresses the
// cache compares itself, as SQLite's NOCASE and PostgreSQL's citext
// agree on ASCII only.
func asciiOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// asciiEqualFold is NOCASE's comparison: ASCII letters without regard
// to case, every other byte as it is.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// agentFromCache finds an agent in the transaction's agent list: ok
// is false when the list cannot answer (an address beyond ASCII, whose
// case folding is the database's to decide).
func (t *Tx) agentFromCache(match func(a *Agent) bool, email string) (a *Agent, ok bool, err error) {
	if !asciiOnly(email) {
		return nil, false, nil
	}
	agents, err := t.cachedAgents()
	if err != nil {
		return nil, false, err
	}
	for i := range agents {
		if !asciiOnly(agents[i].Email) {
			return nil, false, nil
		}
	}
	for i := range agents {
		if match(&agents[i]) {
			a := agents[i]
			return &a, true, nil
		}
	}
	return nil, true, nil
}

// rememberContact keeps a copy of a contact read in this transaction.
func (t *Tx) rememberContact(email string, c *Contact) {
	p := t.peopleCache()
	if p.contacts == nil {
		p.contacts, p.contactID = map[string]*Contact{}, map[int64]*Contact{}
	}
	cp := copyContact(c)
	if email != "" {
		p.contacts[email] = cp
	}
	p.contactID[c.ID] = cp
}

// rememberNoContact notes that no contact has the address email.
func (t *Tx) rememberNoContact(email string) {
	p := t.peopleCache()
	if p.noContact == nil {
		p.noContact = map[string]bool{}
	}
	p.noContact[email] = true
}

// knownNoContact reports whether the transaction found no contact with
// the address email (exactly as it was asked for).
func (t *Tx) knownNoContact(email string) bool {
	return t.people != nil && t.people.noContact[email]
}

// contactFromCache returns a copy of a contact read before in this
// transaction, by address (exactly as it was asked for) or by id.
func (t *Tx) contactFromCache(email string, id int64) *Contact {
	p := t.people
	if p == nil || p.contacts == nil {
		return nil
	}
	c := p.contactID[id]
	if email != "" {
		c = p.contacts[email]
	}
	if c == nil {
		return nil
	}
	return copyContact(c)
}

func copyContact(c *Contact) *Contact {
	cp := *c
	cp.Tags = slices.Clone(c.Tags)
	cp.BouncedAt, cp.DeletedAt = copyTime(c.BouncedAt), copyTime(c.DeletedAt)
	if c.BounceID != nil {
		id := *c.BounceID
		cp.BounceID = &id
	}
	return &cp
}

func copyTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := *t
	return &v
}
