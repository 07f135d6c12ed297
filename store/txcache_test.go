package store

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"
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

// TestTicketLists: a ticket's tags (by name without regard to case),
// cc addresses (in the order they were added, then by address without
// regard to case) and custom fields read the same through Ticket (one
// query on PostgreSQL) and ListTickets, on both stores.
func TestTicketLists(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openKind(t, k, Options{})
		ctx := context.Background()
		err := s.Write(ctx, func(tx *Tx) error {
			c, _, err := tx.EnsureContact("jane@customer.example", "Jane")
			if err != nil {
				return err
			}
			bare := &Ticket{Subject: "bare", Status: 2, Priority: 1, RequesterID: c.ID, Source: 1}
			if err := tx.CreateTicket(bare); err != nil {
				return err
			}
			tk := &Ticket{Subject: "lists", Status: 2, Priority: 1, RequesterID: c.ID, Source: 1}
			if err := tx.CreateTicket(tk); err != nil {
				return err
			}
			for _, tag := range []string{"b", "a", "C", "é"} {
				if err := tx.AddTag(tk.ID, tag); err != nil {
					return err
				}
			}
			t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			for i, cc := range []string{"zed@x.test", "Bob@x.test", "amy@x.test"} {
				tx.SetNow(t0.Add(time.Duration(min(i, 1)) * time.Minute))
				if _, err := tx.AddCC(tk.ID, cc); err != nil {
					return err
				}
			}
			tx.SetNow(time.Time{})
			for _, f := range [][2]string{{"plan", "Pro"}, {"amount", "12.5"}, {"note", `say "hi" ü`}} {
				if err := tx.SetCustomField(tk.ID, f[0], f[1]); err != nil {
					return err
				}
			}
			for _, id := range []int64{bare.ID, tk.ID} {
				got, err := tx.Ticket(id)
				if err != nil {
					return err
				}
				want := struct {
					tags, cc []string
					fields   map[string]string
				}{[]string{}, []string{}, map[string]string{}}
				if id == tk.ID {
					want.tags, want.cc = []string{"a", "b", "C", "é"}, []string{"zed@x.test", "amy@x.test", "Bob@x.test"}
					want.fields = map[string]string{"plan": "Pro", "amount": "12.5", "note": `say "hi" ü`}
				}
				if !slices.Equal(got.Tags, want.tags) || got.Tags == nil || !slices.Equal(got.CcEmails, want.cc) || got.CcEmails == nil ||
					!maps.Equal(got.CustomFields, want.fields) || got.CustomFields == nil {
					t.Errorf("ticket %d: tags %q cc %q fields %q", id, got.Tags, got.CcEmails, got.CustomFields)
				}
				list, err := tx.ListTickets(TicketFilter{})
				if err != nil {
					return err
				}
				for _, l := range list {
					if l.ID == id && (!slices.Equal(l.Tags, got.Tags) || !slices.Equal(l.CcEmails, got.CcEmails) || !maps.Equal(l.CustomFields, got.CustomFields)) {
						t.Errorf("listed ticket %d: tags %q cc %q fields %q", id, l.Tags, l.CcEmails, l.CustomFields)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
