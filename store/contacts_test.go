package store

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestContactsCreateUpdateDelete: the API's contact writes behave the
// same on SQLite and PostgreSQL — a duplicate address (in any case) is
// ErrDuplicate naming the existing contact, changes apply field by
// field, and a soft-deleted contact leaves ListContacts (Deleted lists
// it) until restored.
func TestContactsCreateUpdateDelete(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openKind(t, k, Options{})
		ctx := context.Background()
		name, tz, tags := "Ana", "Europe/Paris", []string{"vip", "beta"}
		var id int64
		err := s.Write(ctx, func(tx *Tx) error {
			c, err := tx.CreateContact("ana@customers.test", ContactChange{Name: &name, TimeZone: &tz, Tags: &tags})
			if err != nil {
				return err
			}
			id = c.ID
			if c.Name != "Ana" || c.TimeZone != "Europe/Paris" || !slices.Equal(c.Tags, tags) || c.DeletedAt != nil {
				t.Errorf("created %+v", c)
			}
			if dup, err := tx.CreateContact("ANA@customers.test", ContactChange{Name: &name}); !errors.Is(err, ErrDuplicate) || dup == nil || dup.ID != id {
				t.Errorf("duplicate: %v %+v", err, dup)
			}
			phone, none := "+33 1", []string{}
			c, err = tx.UpdateContact(id, ContactChange{Phone: &phone, Tags: &none})
			if err != nil {
				return err
			}
			if c.Phone != "+33 1" || len(c.Tags) != 0 || c.Name != "Ana" || c.TimeZone != "Europe/Paris" {
				t.Errorf("updated %+v", c)
			}
			if _, err := tx.UpdateContact(9999, ContactChange{Phone: &phone}); !errors.Is(err, ErrNotFound) {
				t.Errorf("update of a missing contact: %v", err)
			}
			if _, _, err := tx.EnsureContact("bob@customers.test", "Bob"); err != nil {
				return err
			}
			return tx.DeleteContact(id)
		})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Write(ctx, func(tx *Tx) error {
			if err := tx.DeleteContact(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("second delete: %v", err)
			}
			live, err := tx.ListContacts(ContactFilter{Limit: 10})
			if err != nil {
				return err
			}
			gone, err := tx.ListContacts(ContactFilter{Deleted: true, Email: "Ana@customers.test"})
			if err != nil {
				return err
			}
			if len(live) != 1 || live[0].Email != "bob@customers.test" || len(gone) != 1 || gone[0].DeletedAt == nil {
				t.Errorf("live %+v, deleted %+v", live, gone)
			}
			if byPhone, err := tx.ListContacts(ContactFilter{Deleted: true, Phone: "+33 1"}); err != nil || len(byPhone) != 1 {
				t.Errorf("by phone: %v %+v", err, byPhone)
			}
			if err := tx.RestoreContact(id); err != nil {
				return err
			}
			live, err = tx.ListContacts(ContactFilter{Offset: 0, Limit: 1})
			if err != nil {
				return err
			}
			if len(live) != 1 || live[0].ID != id {
				t.Errorf("first page of one after restore: %+v", live)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
