package store

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/deskmail/deskmail/internal/lazyregexp"
)

// pgDeps is what a fast attempt (see pgwrite.go) knows of the schema to
// keep queued statements queued past a statement that cannot see them:
// each table's foreign-key parents, which tables have triggers, and the
// names (views, functions) behind which a query may read any table.
//
// The rule: a queued statement is sent before a statement S when S
// reads a table it writes, or writes a table it reads (its own table
// and its foreign-key parents, which its checks read); everything
// queued before such a statement goes too, so the queue keeps its
// order. Only plain INSERT … VALUES statements are classified; any
// other queued statement is sent before whatever comes next, and any
// statement that is neither a SELECT nor such an INSERT has everything
// before it sent first.
type pgDeps struct {
	parents map[string][]string
	// triggerWrites are the tables a table's triggers write (the table
	// itself included); a table with triggers not known here is
	// treated as writing everything.
	triggerWrites map[string][]string
	// opaque are views and functions of the schema.
	opaque map[string]bool
	// stmts caches statement classifications by text.
	stmts sync.Map // string -> *pgStmtDeps
	// contactReserving is contactReservingQuery with the contacts'
	// sequence named (pg_get_serial_sequence looks it up in pg_depend
	// at every call); "" when the schema has none.
	contactReserving string
	// contactsReserving is contactsReservingQuery with the sequence
	// named.
	contactsReserving string
	// conversationNext takes the next id of the conversations'
	// sequence (see pgTx.conversation); "" when the schema has none.
	conversationNext string
	// ticketNext takes the next id of the tickets' sequence (see
	// pgTx.ticket); "" when the schema has none.
	ticketNext string
	// conversationsAhead takes as many ids (see ReserveConversations).
	conversationsAhead string
}

// pgStmtDeps is one statement's classification: the tables it reads
// and writes; all means every table (the statement is a barrier).
type pgStmtDeps struct {
	reads, writes []string
	all           bool
}

// pgKnownTriggers are the triggers whose writes are known, by table:
// migration 10's keeps outbox_rcpt in step with a change of
// outbox.rcpt_to (migration 20 dropped the one on INSERT).
var pgKnownTriggers = map[string]struct {
	names  string // the table's triggers, sorted, comma-separated
	writes []string
}{
	"outbox": {"outbox_rcpt_update", []string{"outbox", "outbox_rcpt"}},
}

// loadPGDeps reads the schema's tables, foreign keys, triggers, views
// and functions.
func (s *Store) loadPGDeps(ctx context.Context) (*pgDeps, error) {
	d := &pgDeps{parents: map[string][]string{}, triggerWrites: map[string][]string{}, opaque: map[string]bool{}}
	rows, err := s.writer.QueryContext(ctx, `SELECT c.relname, c.relkind::text,
		COALESCE((SELECT string_agg(p.relname, ',') FROM pg_constraint k JOIN pg_class p ON p.oid = k.confrelid
			WHERE k.conrelid = c.oid AND k.contype = 'f'), ''),
		COALESCE((SELECT string_agg(tg.tgname, ',' ORDER BY tg.tgname) FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal), '')
		FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
		AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		UNION ALL SELECT p.proname, 'function', '', '' FROM pg_proc p
		WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
		UNION ALL SELECT 'contacts', 'sequence', COALESCE(pg_get_serial_sequence('contacts', 'id'), ''), ''
		UNION ALL SELECT 'conversations', 'sequence', COALESCE(pg_get_serial_sequence('conversations', 'id'), ''), ''
		UNION ALL SELECT 'tickets', 'sequence', COALESCE(pg_get_serial_sequence('tickets', 'id'), ''), ''`)
	if err != nil {
		return nil, fmt.Errorf("read schema dependencies: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, kind, parents, triggers string
		if err := rows.Scan(&name, &kind, &parents, &triggers); err != nil {
			return nil, fmt.Errorf("read schema dependencies: %w", err)
		}
		if kind == "sequence" {
			seq := "'" + strings.ReplaceAll(parents, "'", "''") + "'"
			switch {
			case parents == "":
			case name == "contacts":
				d.contactReserving = strings.Replace(contactReservingQuery, "$seq", seq, 1)
				d.contactsReserving = strings.Replace(contactsReservingQuery, "$seq", seq, 1)
			case name == "tickets":
				d.ticketNext = "SELECT nextval(" + seq + ")"
			case name == "conversations":
				d.conversationNext = "SELECT nextval(" + seq + ")"
				d.conversationsAhead = "SELECT nextval(" + seq + ") FROM generate_series(1, ?)"
			}
			continue
		}
		name = strings.ToLower(name)
		if kind != "r" && kind != "p" {
			d.opaque[name] = true
			continue
		}
		d.parents[name] = nil
		if parents != "" {
			d.parents[name] = strings.Split(strings.ToLower(parents), ",")
		}
		if triggers != "" {
			d.triggerWrites[name] = nil // unknown: writes everything
			if k, ok := pgKnownTriggers[name]; ok && k.names == triggers {
				d.triggerWrites[name] = k.writes
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema dependencies: %w", err)
	}
	return d, nil
}

var (
	qIdent       = lazyregexp.New(`[A-Za-z_][A-Za-z0-9_]*`)
	qPlainInsert = lazyregexp.New(`^INSERT INTO (\w+)\(`)
	// qInsertWriting finds, in the rest of an INSERT, what would write
	// elsewhere than its table (ON CONFLICT … DO UPDATE SET writes its
	// own table).
	qInsertWriting = lazyregexp.New(`(?i)\b(INSERT|DELETE|MERGE|TRUNCATE|ALTER|CREATE|DROP|LOCK|COPY|CALL|WITH)\b`)
	qWriting       = lazyregexp.New(`(?i)\b(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|ALTER|CREATE|DROP|LOCK|COPY|CALL|DO|SET|RESET|DISCARD|NOTIFY)\b`)
)

// of classifies a statement (its PostgreSQL text).
func (d *pgDeps) of(query string) *pgStmtDeps {
	if v, ok := d.stmts.Load(query); ok {
		return v.(*pgStmtDeps)
	}
	sd := d.classify(query)
	d.stmts.Store(query, sd)
	return sd
}

func (d *pgDeps) classify(query string) *pgStmtDeps {
	barrier := &pgStmtDeps{all: true}
	q := strings.TrimSpace(query)
	mentioned := func(s string) ([]string, bool) {
		var out []string
		for _, id := range qIdent.FindAllString(s, -1) {
			id = strings.ToLower(id)
			if d.opaque[id] {
				return nil, false
			}
			if _, ok := d.parents[id]; ok && !contains(out, id) {
				out = append(out, id)
			}
		}
		return out, true
	}
	if m := qPlainInsert.FindStringSubmatch(q); m != nil {
		table := strings.ToLower(m[1])
		if _, ok := d.parents[table]; !ok {
			return barrier
		}
		rest := q[len(m[0]):]
		if qInsertWriting.MatchString(rest) {
			return barrier
		}
		writes := []string{table}
		if tw, ok := d.triggerWrites[table]; ok {
			if tw == nil {
				return barrier
			}
			writes = tw
		}
		reads, ok := mentioned(rest)
		if !ok {
			return barrier
		}
		reads = append(reads, table)
		reads = append(reads, d.parents[table]...)
		return &pgStmtDeps{reads: reads, writes: writes}
	}
	upper := strings.ToUpper(q)
	if !strings.HasPrefix(upper, "SELECT") || qWriting.MatchString(q) {
		return barrier
	}
	reads, ok := mentioned(q)
	if !ok {
		return barrier
	}
	return &pgStmtDeps{reads: reads}
}

// conflicts reports whether a statement a queued before b must run
// before it: b reads or writes what a writes. (b writing a table a
// only reads is no conflict: a is a plain INSERT, which reads only its
// own table, for its unique keys, and its foreign-key parents; b, then
// a plain INSERT too, adds rows, which can make none of a's checks
// fail.)
func (a *pgStmtDeps) conflicts(b *pgStmtDeps) bool {
	if a.all || b.all {
		return true
	}
	return overlap(a.writes, b.reads) || overlap(a.writes, b.writes)
}

func overlap(a, b []string) bool {
	for _, x := range a {
		if contains(b, x) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
