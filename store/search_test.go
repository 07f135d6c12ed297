package store

import (
	"context"
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
