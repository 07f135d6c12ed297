package store

import (
	"context"
	"errors"
	"testing"
)

// TestTxPeopleFollowWrites: inside one write transaction, what was read
// of agents and contacts (which the transaction remembers, see people)
// follows every change the transaction makes — new, deactivated and
// renamed agents, new, renamed, bouncing and deleted contacts — and a
// rollback to a savepoint, on both stores.
func TestTxPeopleFollowWrites(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openKind(t, k, Options{})
		ctx := context.Background()
		err := s.Write(ctx, func(tx *Tx) error {
			if _, err := tx.AgentByEmail("ann@acme.test"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("agent before: %v", err)
			}
			if _, err := tx.PutAgent(Agent{Email: "ann@acme.test", Name: "Ann", Active: true}); err != nil {
				return err
			}
			a, err := tx.AgentByEmail("ANN@acme.test")
			if err != nil || a.Name != "Ann" {
				t.Fatalf("agent after put: %+v %v", a, err)
			}
			if ag, err := tx.Agent(a.ID); err != nil || ag.Email != "ann@acme.test" {
				t.Errorf("agent by id: %+v %v", ag, err)
			}
			if _, err := tx.PutAgent(Agent{Email: "ann@acme.test", Name: "Ann B", Active: true}); err != nil {
				return err
			}
			if a, err := tx.AgentByEmail("ann@acme.test"); err != nil || a.Name != "Ann B" {
				t.Errorf("agent after rename: %+v %v", a, err)
			}
			if _, err := tx.SetAgentActive("ann@acme.test", false); err != nil {
				return err
			}
			if _, err := tx.AgentByEmail("ann@acme.test"); !errors.Is(err, ErrNotFound) {
				t.Errorf("deactivated agent: %v", err)
			}
			if agents, err := tx.Agents(); err != nil || len(agents) != 1 || agents[0].Active {
				t.Errorf("agents: %+v %v", agents, err)
			}

			if _, err := tx.ContactByEmail("bob@customers.test"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("contact before: %v", err)
			}
			c, created, err := tx.EnsureContact("bob@customers.test", "")
			if err != nil || !created {
				t.Fatalf("ensure: %+v %v %v", c, created, err)
			}
			got, err := tx.ContactByEmail("bob@customers.test")
			if err != nil || got.ID != c.ID || !got.CreatedAt.Equal(c.CreatedAt.Truncate(1000)) || got.Tags == nil {
				t.Fatalf("contact after ensure: %+v %v (created %+v)", got, err, c)
			}
			got.Tags = append(got.Tags, "changed by the caller")
			if _, _, err := tx.EnsureContact("bob@customers.test", "Bob"); err != nil {
				return err
			}
			if got, err := tx.Contact(c.ID); err != nil || got.Name != "Bob" || len(got.Tags) != 0 {
				t.Errorf("contact after name: %+v %v", got, err)
			}
			if ok, err := tx.MarkBouncing("BOB@customers.test", BounceFlag{Reason: "test"}); err != nil || !ok {
				t.Fatalf("mark bouncing: %v %v", ok, err)
			}
			if got, err := tx.ContactByEmail("bob@customers.test"); err != nil || !got.Bouncing {
				t.Errorf("contact after bounce: %+v %v", got, err)
			}
			if _, err := tx.ContactByEmail("Carol@customers.test"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("carol before: %v", err)
			}
			if _, err := tx.CreateContact("carol@customers.test", ContactChange{}); err != nil {
				return err
			}
			if got, err := tx.ContactByEmail("Carol@customers.test"); err != nil || got.Email != "carol@customers.test" {
				t.Errorf("carol after create (other case): %+v %v", got, err)
			}
			if err := tx.Savepoint(func() error {
				if _, _, err := tx.EnsureContact("dan@customers.test", "Dan"); err != nil {
					return err
				}
				if _, err := tx.ContactByEmail("dan@customers.test"); err != nil {
					return err
				}
				return errors.New("roll back")
			}); err == nil {
				t.Fatal("savepoint did not fail")
			}
			if got, err := tx.ContactByEmail("dan@customers.test"); !errors.Is(err, ErrNotFound) {
				t.Errorf("contact rolled back: %+v %v", got, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
