package store

import (
	"encoding/json"
	"fmt"
	"strings"
)

// ContactFilter selects contacts for ListContacts. Empty fields do not
// filter.
type ContactFilter struct {
	// Email and Phone match exactly (the address case-insensitively).
	Email, Phone string
	// Deleted lists the soft-deleted contacts instead of the others.
	Deleted bool
	// Offset and Limit page the list, by id.
	Offset, Limit int
}

// ListContacts lists the contacts that match f, by id. Soft-deleted
// contacts are listed only with f.Deleted, and then only they are.
func (t *Tx) ListContacts(f ContactFilter) ([]Contact, error) {
	where := []string{"deleted_at IS NULL"}
	if f.Deleted {
		where[0] = "deleted_at IS NOT NULL"
	}
	var args []any
	if f.Email != "" {
		where, args = append(where, "email=?"), append(args, f.Email)
	}
	if f.Phone != "" {
		where, args = append(where, "phone=?"), append(args, f.Phone)
	}
	q := `SELECT ` + contactCols + ` FROM contacts WHERE ` + strings.Join(where, " AND ") + ` ORDER BY id`
	if f.Limit > 0 {
		q, args = q+` LIMIT ? OFFSET ?`, append(args, f.Limit, f.Offset)
	}
	return t.contactRows("list contacts", q, args...)
}

// ContactChange is what CreateContact stores and UpdateContact changes:
// nil fields are left as they are (or empty for a new contact).
type ContactChange struct {
	Name, Phone, TimeZone, Language *string
	Tags                            *[]string
}

// CreateContact adds a contact with this address. An address that a
// contact already has — soft-deleted or not — is ErrDuplicate, with
// the existing contact returned beside it.
func (t *Tx) CreateContact(email string, ch ContactChange) (*Contact, error) {
	email = strings.TrimSpace(email)
	if email == "" {
		return nil, fmt.Errorf("store: contact without address")
	}
	if c, err := t.ContactByEmail(email); err == nil {
		return c, fmt.Errorf("store: contact %s: %w", email, ErrDuplicate)
	}
	now := ts(t.now())
	id, err := t.insert(`INSERT INTO contacts(email, name, created_at, updated_at) VALUES (?,?,?,?)`, email, "", now, now)
	if isUnique(err) {
		c, _ := t.ContactByEmail(email)
		return c, fmt.Errorf("store: contact %s: %w", email, ErrDuplicate)
	}
	if err != nil {
		return nil, fmt.Errorf("store: create contact %s: %w", email, err)
	}
	return t.UpdateContact(id, ch)
}

// UpdateContact applies ch to contact id and returns it as it is then.
func (t *Tx) UpdateContact(id int64, ch ContactChange) (*Contact, error) {
	var set []string
	var args []any
	for _, f := range []struct {
		col string
		v   *string
	}{{"name", ch.Name}, {"phone", ch.Phone}, {"time_zone", ch.TimeZone}, {"language", ch.Language}} {
		if f.v != nil {
			set, args = append(set, f.col+"=?"), append(args, *f.v)
		}
	}
	if ch.Tags != nil {
		tags := *ch.Tags
		if tags == nil {
			tags = []string{}
		}
		b, err := json.Marshal(tags)
		if err != nil {
			return nil, fmt.Errorf("store: contact %d tags: %w", id, err)
		}
		set, args = append(set, "tags=?"), append(args, string(b))
	}
	if len(set) > 0 {
		set, args = append(set, "updated_at=?"), append(args, ts(t.now()), id)
		res, err := t.exec(`UPDATE contacts SET `+strings.Join(set, ", ")+` WHERE id=?`, args...)
		if err != nil {
			return nil, fmt.Errorf("store: update contact %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, fmt.Errorf("store: update contact %d: %w", id, ErrNotFound)
		}
	}
	return t.Contact(id)
}

// DeleteContact soft-deletes a contact (deleted true: it leaves the
// lists, keeps its tickets, and its new mail opens tickets in the
// trash); RestoreContact undoes it. Each reports ErrNotFound for a
// contact that does not exist or is already in the state asked.
func (t *Tx) DeleteContact(id int64) error {
	return t.setContactDeleted(id, true)
}

// RestoreContact brings back a soft-deleted contact.
func (t *Tx) RestoreContact(id int64) error {
	return t.setContactDeleted(id, false)
}

func (t *Tx) setContactDeleted(id int64, deleted bool) error {
	now := ts(t.now())
	q := `UPDATE contacts SET deleted_at=?, updated_at=? WHERE id=? AND deleted_at IS NULL`
	args := []any{now, now, id}
	if !deleted {
		q = `UPDATE contacts SET deleted_at=NULL, updated_at=? WHERE id=? AND deleted_at IS NOT NULL`
		args = []any{now, id}
	}
	res, err := t.exec(q, args...)
	if err != nil {
		return fmt.Errorf("store: contact %d deleted=%v: %w", id, deleted, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: contact %d deleted=%v: %w", id, deleted, ErrNotFound)
	}
	return nil
}
