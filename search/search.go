// Package search parses the query language of Freshdesk's search API
// (GET /api/v2/search/tickets?query="…") into a syntax tree that the
// store compiles to SQL with every value bound as a parameter.
//
// # Grammar
//
// The whole query is enclosed in double quotes, as Freshdesk requires
// (Unquote strips them). Inside:
//
//	query     = or
//	or        = and { "OR" and }
//	and       = primary { "AND" primary }
//	primary   = "(" or ")" | condition
//	condition = FIELD ( ":" | ":>" | ":<" ) value
//	value     = INTEGER | NUMBER | 'string' | null
//
// AND binds tighter than OR; AND, OR and null are written as shown
// (upper-case operators, lower-case null), field names are
// case-sensitive. A string is in single quotes; a backslash escapes
// the next character (\' and \\). Numbers are decimal, optionally
// negative; a date is a string 'yyyy-mm-dd' (UTC).
//
// # Meaning
//
// ":" is equality, ":>" greater than or equal, ":<" less than or
// equal, as in Freshdesk. The two range operators apply to numbers and
// dates only. A date compares by day: created_at:'2026-03-02' is any
// time that day, created_at:<'2026-03-02' is up to the end of it.
// field:null matches a field without a value (only where the Schema
// says it may have none).
//
// The parser knows nothing of SQL: it checks each condition against a
// Schema (field name → type) and reports the first problem as an
// *Error naming the field or the query and the position (a byte
// offset, counted from 1, inside the quotes).
package search

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxQueryBytes is the longest query accepted, quotes included
// (Freshdesk's limit is 512 characters).
const MaxQueryBytes = 512

// maxDepth bounds nested parentheses, so that a hostile query cannot
// exhaust the stack.
const maxDepth = 32

// Type is the type of a searchable field.
type Type int

// Field types.
const (
	// Integer fields take whole numbers (status, priority, ids).
	Integer Type = iota + 1
	// Number fields take any decimal number.
	Number
	// String fields take quoted strings.
	String
	// Date fields take quoted 'yyyy-mm-dd' dates.
	Date
)

func (t Type) String() string {
	switch t {
	case Integer:
		return "integer"
	case Number:
		return "number"
	case String:
		return "string"
	case Date:
		return "date"
	}
	return "unknown"
}

// Field describes one searchable field.
type Field struct {
	Type Type
	// Nullable fields accept field:null.
	Nullable bool
	// Custom marks a configured custom field; Key is then its stored
	// name (the query may spell it with Freshdesk's cf_ prefix).
	Custom bool
	Key    string
}

// Schema is the set of fields a query may name.
type Schema map[string]Field

// Op is a comparison.
type Op int

// Comparisons.
const (
	Eq Op = iota + 1 // ":"
	Ge               // ":>" (greater than or equal)
	Le               // ":<" (less than or equal)
)

func (o Op) String() string {
	switch o {
	case Eq:
		return ":"
	case Ge:
		return ":>"
	case Le:
		return ":<"
	}
	return "?"
}

// Value is a condition's right-hand side. Exactly one of its forms is
// meaningful, chosen by the field's Type, unless Null is set.
type Value struct {
	Null bool
	// Int is an Integer field's value.
	Int int64
	// Num is a Number field's value.
	Num float64
	// Str is a String field's value.
	Str string
	// Day is a Date field's value: midnight UTC of that day.
	Day time.Time
}

// Expr is a node of the syntax tree: *And, *Or or *Cond.
type Expr interface {
	isExpr()
	String() string
}

// And holds when every term holds.
type And struct{ Terms []Expr }

// Or holds when any term holds.
type Or struct{ Terms []Expr }

// Cond is one comparison of a field with a value.
type Cond struct {
	// Name is the field as written in the query.
	Name  string
	Field Field
	Op    Op
	Value Value
}

func (*And) isExpr()  {}
func (*Or) isExpr()   {}
func (*Cond) isExpr() {}

func (a *And) String() string { return join(a.Terms, " AND ") }
func (o *Or) String() string  { return join(o.Terms, " OR ") }

func join(terms []Expr, sep string) string {
	parts := make([]string, len(terms))
	for i, t := range terms {
		parts[i] = t.String()
	}
	return "(" + strings.Join(parts, sep) + ")"
}

// String writes the condition back in the query language.
func (c *Cond) String() string {
	v := c.Value
	var s string
	switch {
	case v.Null:
		s = "null"
	case c.Field.Type == Integer:
		s = strconv.FormatInt(v.Int, 10)
	case c.Field.Type == Number:
		s = strconv.FormatFloat(v.Num, 'g', -1, 64)
	case c.Field.Type == Date:
		s = "'" + v.Day.Format(time.DateOnly) + "'"
	default:
		s = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v.Str) + "'"
	}
	return c.Name + c.Op.String() + s
}

// Error is a malformed query. Field is the query field the problem is
// about, or "query" when it is the syntax.
type Error struct {
	Field string
	// Pos is the byte offset (from 1) inside the quotes; 0 when the
	// problem is the query as a whole.
	Pos int
	Msg string
}

func (e *Error) Error() string {
	if e.Pos > 0 {
		return fmt.Sprintf("%s (at position %d)", e.Msg, e.Pos)
	}
	return e.Msg
}

// Unquote returns the query inside Freshdesk's mandatory double quotes.
func Unquote(q string) (string, error) {
	if len(q) > MaxQueryBytes {
		return "", &Error{Field: "query", Msg: fmt.Sprintf("The query is longer than %d characters", MaxQueryBytes)}
	}
	if !utf8.ValidString(q) {
		return "", &Error{Field: "query", Msg: "The query is not valid UTF-8"}
	}
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return "", &Error{Field: "query", Msg: `The query should be enclosed in double quotes: query="priority:3"`}
	}
	return q[1 : len(q)-1], nil
}

// Parse parses a query (without its double quotes; see Unquote)
// against schema.
func Parse(q string, schema Schema) (Expr, error) {
	if len(q) > MaxQueryBytes {
		return nil, &Error{Field: "query", Msg: fmt.Sprintf("The query is longer than %d characters", MaxQueryBytes)}
	}
	p := &parser{lx: lexer{src: q}, schema: schema}
	p.next()
	if p.tok.kind == tokEOF {
		return nil, &Error{Field: "query", Msg: "The query is empty"}
	}
	e, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.unexpected("AND, OR or the end of the query")
	}
	return e, nil
}

type parser struct {
	lx     lexer
	tok    token
	schema Schema
}

func (p *parser) next() { p.tok = p.lx.next() }

func (p *parser) errorf(format string, args ...any) *Error {
	return &Error{Field: "query", Pos: p.tok.pos + 1, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) unexpected(wanted string) *Error {
	if p.tok.kind == tokEOF {
		return p.errorf("Expected %s, found the end of the query", wanted)
	}
	if p.tok.kind == tokError {
		return p.errorf("%s", p.tok.text)
	}
	return p.errorf("Expected %s, found %q", wanted, p.tok.text)
}

func (p *parser) or(depth int) (Expr, error) {
	return p.chain(tokOr, depth, p.and, func(terms []Expr) Expr { return &Or{Terms: terms} })
}

func (p *parser) and(depth int) (Expr, error) {
	return p.chain(tokAnd, depth, p.primary, func(terms []Expr) Expr { return &And{Terms: terms} })
}

// chain parses term { sep term }, making a node of two or more terms.
func (p *parser) chain(sep tokKind, depth int, term func(int) (Expr, error), node func([]Expr) Expr) (Expr, error) {
	first, err := term(depth)
	if err != nil {
		return nil, err
	}
	terms := []Expr{first}
	for p.tok.kind == sep {
		p.next()
		e, err := term(depth)
		if err != nil {
			return nil, err
		}
		terms = append(terms, e)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return node(terms), nil
}

func (p *parser) primary(depth int) (Expr, error) {
	switch p.tok.kind {
	case tokLParen:
		if depth >= maxDepth {
			return nil, p.errorf("Parentheses are nested more than %d deep", maxDepth)
		}
		p.next()
		e, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tokRParen {
			return nil, p.unexpected(`")"`)
		}
		p.next()
		return e, nil
	case tokIdent:
		return p.condition()
	}
	return nil, p.unexpected(`a field name or "("`)
}

func (p *parser) condition() (Expr, error) {
	name, namePos := p.tok.text, p.tok.pos
	f, ok := p.schema[name]
	if !ok {
		return nil, &Error{Field: name, Pos: namePos + 1, Msg: fmt.Sprintf("%q is not a field that can be searched", name)}
	}
	p.next()
	var op Op
	switch p.tok.kind {
	case tokColon:
		op = Eq
	case tokGe:
		op = Ge
	case tokLe:
		op = Le
	default:
		return nil, p.unexpected(`":", ":>" or ":<" after ` + name)
	}
	p.next()
	c := &Cond{Name: name, Field: f, Op: op}
	bad := func(format string, args ...any) error {
		return &Error{Field: name, Pos: p.tok.pos + 1, Msg: fmt.Sprintf(format, args...)}
	}
	if op != Eq && f.Type != Integer && f.Type != Number && f.Type != Date {
		return nil, &Error{Field: name, Pos: namePos + 1, Msg: fmt.Sprintf("%s is a %s field: only \":\" applies to it", name, f.Type)}
	}
	switch tok := p.tok; {
	case tok.kind == tokError:
		return nil, p.errorf("%s", tok.text)
	case tok.kind == tokEOF:
		return nil, p.unexpected("a value after " + name + op.String())
	case tok.kind == tokNull:
		if !f.Nullable {
			return nil, bad("%s always has a value: null does not apply to it", name)
		}
		if op != Eq {
			return nil, bad("null compares with \":\" only")
		}
		c.Value.Null = true
	case f.Type == Integer:
		if tok.kind != tokNumber {
			return nil, bad("%s takes an integer, not %s", name, tok.describe())
		}
		n, err := strconv.ParseInt(tok.text, 10, 64)
		if err != nil {
			return nil, bad("%s takes an integer, not %s", name, tok.text)
		}
		c.Value.Int = n
	case f.Type == Number:
		if tok.kind != tokNumber {
			return nil, bad("%s takes a number, not %s", name, tok.describe())
		}
		n, err := strconv.ParseFloat(tok.text, 64)
		if err != nil {
			return nil, bad("%s takes a number, not %s", name, tok.text)
		}
		c.Value.Num = n
	case f.Type == Date:
		if tok.kind != tokString {
			return nil, bad("%s takes a date in quotes, 'yyyy-mm-dd', not %s", name, tok.describe())
		}
		d, err := time.Parse(time.DateOnly, tok.text)
		if err != nil {
			return nil, bad("%s takes a date 'yyyy-mm-dd', not '%s'", name, tok.text)
		}
		c.Value.Day = d
	default:
		if tok.kind != tokString {
			return nil, bad("%s takes a string in single quotes, not %s", name, tok.describe())
		}
		c.Value.Str = tok.text
	}
	p.next()
	return c, nil
}
