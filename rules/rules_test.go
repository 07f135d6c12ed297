package rules

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/command"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

func TestMatches(t *testing.T) {
	ch := "support"
	tk := &store.Ticket{Subject: "URGENT: printer", Status: 6, StatusName: "Waiting on engineering", Category: "pending",
		Priority: 3, Tags: []string{"VIP"}, Channel: &ch, Requester: store.Person{Email: "jane@eu.bigcorp.test"}}
	from := func(addr string) Event {
		return Event{Conversation: &store.Conversation{FromEmail: addr}}
	}
	for _, c := range []struct {
		name string
		r    Rule
		ev   Event
		want bool
	}{
		{"no conditions", Rule{}, Event{}, true},
		{"domain covers subdomains", Rule{From: []string{"bigcorp.test"}}, Event{}, true},
		{"@domain", Rule{From: []string{"@bigcorp.test"}}, Event{}, true},
		{"lookalike domain", Rule{From: []string{"corp.test"}}, Event{}, false},
		{"the sender, not the requester", Rule{From: []string{"bob@other.test"}}, from("Bob@Other.test"), true},
		{"sender differs", Rule{From: []string{"@bigcorp.test"}}, from("bob@other.test"), false},
		{"subject, any case", Rule{SubjectContains: []string{"Urgent"}}, Event{}, true},
		{"subject absent", Rule{SubjectContains: []string{"invoice", "refund"}}, Event{}, false},
		{"priority", Rule{Priorities: []int{3, 4}}, Event{}, true},
		{"priority differs", Rule{Priorities: []int{1}}, Event{}, false},
		{"status code", Rule{Statuses: []string{"6"}}, Event{}, true},
		{"status name", Rule{Statuses: []string{"waiting on engineering"}}, Event{}, true},
		{"status category", Rule{Statuses: []string{"pending"}}, Event{}, true},
		{"category in French", Rule{Statuses: []string{"en attente"}}, Event{}, true},
		{"other category", Rule{Statuses: []string{"open", "resolved"}}, Event{}, false},
		{"tags, any case", Rule{Tags: []string{"spam", "vip"}}, Event{}, true},
		{"tag absent", Rule{Tags: []string{"spam"}}, Event{}, false},
		{"channel", Rule{Channels: []string{"support"}}, Event{}, true},
		{"other channel", Rule{Channels: []string{"sales"}}, Event{}, false},
		{"all must hold", Rule{Channels: []string{"support"}, Priorities: []int{4}}, Event{}, false},
	} {
		r := New([]Rule{c.r}, nil).rules[0]
		if got := r.matches(tk, c.ev); got != c.want {
			t.Errorf("%s: matches = %v, want %v", c.name, got, c.want)
		}
	}
}

// doer records what rules asked for; a rule named in causes raises
// that event.
type doer struct {
	calls   []string
	causes  map[string]string
	refused map[string]bool
}

func (d *doer) Change(tx *store.Tx, tk *store.Ticket, cmds []command.Command, by threading.Actor) ([]Event, []string, error) {
	if d.refused[by.Name] {
		return nil, []string{"status 9 is not part of this ticket's pipeline"}, nil
	}
	d.calls = append(d.calls, by.Name)
	if ev, ok := d.causes[by.Name]; ok {
		return []Event{{Kind: ev, TicketID: tk.ID}}, nil, nil
	}
	return nil, nil, nil
}

func (d *doer) Note(tx *store.Tx, tk *store.Ticket, text string, notify []string, by threading.Actor) (*Event, error) {
	d.calls = append(d.calls, by.Name+":note")
	return &Event{Kind: "note_added", TicketID: tk.ID}, nil
}

func (d *doer) Webhook(tx *store.Tx, hook string, ev Event, rule string) error {
	d.calls = append(d.calls, rule+":webhook:"+hook+":"+ev.Kind)
	return nil
}

// run runs rules on evs for a fresh ticket in a real store and returns
// the ticket's history actions.
func run(t *testing.T, rs []Rule, d *doer, kinds ...string) []store.History {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "r.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var hist []store.History
	err = st.Write(ctx, func(tx *store.Tx) error {
		c, _, err := tx.EnsureContact("jane@customer.test", "Jane")
		if err != nil {
			return err
		}
		tk := &store.Ticket{Subject: "Hello", Status: 2, RequesterID: c.ID}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		var evs []Event
		for _, k := range kinds {
			evs = append(evs, Event{Kind: k, TicketID: tk.ID})
		}
		if err := New(rs, nil).Run(tx, d, evs...); err != nil {
			return err
		}
		hist, err = tx.TicketHistory(tk.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hist
}

func actions(hist []store.History) string {
	var out []string
	for _, h := range hist {
		out = append(out, h.Action+":"+h.Actor)
	}
	return strings.Join(out, " ")
}

func TestLoopCutAfterOnePass(t *testing.T) {
	// A's status change triggers B, whose note triggers A again.
	d := &doer{causes: map[string]string{"A": "status_changed"}}
	rs := []Rule{{Name: "A", On: []string{"note_added"}, Status: "pending"},
		{Name: "B", On: []string{"status_changed"}, Note: "back to you"}}
	hist := run(t, rs, d, "note_added")
	if strings.Join(d.calls, ",") != "A,B:note" {
		t.Errorf("calls %v, want A then B's note", d.calls)
	}
	if got := actions(hist); got != "rule_applied:A rule_applied:B rule_loop_cut:A" {
		t.Errorf("history %s", got)
	}
	if n := hist[len(hist)-1].Note; !strings.Contains(n, "A → B → A") {
		t.Errorf("cut note %q", n)
	}
}

func TestRuleTriggeringItselfIsCut(t *testing.T) {
	d := &doer{causes: map[string]string{"A": "status_changed"}}
	hist := run(t, []Rule{{Name: "A", On: []string{"status_changed"}, Status: "open"}}, d, "status_changed")
	if strings.Join(d.calls, ",") != "A" || actions(hist) != "rule_applied:A rule_loop_cut:A" {
		t.Errorf("calls %v history %s", d.calls, actions(hist))
	}
}

func TestSameChangeTwoEventsIsNoLoop(t *testing.T) {
	d := &doer{}
	rs := []Rule{{Name: "tag", On: []string{"agent_replied", "status_changed"}, AddTags: []string{"x"}}}
	hist := run(t, rs, d, "agent_replied", "status_changed")
	if strings.Join(d.calls, ",") != "tag" || actions(hist) != "rule_applied:tag" {
		t.Errorf("calls %v history %s", d.calls, actions(hist))
	}
}

func TestRefusedRuleChangesNothing(t *testing.T) {
	d := &doer{refused: map[string]bool{"bad": true}}
	rs := []Rule{{Name: "bad", On: []string{"ticket_created"}, Status: "9", Webhook: "crm"},
		{Name: "good", On: []string{"ticket_created"}, Note: "hi", Webhook: "crm"}}
	hist := run(t, rs, d, "ticket_created")
	if strings.Join(d.calls, ",") != "good:note,good:webhook:crm:ticket_created" {
		t.Errorf("calls %v", d.calls)
	}
	if got := actions(hist); got != "rule_failed:bad rule_applied:good" {
		t.Errorf("history %s", got)
	}
	if !strings.Contains(hist[0].Note, "not part of this ticket's pipeline") {
		t.Errorf("failure note %q", hist[0].Note)
	}
}

func TestCommandsAreEmailCommands(t *testing.T) {
	r := Rule{Status: "pending", Priority: "urgent", Assign: "none", Group: "billing", AddTags: []string{"vip"}, RemoveTags: []string{"spam"}}
	var got []string
	for _, c := range r.commands() {
		got = append(got, c.Key+"="+c.Value)
	}
	if strings.Join(got, " ") != "status=pending priority=urgent assign=none group=billing tags=+vip -spam" {
		t.Errorf("commands %v", got)
	}
}
