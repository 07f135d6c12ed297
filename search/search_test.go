package search

import (
	"errors"
	"strings"
	"testing"
)

var testSchema = Schema{
	"status":     {Type: Integer},
	"priority":   {Type: Integer},
	"agent_id":   {Type: Integer, Nullable: true},
	"tag":        {Type: String, Nullable: true},
	"type":       {Type: String, Nullable: true},
	"created_at": {Type: Date},
	"due_by":     {Type: Date, Nullable: true},
	"amount":     {Type: Number, Nullable: true, Custom: true, Key: "amount"},
	"cf_plan":    {Type: String, Nullable: true, Custom: true, Key: "plan"},
}

func TestParse(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`priority:3`, `priority:3`},
		{` status:2   AND priority:>3 `, `(status:2 AND priority:>3)`},
		{`status:3 OR status:4 AND priority:1`, `(status:3 OR (status:4 AND priority:1))`},
		{`(status:3 OR status:4) AND priority:1`, `((status:3 OR status:4) AND priority:1)`},
		{`((tag:'vip'))`, `tag:'vip'`},
		{`tag:null`, `tag:null`},
		{`agent_id:null OR agent_id:12`, `(agent_id:null OR agent_id:12)`},
		{`created_at:>'2026-03-01' AND created_at:<'2026-03-31'`, `(created_at:>'2026-03-01' AND created_at:<'2026-03-31')`},
		{`type:'It\'s a \\ question'`, `type:'It\'s a \\ question'`},
		{`amount:>-2.5`, `amount:>-2.5`},
		{`cf_plan:'Pro' AND due_by:null`, `(cf_plan:'Pro' AND due_by:null)`},
		{`tag:'été'`, `tag:'été'`},
		{`tag:'x'' OR 1=1 --'`, ``}, // error: see below
	} {
		e, err := Parse(c.in, testSchema)
		if c.want == "" {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want an error", c.in, e)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if e.String() != c.want {
			t.Errorf("Parse(%q) = %s, want %s", c.in, e, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, field, msg string }{
		{``, "query", "empty"},
		{`   `, "query", "empty"},
		{`priority`, "query", `Expected ":", ":>" or ":<" after priority, found the end`},
		{`priority:`, "query", "found the end of the query"},
		{`priority:'3'`, "priority", "takes an integer"},
		{`priority:3.5`, "priority", "takes an integer"},
		{`priority:high`, "priority", "takes an integer"},
		{`priority:3x`, "query", "is not a number"},
		{`colour:'red'`, "colour", "not a field that can be searched"},
		{`Status:2`, "Status", "not a field"},
		{`status:2 and priority:1`, "query", `Expected AND, OR or the end of the query, found "and"`},
		{`status:2 AND`, "query", "found the end"},
		{`(status:2`, "query", `Expected ")"`},
		{`status:2)`, "query", `found ")"`},
		{`tag:>'a'`, "tag", `only ":" applies`},
		{`tag:vip`, "tag", "single quotes"},
		{`tag:"vip"`, "query", "single quotes"},
		{`tag:'vip`, "query", "not closed"},
		{`tag:'vip\`, "query", "lone backslash"},
		{`created_at:'yesterday'`, "created_at", "yyyy-mm-dd"},
		{`created_at:'2026-02-30'`, "created_at", "yyyy-mm-dd"},
		{`created_at:2026`, "created_at", "date in quotes"},
		{`created_at:null`, "created_at", "always has a value"},
		{`due_by:>null`, "due_by", `null compares with ":" only`},
		{`status:2 ; DROP TABLE tickets`, "query", "Unexpected character ';'"},
		{strings.Repeat("(", 40) + "status:2" + strings.Repeat(")", 40), "query", "nested more than"},
		{strings.Repeat("status:2 OR ", 50) + "status:2", "query", "longer than 512"},
	} {
		_, err := Parse(c.in, testSchema)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %v, want an *Error", c.in, err)
			continue
		}
		if pe.Field != c.field || !strings.Contains(pe.Error(), c.msg) {
			t.Errorf("Parse(%q): field %q, %q; want field %q, message with %q", c.in, pe.Field, pe.Error(), c.field, c.msg)
		}
	}
	e := mustErr(t, `status:2 AND tag:vip`)
	if e.Pos != 18 || e.Error() != "tag takes a string in single quotes, not \"vip\" (at position 18)" {
		t.Errorf("position: %+v %q", e, e.Error())
	}
}

func mustErr(t *testing.T, q string) *Error {
	t.Helper()
	_, err := Parse(q, testSchema)
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("Parse(%q) = %v", q, err)
	}
	return pe
}

func TestUnquote(t *testing.T) {
	if q, err := Unquote(`"priority:3"`); err != nil || q != "priority:3" {
		t.Errorf("Unquote: %q %v", q, err)
	}
	for _, in := range []string{`priority:3`, `'priority:3'`, `"priority:3`, `"`, ``, "\"\xff\"", `"` + strings.Repeat("a", 511) + `"`} {
		if _, err := Unquote(in); err == nil {
			t.Errorf("Unquote(%q) accepted", in)
		}
	}
}
