package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestTicketCacheFollowsWrites: inside one write transaction (a plain
// Write and a batch's, fast attempt included), a ticket the transaction
// created or updated is answered from memory (see tickets) exactly as
// the database would answer it — checked by VerifyTicketCache at every
// read — through SLA writes, status and assignee changes, tags, cc
// addresses, custom fields, a renamed requester, a renamed channel and
// a rollback to a savepoint, on both stores; and a wrong entry is
// caught.
func TestTicketCacheFollowsWrites(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := openKind(t, k, Options{VerifyTicketCache: true})
		ctx := context.Background()
		for _, write := range []struct {
			name string
			run  func(context.Context, func(*Tx) error) error
		}{{"Write", s.Write}, {"WriteBatch", s.WriteBatch}} {
			t.Run(write.name, func(t *testing.T) {
				err := write.run(ctx, func(tx *Tx) error {
					return ticketCacheSteps(t, tx, write.name)
				})
				if err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

func ticketCacheSteps(t *testing.T, tx *Tx, name string) error {
	t.Helper()
	remembered := func(step string, id int64, want bool) {
		t.Helper()
		got := tx.tickets != nil && tx.tickets.byID[id] != nil
		if got != want {
			t.Errorf("%s: ticket %d remembered %v, want %v", step, id, got, want)
		}
	}
	read := func(step string, id int64) *Ticket {
		t.Helper()
		tk, err := tx.Ticket(id)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return tk
	}
	chID, err := tx.PutChannel(Channel{Name: "support-" + name, Address: "support-" + strings.ToLower(name) + "@acme.test"})
	if err != nil {
		return err
	}
	agentID, err := tx.PutAgent(Agent{Email: "ann-" + name + "@acme.test", Name: "Ann", Active: true})
	if err != nil {
		return err
	}
	c, _, err := tx.EnsureContact("jane-"+name+"@customer.example", "Jane")
	if err != nil {
		return err
	}
	typ := "question"
	tk := &Ticket{Subject: "Printer on fire", Status: 2, RequesterID: c.ID, ChannelID: &chID, Type: &typ}
	if err := tx.CreateTicket(tk); err != nil {
		return err
	}
	remembered("created", tk.ID, true)
	got := read("created", tk.ID)
	if got.Requester.Email != c.Email || got.Channel == nil || *got.Channel != "support-"+name || got.StatusName == "" {
		t.Errorf("created: %+v", got)
	}

	// What a caller changes in its copy is not remembered.
	*got.Type = "changed by the caller"
	got.Tags = append(got.Tags, "changed by the caller")
	if again := read("after the caller's changes", tk.ID); *again.Type != "question" || len(again.Tags) != 0 {
		t.Errorf("caller's changes remembered: %+v", again)
	}

	// The SLA clock, paused for a minute.
	now := tx.Now()
	paused := now.Add(-time.Minute)
	due := now.Add(4 * time.Hour)
	if err := tx.PutTicketSLA(&TicketSLA{TicketID: tk.ID, Policy: "gold", Priority: 1, Category: "pending",
		PausedAt: &paused, Paused: 90 * time.Second, FrDueAt: &due, DueAt: &due, EscalatedAt: &now}); err != nil {
		return err
	}
	remembered("sla", tk.ID, true)
	if got := read("sla", tk.ID); got.SLAPolicy == nil || *got.SLAPolicy != "gold" || got.SLAPausedSeconds < 150 || !got.IsEscalated {
		t.Errorf("sla: %+v", got)
	}

	// Status, assignee, times.
	got = read("before update", tk.ID)
	got.Status, got.ResponderID = 3, &agentID
	resolved := now.Add(time.Second)
	got.ResolvedAt, got.FirstRespondedAt = &resolved, &time.Time{}
	if err := tx.UpdateTicket(got); err != nil {
		return err
	}
	remembered("updated", tk.ID, true)
	if got := read("updated", tk.ID); got.Responder == nil || *got.Responder != "ann-"+name+"@acme.test" || got.Status != 3 {
		t.Errorf("updated: %+v", got)
	}

	// Tags, cc addresses and custom fields: read again.
	if err := tx.AddTag(tk.ID, "Urgent"); err != nil {
		return err
	}
	remembered("tagged", tk.ID, false)
	if got := read("tagged", tk.ID); len(got.Tags) != 1 {
		t.Errorf("tagged: %+v", got.Tags)
	}
	remembered("read after tag", tk.ID, true)
	if _, err := tx.AddCC(tk.ID, "Boss@customer.example"); err != nil {
		return err
	}
	if err := tx.SetCustomField(tk.ID, "order", "42"); err != nil {
		return err
	}
	if got := read("cc and field", tk.ID); len(got.CcEmails) != 1 || got.CustomFields["order"] != "42" {
		t.Errorf("cc and field: %+v", got)
	}

	// The requester and the channel renamed.
	if err := tx.SetContactName(c.ID, "Jane Doe"); err != nil {
		return err
	}
	remembered("renamed requester", tk.ID, false)
	if got := read("renamed requester", tk.ID); got.Requester.Name != "Jane Doe" {
		t.Errorf("renamed requester: %+v", got.Requester)
	}
	if _, err := tx.PutChannel(Channel{Name: "support-" + name, Address: "help-" + strings.ToLower(name) + "@acme.test"}); err != nil {
		return err
	}
	if tx.tickets != nil {
		t.Error("channel written: the statuses and channels are still remembered")
	}
	read("after channel", tk.ID)

	// A new ticket with tags is read from the database.
	tagged := &Ticket{Subject: "tagged", Status: 2, RequesterID: c.ID, Tags: []string{"b", "A"}}
	if err := tx.CreateTicket(tagged); err != nil {
		return err
	}
	remembered("created with tags", tagged.ID, false)
	read("created with tags", tagged.ID)

	// A rollback forgets.
	if err := tx.Savepoint(func() error {
		got := read("in savepoint", tk.ID)
		got.Subject = "rolled back"
		if err := tx.UpdateTicket(got); err != nil {
			return err
		}
		return errors.New("roll back")
	}); err == nil && tx.fast == nil {
		t.Fatal("savepoint did not fail")
	}
	if tx.fast != nil {
		// A fast attempt is abandoned whole; its rerun goes on.
		return nil
	}
	if got := read("rolled back", tk.ID); got.Subject != "Printer on fire" {
		t.Errorf("rolled back: %q", got.Subject)
	}

	// A wrong entry is caught.
	tx.tickets.byID[tk.ID].tk.Subject = "wrong"
	if _, err := tx.Ticket(tk.ID); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("wrong entry: %v", err)
	}
	return nil
}

// TestPrefetchTicketsAnswersReplies: in a batch on PostgreSQL, the
// tickets that the prefetched Message-IDs name are read in one query
// and then answered from memory — Ticket and IsParticipant (requester
// in another case, a cc address, a stranger) — as the database would
// answer them (VerifyTicketCache); a cc added in the batch is seen.
func TestPrefetchTicketsAnswersReplies(t *testing.T) {
	if !pgCluster.Available(t) {
		t.Skip("PostgreSQL is not available")
	}
	s := openKind(t, postgresStore, Options{VerifyTicketCache: true})
	ctx := context.Background()
	var ids []int64
	err := s.Write(ctx, func(tx *Tx) error {
		for i, who := range []string{"jane@customer.example", "joe@customer.example"} {
			c, _, err := tx.EnsureContact(who, "")
			if err != nil {
				return err
			}
			tk := &Ticket{Subject: who, Status: 2, RequesterID: c.ID, CcEmails: []string{"Boss@customer.example"}}
			if err := tx.CreateTicket(tk); err != nil {
				return err
			}
			ids = append(ids, tk.ID)
			if err := tx.AddMessageID(MessageRef{MessageID: fmt.Sprintf("m%d@customer.example", i), Direction: "in", TicketID: &tk.ID}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.WriteBatch(ctx, func(tx *Tx) error {
		if err := tx.PrefetchMessageIDs([]string{"m0@customer.example", "m1@customer.example", "unknown@customer.example"}); err != nil {
			return err
		}
		if err := tx.PrefetchTickets(); err != nil {
			return err
		}
		for _, id := range ids {
			if tx.tickets == nil || tx.tickets.byID[id] == nil {
				t.Fatalf("ticket %d not prefetched", id)
			}
		}
		for _, c := range []struct {
			email string
			want  bool
		}{{"JANE@customer.example", true}, {"boss@CUSTOMER.example", true}, {"joe@customer.example", false}, {"mallory@evil.example", false}} {
			if _, ok := tx.cachedParticipant(ids[0], c.email); !ok {
				t.Errorf("%s: not answered from memory", c.email)
			}
			if got, err := tx.IsParticipant(ids[0], c.email); err != nil || got != c.want {
				t.Errorf("participant %s: %v %v, want %v", c.email, got, err, c.want)
			}
		}
		if _, err := tx.AddCC(ids[0], "joe@customer.example"); err != nil {
			return err
		}
		if got, err := tx.IsParticipant(ids[0], "joe@customer.example"); err != nil || !got {
			t.Errorf("cc added in the batch: %v %v", got, err)
		}
		if tk, err := tx.Ticket(ids[1]); err != nil || tk.Subject != "joe@customer.example" {
			t.Errorf("second ticket: %+v %v", tk, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestThreadsOfNewAndPrefetchedTickets: in a batch on PostgreSQL the
// thread of a ticket the batch creates, and of a ticket its Message-IDs
// name (PrefetchTickets), are answered from memory through the
// customer's mail, its conversation, the confirmation and a reply
// pointed at the ticket later (SetMessageIDTarget) — each answer
// checked against the database (VerifyTicketCache) — and a wrong entry
// is caught.
func TestThreadsOfNewAndPrefetchedTickets(t *testing.T) {
	if !pgCluster.Available(t) {
		t.Skip("PostgreSQL is not available")
	}
	s := openKind(t, postgresStore, Options{VerifyTicketCache: true})
	ctx := context.Background()
	var old int64
	err := s.Write(ctx, func(tx *Tx) error {
		c, _, err := tx.EnsureContact("jane@customer.example", "Jane")
		if err != nil {
			return err
		}
		tk := &Ticket{Subject: "old", Status: 2, RequesterID: c.ID}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		old = tk.ID
		conv := &Conversation{TicketID: old, Incoming: true, FromEmail: "jane@customer.example", BodyText: "help", MessageID: "old-1@customer.example"}
		if err := tx.AddConversation(conv); err != nil {
			return err
		}
		return tx.AddMessageID(MessageRef{MessageID: "old-1@customer.example", Direction: "in", TicketID: &old, ConversationID: &conv.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.WriteBatch(ctx, func(tx *Tx) error {
		remembered := func(step string, id int64) {
			t.Helper()
			if tx.threads == nil || tx.threads.byTicket[id] == nil {
				t.Errorf("%s: thread of ticket %d not remembered", step, id)
			}
			if _, err := tx.TicketThread(id); err != nil {
				t.Errorf("%s: %v", step, err)
			}
			if _, err := tx.TicketThreadIDs(id); err != nil {
				t.Errorf("%s: %v", step, err)
			}
		}
		if err := tx.PrefetchMessageIDs([]string{"old-1@customer.example", "reply@customer.example"}); err != nil {
			return err
		}
		if err := tx.PrefetchTickets(); err != nil {
			return err
		}
		remembered("prefetched", old)

		c, _, err := tx.EnsureContact("joe@customer.example", "")
		if err != nil {
			return err
		}
		tk := &Ticket{Subject: "new", Status: 2, RequesterID: c.ID}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		remembered("created", tk.ID)
		conv := &Conversation{TicketID: tk.ID, Incoming: true, FromEmail: "Joe@Customer.example", BodyText: "hello", MessageID: "new-1@customer.example"}
		if err := tx.AddConversation(conv); err != nil {
			return err
		}
		if err := tx.AddMessageID(MessageRef{MessageID: "new-1@customer.example", Direction: "in", TicketID: &tk.ID, ConversationID: &conv.ID}); err != nil {
			return err
		}
		remembered("customer's mail", tk.ID)
		if err := tx.EnqueueOutbox(&OutboxMail{TicketID: &tk.ID, ConversationID: &conv.ID, Kind: "confirmation", MailFrom: "support@acme.test",
			RcptTo: []string{"joe@customer.example"}, Subject: "Re: new", MessageID: "conf-1@acme.test", Raw: []byte("x")}); err != nil {
			return err
		}
		remembered("confirmation", tk.ID)

		// A reply to the old ticket: claimed first, pointed at it once
		// its conversation exists.
		if err := tx.AddMessageID(MessageRef{MessageID: "reply@customer.example", Direction: "in"}); err != nil {
			return err
		}
		rc := &Conversation{TicketID: old, Incoming: true, FromEmail: "jane@customer.example", BodyText: "again", MessageID: "reply@customer.example"}
		if err := tx.AddConversation(rc); err != nil {
			return err
		}
		if err := tx.SetMessageIDTarget("reply@customer.example", &old, &rc.ID); err != nil {
			return err
		}
		remembered("reply pointed at the old ticket", old)
		if ids, err := tx.TicketThreadIDs(old); err != nil || len(ids) != 2 {
			t.Errorf("old ticket's ids: %v %v", ids, err)
		}

		// Same created_at: a mail claimed first, our notification
		// recorded on the ticket next, the claim pointed at the ticket
		// last — the query orders them by rowid, claim first.
		tx.SetNow(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
		if err := tx.AddMessageID(MessageRef{MessageID: "tie@customer.example", Direction: "in"}); err != nil {
			return err
		}
		if err := tx.EnqueueOutbox(&OutboxMail{TicketID: &tk.ID, Kind: "notification", MailFrom: "support@acme.test",
			RcptTo: []string{"agent@acme.test"}, Subject: "new", MessageID: "note-1@acme.test", Raw: []byte("x")}); err != nil {
			return err
		}
		if err := tx.SetMessageIDTarget("tie@customer.example", &tk.ID, nil); err != nil {
			return err
		}
		remembered("tied created_at", tk.ID)
		if th, _ := tx.TicketThread(tk.ID); len(th) != 4 || th[0].MessageID != "tie@customer.example" {
			t.Errorf("tied created_at: %+v", th)
		}

		tx.threads.byTicket[old].rows[0].FromEmail = "wrong@example.com"
		if _, err := tx.TicketThread(old); err == nil || !strings.Contains(err.Error(), "differs") {
			t.Errorf("wrong entry: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPrefetchedTicketNotOverwritten: a ticket a batch prefetched
// (and so answers from memory for the rest of the batch) is locked
// until the batch commits, and a write transaction's read of a ticket
// locks it too: another instance's change to it meanwhile (an agent's,
// through the API) waits and lands after the batch's own update, and
// neither change is lost (each was overwritten by the other's stale
// copy before).
func TestPrefetchedTicketNotOverwritten(t *testing.T) {
	stores, contacts := twoInstances(t, "jane@customer.example", "joe@customer.example")
	a, b := stores[0], stores[1]
	ctx := context.Background()
	var id int64
	if err := a.Write(ctx, func(tx *Tx) error {
		tk := &Ticket{Subject: "printer", Status: 2, RequesterID: contacts[0]}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		id = tk.ID
		return tx.AddMessageID(MessageRef{MessageID: "m@customer.example", Direction: "in", TicketID: &id})
	}); err != nil {
		t.Fatal(err)
	}
	prefetched, agentDone := make(chan struct{}), make(chan error, 1)
	go func() {
		<-prefetched
		agentDone <- b.Write(ctx, func(tx *Tx) error {
			tk, err := tx.Ticket(id)
			if err != nil {
				return err
			}
			tk.Priority = 4 // the agent's change
			return tx.UpdateTicket(tk)
		})
	}()
	err := a.WriteBatch(ctx, func(tx *Tx) error {
		if err := tx.PrefetchMessageIDs([]string{"m@customer.example"}); err != nil {
			return err
		}
		if err := tx.PrefetchTickets(); err != nil {
			return err
		}
		close(prefetched)
		// The agent's transaction gets its chance to run.
		time.Sleep(300 * time.Millisecond)
		select {
		case err := <-agentDone:
			t.Errorf("the agent's change committed while the batch held the ticket (%v)", err)
			agentDone <- err
		default:
		}
		tk, err := tx.Ticket(id)
		if err != nil {
			return err
		}
		tk.Status = 3 // the customer's reply
		return tx.UpdateTicket(tk)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-agentDone; err != nil {
		t.Fatal(err)
	}
	if err := a.Read(ctx, func(tx *Tx) error {
		tk, err := tx.Ticket(id)
		if err != nil {
			return err
		}
		if tk.Status != 3 || tk.Priority != 4 {
			t.Errorf("status %d priority %d, want 3 and 4: a change was lost", tk.Status, tk.Priority)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
