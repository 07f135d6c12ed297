package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deskmail/deskmail/search"
)

// searchSchema is the built-in ticket fields and two custom ones.
func searchSchema() search.Schema {
	s := TicketSearchFields()
	s["plan"] = search.Field{Type: search.String, Nullable: true, Custom: true, Key: "plan"}
	s["cf_amount"] = search.Field{Type: search.Number, Nullable: true, Custom: true, Key: "amount"}
	return s
}

// blank returns a copy of e with every value replaced by a fixed one
// of its type (nulls kept: they change the SQL's shape, not a value).
func blank(e search.Expr) search.Expr {
	switch n := e.(type) {
	case *search.And:
		out := &search.And{}
		for _, t := range n.Terms {
			out.Terms = append(out.Terms, blank(t))
		}
		return out
	case *search.Or:
		out := &search.Or{}
		for _, t := range n.Terms {
			out.Terms = append(out.Terms, blank(t))
		}
		return out
	case *search.Cond:
		c := *n
		if !c.Value.Null {
			c.Value = search.Value{Int: 7, Num: 7.5, Str: "blank", Day: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
		}
		return &c
	}
	return e
}

// FuzzSearchSQL: for any query that parses, the SQL text depends only
// on the query's shape — the same with every value replaced — so no
// value reaches it except as a bound parameter; there are as many
// parameters as placeholders; and the SQL runs. The seeds run as a
// normal test.
func FuzzSearchSQL(f *testing.F) {
	for _, s := range []string{
		`priority:3`, `status:2 AND priority:>3`, `(status:3 OR status:4) AND tag:'vip'`, `tag:null OR type:null`,
		`created_at:>'2026-03-01' AND created_at:<'2026-03-31' AND updated_at:'2026-03-02'`, `type:'It\'s'`,
		`agent_id:null AND group_id:2`, `group_id:>1`, `due_by:null OR fr_due_by:<'2026-01-01'`, `plan:'Pro'`,
		`cf_amount:>-2.5 OR cf_amount:null`, `tag:'x\' OR 1=1 --'`, `type:'); DROP TABLE tickets; --'`, `plan:'?'`,
	} {
		f.Add(s)
	}
	st, err := Open(context.Background(), filepath.Join(f.TempDir(), "s.db"), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	err = st.Write(context.Background(), func(tx *Tx) error {
		c, _, err := tx.EnsureContact("jane@example.com", "Jane")
		if err != nil {
			return err
		}
		tk := &Ticket{Subject: "One", Status: 2, RequesterID: c.ID, Tags: []string{"vip"}}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		return tx.SetCustomField(tk.ID, "plan", "Pro")
	})
	if err != nil {
		f.Fatal(err)
	}
	groups := []string{"billing", "sales"}
	f.Fuzz(func(t *testing.T, q string) {
		e, err := search.Parse(q, searchSchema())
		if err != nil {
			return
		}
		c := &compiler{groups: groups}
		sqlText, err := c.ticket(e)
		if err != nil {
			t.Fatalf("%q: %v", q, err)
		}
		b := &compiler{groups: groups}
		blanked, err := b.ticket(blank(e))
		if err != nil || blanked != sqlText {
			t.Fatalf("%q: the SQL depends on the values:\n%s\n%s (%v)", q, sqlText, blanked, err)
		}
		if n := strings.Count(sqlText, "?"); n != len(c.args) {
			t.Fatalf("%q: %d placeholders, %d arguments: %s", q, n, len(c.args), sqlText)
		}
		err = st.Read(context.Background(), func(tx *Tx) error {
			_, _, err := tx.SearchTickets(TicketQuery{Where: e, Groups: groups, Channels: []string{"support"}, Limit: 30})
			return err
		})
		if err != nil {
			t.Fatalf("%q: %v", q, err)
		}
	})
}

// TestSearchOnEveryStore runs the same searches on SQLite and
// PostgreSQL (the portable SQL) and expects the same tickets.
func TestSearchOnEveryStore(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		st := openKind(t, k, Options{})
		var ids []int64
		err := st.Write(context.Background(), func(tx *Tx) error {
			c, _, err := tx.EnsureContact("jane@example.com", "Jane")
			if err != nil {
				return err
			}
			billing, typ := "billing", "Question"
			for i, tk := range []*Ticket{
				{Subject: "One", Status: 2, Priority: 3, RequesterID: c.ID, Tags: []string{"VIP"}, Group: &billing, Type: &typ},
				{Subject: "Two", Status: 3, Priority: 1, RequesterID: c.ID},
			} {
				if err := tx.CreateTicket(tk); err != nil {
					return err
				}
				ids = append(ids, tk.ID)
				if err := tx.SetCustomField(tk.ID, "amount", []string{"12.5", "3"}[i]); err != nil {
					return err
				}
			}
			return tx.SetCustomField(ids[0], "plan", "Pro")
		})
		if err != nil {
			t.Fatal(err)
		}
		today := time.Now().UTC().Format(time.DateOnly)
		for q, want := range map[string][]int64{
			`priority:>3`: {ids[0]},
			`status:3 OR (tag:'vip' AND type:'question')`: {ids[1], ids[0]},
			`tag:null AND type:null`:                      {ids[1]},
			`group_id:1`:                                  {ids[0]},
			`group_id:null`:                               {ids[1]},
			`cf_amount:>10`:                               {ids[0]},
			`cf_amount:<3 AND plan:null`:                  {ids[1]},
			`plan:'PRO'`:                                  {ids[0]},
			`created_at:'` + today + `' AND due_by:null`:  {ids[1], ids[0]},
			`tag:'x\' OR 1=1 --'`:                         {},
		} {
			e, err := search.Parse(q, searchSchema())
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			var got []int64
			err = st.Read(context.Background(), func(tx *Tx) error {
				tks, total, err := tx.SearchTickets(TicketQuery{Where: e, Groups: []string{"billing", "sales"}, Channels: []string{"support"}, Limit: 30})
				if err == nil && total != len(tks) {
					t.Errorf("%s: total %d for %d", q, total, len(tks))
				}
				for _, tk := range tks {
					got = append(got, tk.ID)
				}
				return err
			})
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("%s: %v, want %v", q, got, want)
			}
		}
		// The list filters of GET /api/v2/tickets, on both stores too.
		err = st.Read(context.Background(), func(tx *Tx) error {
			for _, f := range []TicketFilter{
				{OrderBy: "due_by", OpenFor: 1, CreatedSince: time.Now().Add(-time.Hour)},
				{OrderBy: "due_by", Desc: true, OnlyDeleted: true},
			} {
				if _, err := tx.ListTickets(f); err != nil {
					return err
				}
			}
			tks, err := tx.ListTickets(TicketFilter{OpenFor: 1, OrderBy: "due_by"})
			if err == nil && (len(tks) != 1 || tks[0].ID != ids[0]) {
				t.Errorf("new_and_my_open: %v", tks)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		e, _ := search.Parse(`email:'JANE@example.com' AND created_at:>'2000-01-01'`, ContactSearchFields())
		err = st.Read(context.Background(), func(tx *Tx) error {
			cs, total, err := tx.SearchContacts(ContactQuery{Where: e, Limit: 30})
			if err == nil && (total != 1 || len(cs) != 1) {
				t.Errorf("contacts: %d of %d", len(cs), total)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
