package search

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks the parser's invariants on any input: no panic,
// either a tree or an *Error with a position inside the query, and a
// tree that prints back to a query parsing to the same tree. The seeds
// run as a normal test; `go test ./search -fuzz FuzzParse` explores.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`priority:3`, `status:2 AND priority:>3`, `(status:3 OR status:4) AND tag:'vip'`,
		`created_at:>'2026-03-01' AND created_at:<'2026-03-31'`, `type:'It\'s'`, `agent_id:null`,
		`amount:>-2.5`, `cf_plan:'Pro' OR due_by:null`, `tag:'x'' OR 1=1 --'`, `((((status:2`,
		`status:2 ; DROP TABLE tickets`, `tag:'\`, `priority:3x`, `"status:2"`, `é:1`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		e, err := Parse(q, testSchema)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q): %T %v, want *Error", q, err, err)
			}
			if pe.Pos < 0 || pe.Pos > len(q)+1 || pe.Field == "" || pe.Msg == "" {
				t.Fatalf("Parse(%q): bad error %+v", q, pe)
			}
			return
		}
		printed := e.String()
		again, err := Parse(printed, testSchema)
		if err != nil {
			var pe *Error
			if errors.As(err, &pe) && (len(printed) > MaxQueryBytes || strings.Contains(pe.Msg, "nested")) {
				return // the printed form adds parentheses
			}
			t.Fatalf("Parse(%q) printed %q, which does not parse: %v", q, printed, err)
		}
		if again.String() != printed {
			t.Fatalf("Parse(%q): %q then %q", q, printed, again.String())
		}
	})
}
