package store

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/deskmail/deskmail/internal/lazyregexp"
)

// dialect is the little that differs between the two stores. Every
// query and every migration is written once, in the portable subset
// of SQL both accept, with SQLite's `?` placeholders; on PostgreSQL
// the dialect rewrites placeholders to $n, translates migration DDL
// (pgDDL) and adds RETURNING id to inserts. The few migrations that
// cannot be written portably (SQLite triggers) have a PostgreSQL
// version in pgMigrationOverrides.
type dialect struct {
	pg bool
	// rebound caches rewritten queries: a batch runs the same few
	// queries thousands of times.
	rebound sync.Map // string -> string
	// withID caches insertWithID's rewrites.
	withID sync.Map
}

// Name is the store's kind as `deskmail version` and status print it.
func (d *dialect) name() string {
	if d.pg {
		return "postgresql"
	}
	return "sqlite"
}

// q rewrites a query for the dialect.
func (d *dialect) q(query string) string {
	if !d.pg {
		return query
	}
	if v, ok := d.rebound.Load(query); ok {
		return v.(string)
	}
	out := rebind(pgQuery(query))
	d.rebound.Store(query, out)
	return out
}

var qInsertInto = lazyregexp.New(`^INSERT INTO (\w+)\(([^()]*)\)\s+VALUES \(`)

// insertWithID rewrites `INSERT INTO table(cols) VALUES (…` into the
// dialect's same INSERT with the id column first, for an id the caller
// gives as the first argument; ok is false for another statement.
func (d *dialect) insertWithID(query string) (table, withID string, ok bool) {
	type rewritten struct{ table, q string }
	if v, ok := d.withID.Load(query); ok {
		r := v.(rewritten)
		return r.table, r.q, r.q != ""
	}
	var r rewritten
	if m := qInsertInto.FindStringSubmatchIndex(query); m != nil {
		r.table = query[m[2]:m[3]]
		r.q = d.q(query[:m[4]] + "id, " + query[m[4]:m[1]] + "?," + query[m[1]:])
	}
	d.withID.Store(query, r)
	return r.table, r.q, r.q != ""
}

// rebind turns `?` placeholders into PostgreSQL's $1, $2…, leaving
// string literals, quoted identifiers and comments alone.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			if j >= len(q) {
				j = len(q) - 1
			}
			b.WriteString(q[i : j+1])
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i - 1
			}
			b.WriteString(q[i : i+j+1])
			i += j
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

var (
	qScalarMinMax = lazyregexp.New(`(?i)\b(max|min)\(([^(),]+),([^(),]+)\)`)
	qCrossJoinOn  = lazyregexp.New(`\bCROSS JOIN (\w+(?: \w+)?) ON\b`)
)

// pgQuery translates the SQLite-isms a query may use: the scalar
// max(a, b) and min(a, b) (PostgreSQL's GREATEST and LEAST) and
// CROSS JOIN … ON (SQLite's way to fix the join order; a plain JOIN on
// PostgreSQL, whose planner chooses).
func pgQuery(q string) string {
	q = qScalarMinMax.ReplaceAllStringFunc(q, func(m string) string {
		sm := qScalarMinMax.FindStringSubmatch(m)
		f := "GREATEST"
		if strings.EqualFold(sm[1], "min") {
			f = "LEAST"
		}
		return f + "(" + sm[2] + "," + sm[3] + ")"
	})
	return qCrossJoinOn.ReplaceAllString(q, "JOIN $1 ON")
}

// pgArgs makes query arguments acceptable to PostgreSQL: a Go bool
// becomes 0/1 (flags are INTEGER columns), and a string PostgreSQL
// would refuse in TEXT — SQLite stores it as it is — a NUL byte or invalid UTF-8 in a TEXT
// value (a broken mail header can carry either). Such strings are
// stored with NULs dropped and invalid bytes replaced (U+FFFD); the
// raw message itself is a BYTEA and keeps every byte.
func pgArgs(args []any) []any {
	var cp []any
	for i, a := range args {
		var v any
		switch a := a.(type) {
		case string:
			if utf8.ValidString(a) && strings.IndexByte(a, 0) < 0 {
				continue
			}
			v = cleanText(a)
		case bool:
			// SQLite has no booleans: flags are INTEGER 0/1 columns.
			v = int64(0)
			if a {
				v = int64(1)
			}
		default:
			continue
		}
		if cp == nil {
			cp = make([]any, len(args))
			copy(cp, args)
		}
		cp[i] = v
	}
	if cp == nil {
		return args
	}
	return cp
}

// storedAsIs reports whether a TEXT value reads back as it was
// written on both stores (see pgArgs).
func storedAsIs(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "")
}

// PostgreSQL translation of the SQLite migrations (see pgDDL).
var (
	ddlRowidAlias = lazyregexp.New(`\bid INTEGER PRIMARY KEY\b`)
	ddlIntPK      = lazyregexp.New(`\bINTEGER PRIMARY KEY\b`)
	ddlNocase     = lazyregexp.New(`(?m)^(\s*(?:ALTER TABLE \w+ ADD COLUMN )?\w+ )TEXT([^,\n]*?) COLLATE NOCASE`)
	ddlText       = lazyregexp.New(`(?m)^(\s*(?:ALTER TABLE \w+ ADD COLUMN )?\w+ )TEXT\b`)
	ddlInteger    = lazyregexp.New(`\bINTEGER\b`)
	ddlBlob       = lazyregexp.New(`\bBLOB\b`)
	ddlReal       = lazyregexp.New(`\bREAL\b`)
	ddlOrIgnore   = lazyregexp.New(`(?s)INSERT OR IGNORE INTO(.*?);`)
	ddlTable      = lazyregexp.New(`(?s)CREATE TABLE (\w+) \((.*?)\n\);`)
)

// pgDDL translates one SQLite migration into PostgreSQL:
//   - `id INTEGER PRIMARY KEY` (SQLite's rowid alias) becomes an
//     identity column; every table without a rowid alias gets a hidden
//     `rowid` identity column, so that `ORDER BY rowid` (insertion
//     order) means the same on both;
//   - INTEGER → BIGINT, BLOB → BYTEA, REAL → DOUBLE PRECISION;
//   - TEXT … COLLATE NOCASE → CITEXT (case-insensitive equality,
//     UNIQUE and ON CONFLICT, like NOCASE), other TEXT columns get
//     COLLATE "C" so that they sort and compare bytewise as SQLite's
//     BINARY does — times are TEXT and are compared as strings;
//   - INSERT OR IGNORE → INSERT … ON CONFLICT DO NOTHING.
func pgDDL(s string) string {
	s = ddlTable.ReplaceAllStringFunc(s, func(m string) string {
		if ddlIntPK.MatchString(m) {
			return m
		}
		i := strings.IndexByte(m, '(')
		return m[:i+1] + "\n\trowid INTEGER GENERATED BY DEFAULT AS IDENTITY," + m[i+1:]
	})
	s = ddlRowidAlias.ReplaceAllString(s, "id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
	s = ddlNocase.ReplaceAllString(s, "${1}CITEXT$2")
	s = ddlText.ReplaceAllString(s, `${1}TEXT COLLATE "C"`)
	s = ddlInteger.ReplaceAllString(s, "BIGINT")
	s = ddlBlob.ReplaceAllString(s, "BYTEA")
	s = ddlReal.ReplaceAllString(s, "DOUBLE PRECISION")
	s = ddlOrIgnore.ReplaceAllString(s, "INSERT INTO$1 ON CONFLICT DO NOTHING;")
	return s
}

// pgMigrationOverrides are the PostgreSQL versions of the migrations
// (by number, 1-based) that have no portable form.
var pgMigrationOverrides = map[int]string{
	// 10: SQLite's triggers and json_each become a PL/pgSQL trigger
	// function over jsonb_array_elements.
	10: `
CREATE TABLE outbox_rcpt (
	rowid BIGINT GENERATED BY DEFAULT AS IDENTITY,
	outbox_id BIGINT NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
	address CITEXT NOT NULL
);
CREATE INDEX outbox_rcpt_address ON outbox_rcpt(address, outbox_id);
CREATE INDEX outbox_rcpt_outbox ON outbox_rcpt(outbox_id);
CREATE FUNCTION outbox_rcpt_addresses(rcpt TEXT) RETURNS SETOF TEXT LANGUAGE sql IMMUTABLE AS $$
	SELECT v #>> '{}' FROM jsonb_array_elements(CASE WHEN jsonb_typeof(rcpt::jsonb) = 'array' THEN rcpt::jsonb ELSE '[]'::jsonb END) v
	WHERE jsonb_typeof(v) = 'string'
$$;
INSERT INTO outbox_rcpt(outbox_id, address)
	SELECT o.id, a FROM outbox o, outbox_rcpt_addresses(o.rcpt_to) a;
CREATE FUNCTION outbox_rcpt_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		DELETE FROM outbox_rcpt WHERE outbox_id = NEW.id;
	END IF;
	INSERT INTO outbox_rcpt(outbox_id, address) SELECT NEW.id, a FROM outbox_rcpt_addresses(NEW.rcpt_to) a;
	RETURN NULL;
END
$$;
CREATE TRIGGER outbox_rcpt_insert AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION outbox_rcpt_sync();
CREATE TRIGGER outbox_rcpt_update AFTER UPDATE OF rcpt_to ON outbox FOR EACH ROW EXECUTE FUNCTION outbox_rcpt_sync();
`,
	// 20: a PL/pgSQL row trigger costs every outbox INSERT the call of
	// its function and the jsonb parse of rcpt_to, some 15% of a batch
	// ingest's PostgreSQL CPU: enqueueOutbox inserts the recipients
	// itself (queued with the mail in a fast attempt), and Copy derives
	// them for the mail it copies. Changing rcpt_to keeps the trigger.
	20: `
DROP TRIGGER outbox_rcpt_insert ON outbox;
`,
}

// lockRows ends a SELECT whose rows a write transaction is about to
// claim (outbox mail, webhook deliveries, SLA timers): on PostgreSQL,
// FOR UPDATE SKIP LOCKED, so that instances sharing the database claim
// disjoint rows without waiting for each other. SQLite needs nothing:
// its write transactions run one at a time, across processes too.
func (t *Tx) lockRows() string {
	if t.d.pg && !t.read {
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}

// migration returns migration i (0-based) in the dialect.
func (d *dialect) migration(i int) string {
	if !d.pg {
		return migrations[i]
	}
	if s, ok := pgMigrationOverrides[i+1]; ok {
		return s
	}
	return pgDDL(migrations[i])
}
