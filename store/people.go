package store

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Contact is a customer, created on first sight of an address.
type Contact struct {
	ID       int64  `json:"id"`
	Email    string `json:"email"`
	Name     string `json:"name"`
	Language string `json:"language"`
	// Bouncing is set when mail to the address provably failed for
	// good (see MarkBouncing); BouncedAt, BounceReason, BounceStatus
	// and BounceID say when and why, and are cleared with the flag.
	Bouncing     bool       `json:"bouncing"`
	BouncedAt    *time.Time `json:"bounced_at"`
	BounceReason string     `json:"bounce_reason"`
	BounceStatus string     `json:"bounce_status"`
	// BounceID is the delivery report (bounces table) that set the
	// flag; nil when the relay refused the address itself.
	BounceID *int64 `json:"bounce_id"`
	// Phone and TimeZone (an IANA name) are "" when unknown; Tags is
	// never nil.
	Phone    string   `json:"phone"`
	TimeZone string   `json:"time_zone"`
	Tags     []string `json:"tags"`
	// DeletedAt is set while the contact is soft-deleted (see
	// DeleteContact).
	DeletedAt *time.Time `json:"deleted_at"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// Agent is a support agent (or admin).
type Agent struct {
	ID     int64  `json:"id"`
	Email  string `json:"email"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	Active bool   `json:"active"`
	// Language is the console's language for the agent ("" follows
	// the browser); read by AgentPassword and SessionByToken only.
	Language string `json:"-"`
}

const contactCols = `id, email, name, language, bouncing, bounced_at, bounce_reason, bounce_status, bounce_id, phone, time_zone, tags, deleted_at, created_at, updated_at`

func scanContact(sc interface{ Scan(...any) error }) (*Contact, error) {
	var c Contact
	var bounced, deleted sql.NullString
	var bounceID sql.NullInt64
	var tags, created, updated string
	if err := sc.Scan(&c.ID, &c.Email, &c.Name, &c.Language, &c.Bouncing, &bounced, &c.BounceReason, &c.BounceStatus, &bounceID,
		&c.Phone, &c.TimeZone, &tags, &deleted, &created, &updated); err != nil {
		return nil, err
	}
	c.BouncedAt, c.BounceID, c.DeletedAt = pnts(bounced), nint(bounceID), pnts(deleted)
	c.CreatedAt, c.UpdatedAt = pts(created), pts(updated)
	if err := json.Unmarshal([]byte(tags), &c.Tags); err != nil || c.Tags == nil {
		c.Tags = []string{}
	}
	return &c, nil
}

// EnsureContact returns the contact with this address (matched
// case-insensitively), creating it on first sight. A name is filled
// in when the contact had none.
func (t *Tx) EnsureContact(email, name string) (*Contact, bool, error) {
	email = strings.TrimSpace(email)
	if email == "" {
		return nil, false, fmt.Errorf("store: contact without address")
	}
	c, err := t.contactByEmail(email)
	if err == nil {
		if c.Name == "" && name != "" {
			if _, err := t.exec(`UPDATE contacts SET name=?, updated_at=? WHERE id=?`, name, ts(t.now()), c.ID); err != nil {
				return nil, false, fmt.Errorf("store: contact %s: %w", email, err)
			}
			c.Name = name
		}
		return c, false, nil
	}
	if err != sql.ErrNoRows {
		return nil, false, fmt.Errorf("store: contact %s: %w", email, err)
	}
	now := t.now()
	// Another instance on the same database may create the contact
	// meanwhile: then this insert does nothing and the row is read.
	const insertContact = `INSERT INTO contacts(email, name, created_at, updated_at) VALUES (?,?,?,?) ON CONFLICT(email) DO NOTHING`
	var id int64
	var ok bool
	if rid, reserved := t.takeReservedContact(email); reserved {
		id, ok, err = rid, true, t.queueReservedInsert(insertContact, rid, email, name, ts(now), ts(now))
	} else {
		id, ok, err = t.insertOrNothing(insertContact, email, name, ts(now), ts(now))
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: create contact %s: %w", email, err)
	}
	if !ok {
		c, err := scanContact(t.row(`SELECT `+contactCols+` FROM contacts WHERE email=?`, email))
		if err != nil {
			return nil, false, fmt.Errorf("store: contact %s: %w", email, err)
		}
		return c, false, nil
	}
	c = &Contact{ID: id, Email: email, Name: name, Tags: []string{}, CreatedAt: now, UpdatedAt: now}
	if storedAsIs(email) && storedAsIs(name) {
		// The row as a read would return it (times as stored).
		stored := *c
		stored.CreatedAt, stored.UpdatedAt = pts(ts(now)), pts(ts(now))
		t.rememberContact(email, &stored)
	}
	return c, true, nil
}

// Contact returns a contact by id.
func (t *Tx) Contact(id int64) (*Contact, error) {
	if c := t.contactFromCache("", id); c != nil {
		return c, nil
	}
	c, err := scanContact(t.row(`SELECT `+contactCols+` FROM contacts WHERE id=?`, id))
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("contact %d", id))
	}
	t.rememberContact("", c)
	return c, nil
}

// ContactByEmail returns a contact by address.
func (t *Tx) ContactByEmail(email string) (*Contact, error) {
	c, err := t.contactByEmail(email)
	if err != nil {
		return nil, notFound(err, "contact "+email)
	}
	return c, nil
}

// contactByEmail reads a contact by address (sql.ErrNoRows when none
// has it), remembered for the rest of the transaction (see people).
func (t *Tx) contactByEmail(email string) (*Contact, error) {
	if c := t.contactFromCache(email, 0); c != nil {
		return c, nil
	}
	if t.knownNoContact(email) {
		return nil, sql.ErrNoRows
	}
	if t.pg != nil && t.fast != nil && t.pg.deps != nil && t.pg.deps.contactReserving != "" {
		return t.contactByEmailReserving(email)
	}
	c, err := scanContact(t.row(`SELECT `+contactCols+` FROM contacts WHERE email=?`, email))
	if errors.Is(err, sql.ErrNoRows) {
		t.rememberNoContact(email)
	}
	if err != nil {
		return nil, err
	}
	t.rememberContact(email, c)
	return c, nil
}

// Contacts lists contacts by id, deleted ones too, a page at a time
// (offset, limit); a negative limit lists them all.
func (t *Tx) Contacts(offset, limit int) ([]Contact, error) {
	if limit < 0 {
		// SQLite reads LIMIT -1 as none; PostgreSQL refuses it.
		limit = math.MaxInt
	}
	return t.contactRows("contacts", `SELECT `+contactCols+` FROM contacts ORDER BY id LIMIT ? OFFSET ?`, limit, offset)
}

// contactRows runs a query of contactCols rows; what names the list in
// errors.
func (t *Tx) contactRows(what, q string, args ...any) ([]Contact, error) {
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	out := []Contact{}
	for rows.Next() {
		c, err := scanContact(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

// SetContactName changes a contact's display name.
func (t *Tx) SetContactName(id int64, name string) error {
	if _, err := t.exec(`UPDATE contacts SET name=?, updated_at=? WHERE id=?`, name, ts(t.now()), id); err != nil {
		return fmt.Errorf("store: contact %d name: %w", id, err)
	}
	return nil
}

// BounceFlag is why an address is flagged bouncing.
type BounceFlag struct {
	// Reason is a sentence for people ("mail of ticket 3 (Message-ID
	// …) bounced: 5.1.1 user unknown").
	Reason string
	// Status is the enhanced status code (5.1.1), when known.
	Status string
	// BounceID is the delivery report that proved it (nil for a
	// refusal by our own relay).
	BounceID *int64
}

// MarkBouncing flags an address whose mail failed for good, so that
// nothing more is sent to it until the flag is cleared. It reports
// whether a contact with that address exists (only contacts carry
// the flag).
func (t *Tx) MarkBouncing(email string, f BounceFlag) (bool, error) {
	now := ts(t.now())
	var id any
	if f.BounceID != nil {
		id = *f.BounceID
	}
	res, err := t.exec(`UPDATE contacts SET bouncing=1, bounced_at=?, bounce_reason=?, bounce_status=?, bounce_id=?, updated_at=? WHERE email=?`,
		now, f.Reason, f.Status, id, now, email)
	if err != nil {
		return false, fmt.Errorf("store: mark %s bouncing: %w", email, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: mark %s bouncing: %w", email, err)
	}
	return n > 0, nil
}

// ClearBouncing removes an address's bouncing flag and what it said.
// It returns the contact as it was before (nil when no contact has
// that address), so the caller can tell whether a flag was set.
func (t *Tx) ClearBouncing(email string) (*Contact, error) {
	c, err := t.ContactByEmail(email)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !c.Bouncing {
		return c, nil
	}
	if _, err := t.exec(`UPDATE contacts SET bouncing=0, bounced_at=NULL, bounce_reason='', bounce_status='', bounce_id=NULL, updated_at=? WHERE id=?`,
		ts(t.now()), c.ID); err != nil {
		return nil, fmt.Errorf("store: clear bouncing %s: %w", email, err)
	}
	return c, nil
}

// BouncingContacts lists the contacts flagged bouncing, most recently
// flagged first.
func (t *Tx) BouncingContacts() ([]Contact, error) {
	return t.contactRows("bouncing contacts", `SELECT `+contactCols+` FROM contacts WHERE bouncing=1 ORDER BY bounced_at DESC, id`)
}

// PutAgent creates or updates an agent by address and returns its id.
// An existing agent keeps its active flag (SetAgentActive changes it),
// so syncing the configuration does not bring back a deactivated
// agent.
func (t *Tx) PutAgent(a Agent) (int64, error) {
	if a.Role == "" {
		a.Role = "agent"
	}
	_, err := t.exec(`INSERT INTO agents(email, name, role, active, created_at) VALUES (?,?,?,?,?)
		ON CONFLICT(email) DO UPDATE SET name=excluded.name, role=excluded.role`,
		a.Email, a.Name, a.Role, a.Active, ts(t.now()))
	if err != nil {
		return 0, fmt.Errorf("store: put agent %s: %w", a.Email, err)
	}
	var id int64
	if err := t.row(`SELECT id FROM agents WHERE email=?`, a.Email).Scan(&id); err != nil {
		return 0, fmt.Errorf("store: put agent %s: %w", a.Email, err)
	}
	return id, nil
}

const agentCols = `id, email, name, role, active`

// AgentByEmail returns an active agent by address.
func (t *Tx) AgentByEmail(email string) (*Agent, error) {
	a, ok, err := t.agentFromCache(func(a *Agent) bool { return a.Active && asciiEqualFold(a.Email, email) }, email)
	switch {
	case err != nil:
		return nil, err
	case ok && a == nil:
		return nil, fmt.Errorf("store: agent %s: %w", email, ErrNotFound)
	case ok:
		return a, nil
	}
	return t.agentByEmail(email)
}

func (t *Tx) agentByEmail(email string) (*Agent, error) {
	var a Agent
	err := t.row(`SELECT `+agentCols+` FROM agents WHERE email=? AND active=1`, email).Scan(&a.ID, &a.Email, &a.Name, &a.Role, &a.Active)
	if err != nil {
		return nil, notFound(err, "agent "+email)
	}
	return &a, nil
}

// Agent returns an agent by id.
func (t *Tx) Agent(id int64) (*Agent, error) {
	a, _, err := t.agentFromCache(func(a *Agent) bool { return a.ID == id }, "")
	switch {
	case err != nil:
		return nil, err
	case a != nil:
		return a, nil
	}
	return t.agentByID(id)
}

func (t *Tx) agentByID(id int64) (*Agent, error) {
	var a Agent
	err := t.row(`SELECT `+agentCols+` FROM agents WHERE id=?`, id).Scan(&a.ID, &a.Email, &a.Name, &a.Role, &a.Active)
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("agent %d", id))
	}
	return &a, nil
}

// Agents lists every agent.
func (t *Tx) Agents() ([]Agent, error) {
	agents, err := t.cachedAgents()
	if err != nil {
		return nil, err
	}
	return slices.Clone(agents), nil
}

// HashKey is how API keys are stored: hex SHA-256 (keys are random,
// high-entropy tokens, so a fast hash is the right tool).
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// AddAPIKey stores the hash of a new API key for an agent.
func (t *Tx) AddAPIKey(agentID int64, key string) error {
	if _, err := t.exec(`INSERT INTO api_keys(agent_id, key_hash, created_at) VALUES (?,?,?)`, agentID, HashKey(key), ts(t.now())); err != nil {
		return fmt.Errorf("store: add api key: %w", err)
	}
	return nil
}

// AgentByAPIKey returns the active agent owning key.
func (t *Tx) AgentByAPIKey(key string) (*Agent, error) {
	var a Agent
	err := t.row(`SELECT a.id, a.email, a.name, a.role, a.active FROM api_keys k JOIN agents a ON a.id=k.agent_id
		WHERE k.key_hash=? AND a.active=1`, HashKey(key)).Scan(&a.ID, &a.Email, &a.Name, &a.Role, &a.Active)
	if err != nil {
		return nil, notFound(err, "api key")
	}
	return &a, nil
}

// SetContactLanguage sets the language mail to a contact is written in
// (a BCP 47 tag in lower case, "" for the channel's).
func (t *Tx) SetContactLanguage(id int64, lang string) error {
	if _, err := t.exec(`UPDATE contacts SET language=?, updated_at=? WHERE id=?`, lang, ts(t.now()), id); err != nil {
		return fmt.Errorf("store: contact %d language: %w", id, err)
	}
	return nil
}
