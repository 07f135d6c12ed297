package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL write transactions run on the writer's native pgx
// connection rather than through database/sql, so that statements can
// be pipelined: several sent in one round trip, whose results arrive
// together. A round trip to PostgreSQL costs about 50 µs of CPU on
// each side, beyond the statement itself (measured on this project's
// 2-core VM), and ingesting one message takes about twenty statements.
//
// A Write is sent as it is written: each statement waits for its
// result, and Savepoint is a real SAVEPOINT (the safe mode). A
// WriteBatch first runs fn in the fast mode:
//
//   - a statement run with exec (whose result the caller may never
//     look at) is queued, not sent; the queue goes out in front of the
//     next statement that returns rows, in the same round trip, and
//     at commit in front of the COMMIT. Its RowsAffected sends the
//     queue at once;
//   - Savepoint runs its function without a SAVEPOINT;
//   - BEGIN travels with the first statement.
//
// The fast attempt commits only when every statement of it succeeded
// and no Savepoint function failed: then each statement saw what it
// would have seen run one at a time (a queued statement is sent
// before anything that reads). At the first failure the attempt is
// abandoned — its context is cancelled, its later statements fail at
// once — rolled back, and fn runs again in the safe mode, where a
// failing Savepoint function rolls back its own changes only, as on
// SQLite. A message that breaks its batch's fast attempt therefore
// costs the batch a second run, never its neighbours' effects.
type pgTx struct {
	c    *pgx.Conn
	deps *pgDeps // nil: every statement waits for the whole queue
	// fast is the state of a fast attempt (batch.go); nil in the safe
	// mode.
	fast *fastAttempt
	// pending are the statements queued, not yet sent (BEGIN first
	// until it has been sent).
	pending []pgStmt
	begun   bool
	// ids are the ids taken ahead by table (see queueInsert), took
	// how many were taken last.
	ids  map[string][]int64
	took map[string]int
	// conversation is a conversation id taken from the sequence in the
	// fast attempt's last round trip that read (0: none): the next
	// conversation inserted gets it and its INSERT is queued instead
	// of waiting for RETURNING id. Conversations are listed by id,
	// which must follow the order they were added in; an id taken one
	// round trip ahead of its INSERT, in the same transaction, keeps
	// it as an id taken by the INSERT would (the order of ids of two
	// instances' transactions was never their order of commit). The
	// one left at the end of an attempt is a gap in the sequence.
	conversation int64
	// convAhead are conversation ids taken for a batch at its start
	// (ReserveConversations), used before conversation, in order.
	convAhead []int64
	// ticket is a ticket id taken from the sequence in a round trip
	// made anyway, while ticketsExpected (ExpectNewTickets) says the
	// batch still has messages that look like new tickets: the next
	// CreateTicket gets it and its INSERT is queued instead of waiting
	// for RETURNING id. Ticket numbers are read by people: ids are
	// taken only a few ahead (this one and ticketAhead, at most
	// ticketAheadMax) and only while new tickets are expected, so that
	// the sequence keeps no more gaps than that per batch (messages
	// that looked new and were not, an attempt abandoned).
	ticket          int64
	ticketsExpected int
	// ticketAhead are ticket ids a send of the queue took (see stream),
	// at most ticketAheadMax, while new tickets are expected: taken
	// after ticket.
	ticketAhead []int64
	// expect is how many ids of a table the batch is expected to take
	// ahead (ReserveConversations): the first query takes that many
	// rather than 8, 16, 32….
	expect map[string]int
	// conflict is the first deadlock or serialization failure a
	// statement met, in either mode (see ErrConflict).
	conflict error
	// inflight is the queue sent at a message's end whose results a
	// goroutine reads (see stream); nil: none. streamed counts such
	// sends.
	inflight *pgInflight
	streamed int
}

type pgStmt struct {
	sql  string
	args []any
	res  *pgResult
	deps *pgStmtDeps
	// claim marks AddMessageID's INSERT (see patchClaim).
	claim bool
	// one marks an INSERT … ON CONFLICT DO NOTHING of a reserved id
	// (queueReservedInsert), which must insert its row.
	one bool
	// conversation is the id of the conversation this INSERT adds
	// (queueInsert with pgTx.conversation), else 0; ticket the same
	// for a ticket (pgTx.ticket).
	conversation int64
	ticket       int64
}

// errReservedTaken abandons a fast attempt whose INSERT of a reserved
// contact id found the address taken (by another instance meanwhile).
var errReservedTaken = errors.New("store: the address got a contact meanwhile")

// errAbandoned marks a fast attempt that must be rolled back and run
// again in the safe mode.
var errAbandoned = errors.New("store: fast attempt abandoned")

// pgResult is the sql.Result of a statement run on a pgTx: known at
// once in the safe mode; in the fast mode, once the queue is sent.
type pgResult struct {
	p    *pgTx
	ctx  context.Context
	done bool
	n    int64
	err  error
}

func (r *pgResult) LastInsertId() (int64, error) {
	return 0, errors.New("store: LastInsertId is not supported by PostgreSQL (use RETURNING)")
}

func (r *pgResult) RowsAffected() (int64, error) {
	// Its result may be on its way (stream).
	if err := r.p.await(); err != nil && !r.done {
		return 0, err
	}
	if !r.done {
		if err := r.p.flush(r.ctx); err != nil && !r.done {
			return 0, err
		}
	}
	return r.n, r.err
}

// fail records err as the reason a fast attempt is abandoned (the
// first one wins), and as the transaction's conflict if it is one, and
// returns err.
func (p *pgTx) fail(err error) error {
	if p.conflict == nil && isConflict(err) {
		p.conflict = err
	}
	if p.fast != nil {
		p.fast.fail(err)
	}
	return err
}

// failed is the first error of a fast attempt, which is then
// abandoned; nil while it goes on, and in the safe mode.
func (p *pgTx) failed() error {
	if p.fast == nil {
		return nil
	}
	return p.fast.failed
}

// usable reports why no statement may run now: the transaction
// conflicted, the attempt was abandoned, or ctx is done.
func (p *pgTx) usable(ctx context.Context) error {
	if err := p.conflicted(); err != nil {
		return err
	}
	if p.failed() != nil {
		return fmt.Errorf("%w: %w", errAbandoned, p.failed())
	}
	return ctx.Err()
}

func (p *pgTx) queue(ctx context.Context, query string, args []any) *pgResult {
	r := &pgResult{p: p, ctx: ctx}
	sd := p.classify(query)
	if len(sd.writes) == 0 {
		// Only a plain INSERT may wait for later statements to pass
		// it: whatever else exec runs (an UPDATE, a SELECT of a
		// function, a lock) is sent before the next statement.
		sd = &pgStmtDeps{all: true}
	}
	p.pending = append(p.pending, pgStmt{sql: query, args: args, res: r, deps: sd})
	return r
}

func (p *pgTx) classify(query string) *pgStmtDeps {
	if p.deps == nil {
		return &pgStmtDeps{all: true}
	}
	return p.deps.of(query)
}

// before puts first in the queue the statements that must be sent
// before query (see pgDeps) and returns how many they are: those query
// conflicts with, and those any of them conflicts with, in the order
// they were queued. The others stay queued, in their order, for a
// later round trip: a claim put in the queue before a new ticket's
// INSERT … RETURNING id, which does not read message_ids, can then
// still be given its targets there (patchClaim) instead of being
// updated by a statement of its own.
func (p *pgTx) before(query string) int {
	sd := p.classify(query)
	need := make([]bool, len(p.pending))
	last := -1
	for i := len(p.pending) - 1; i >= 0; i-- {
		d := p.pending[i].deps
		if d.conflicts(sd) {
			need[i] = true
		} else {
			for j := i + 1; j <= last; j++ {
				if need[j] && d.conflicts(p.pending[j].deps) {
					need[i] = true
					break
				}
			}
		}
		if need[i] && last < 0 {
			last = i
		}
	}
	if last < 0 {
		return 0
	}
	sent := make([]pgStmt, 0, len(p.pending))
	var kept []pgStmt
	for i, st := range p.pending {
		if need[i] {
			sent = append(sent, st)
		} else {
			kept = append(kept, st)
		}
	}
	n := len(sent)
	p.pending = append(sent, kept...)
	return n
}

// patchClaim gives the queued INSERT of messageID's claim (AddMessageID
// in a fast attempt) its ticket and conversation, as the UPDATE of
// SetMessageIDTarget would, when nothing queued after it may have seen
// the row; false when the UPDATE must run.
func (p *pgTx) patchClaim(messageID string, ticketID, conversationID any) bool {
	sd := &pgStmtDeps{reads: []string{"message_ids"}, writes: []string{"message_ids"}}
	// after is set once a statement queued after the claim inserts the
	// conversation the claim is to name: the claim then moves to the
	// end of the queue, behind it.
	after := false
	for i := len(p.pending) - 1; i >= 0; i-- {
		st := &p.pending[i]
		if (st.conversation != 0 && st.conversation == conversationID) || (st.ticket != 0 && st.ticket == ticketID) {
			after = true
		}
		if st.claim && st.args[0] == messageID {
			st.args[3], st.args[4] = ticketID, conversationID
			if after {
				// Nothing after it reads or writes message_ids (checked
				// below), and the plain INSERTs it passes only add rows
				// its foreign keys may point at.
				claim := *st
				p.pending = append(append(p.pending[:i:i], p.pending[i+1:]...), claim)
			}
			return true
		}
		if st.deps.conflicts(sd) || (after && st.deps.all) {
			return false
		}
	}
	return false
}

// send sends the first n queued statements and, when query is not
// empty, query itself in one round trip, and reads the queued
// statements' results. The caller reads query's result from the
// returned batch and closes it; with an empty query the batch is
// already closed (nil).
func (p *pgTx) send(ctx context.Context, query string, args []any) (pgx.BatchResults, error) {
	return p.sendN(ctx, len(p.pending), query, args)
}

func (p *pgTx) sendN(ctx context.Context, n int, query string, args []any) (pgx.BatchResults, error) {
	if err := p.await(); err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	for _, s := range p.pending[:n] {
		if err := resolveLazy(s.args); err != nil {
			return nil, p.fail(err)
		}
		b.Queue(s.sql, s.args...)
	}
	reserve := query != "" && p.wantsConversation()
	if reserve {
		b.Queue(p.deps.conversationNext)
	}
	reserveTicket := query != "" && p.wantsTicket()
	if reserveTicket {
		b.Queue(p.deps.ticketNext)
	}
	if query != "" {
		b.Queue(query, args...)
	}
	pend := p.pending[:n:n]
	p.pending = append([]pgStmt(nil), p.pending[n:]...)
	p.begun = true
	br := p.c.SendBatch(ctx, b)
	if err := readQueued(br, pend); err != nil {
		br.Close()
		return nil, p.fail(err)
	}
	if reserve {
		if err := br.QueryRow().Scan(&p.conversation); err != nil {
			br.Close()
			return nil, p.fail(err)
		}
	}
	if reserveTicket {
		if err := br.QueryRow().Scan(&p.ticket); err != nil {
			br.Close()
			return nil, p.fail(err)
		}
	}
	if query == "" {
		if err := br.Close(); err != nil {
			return nil, p.fail(err)
		}
		return nil, nil
	}
	return br, nil
}

// readQueued reads the results of the queued statements pend, sent at
// the head of br, into their pgResults; the first error is returned
// (and given to every statement after it).
func readQueued(br pgx.BatchResults, pend []pgStmt) error {
	for i, s := range pend {
		ct, err := br.Exec()
		if err == nil && s.one && ct.RowsAffected() != 1 {
			err = errReservedTaken
		}
		if s.res != nil {
			s.res.done, s.res.n, s.res.err = true, ct.RowsAffected(), err
		}
		if err != nil {
			for _, rest := range pend[i+1:] {
				if rest.res != nil {
					rest.res.done, rest.res.err = true, err
				}
			}
			return err
		}
	}
	return nil
}

// pgInflight is a send of queued statements on its way (see stream).
type pgInflight struct {
	done chan struct{}
	err  error
	// reserving is how many ticket ids the send takes; tickets are
	// those it got.
	reserving int
	tickets   []int64
}

// ticketAheadMax bounds the ticket ids a fast attempt holds unused
// (ticket and ticketAhead): the gaps an abandoned attempt leaves in the
// numbers people read.
const ticketAheadMax = 8

// stream sends, in a fast attempt, the statements queued so far on
// their way at the end of a message, without waiting: a goroutine
// reads their results while the transaction goes on with the next
// message, so that PostgreSQL runs them while deskmail threads it.
// Without it, the queue went out only in front of the next read or of
// the COMMIT, and PostgreSQL and the commit goroutine took turns, each
// idle while the other worked. At most one send is on its way; while
// it is, the queue waits for the next message's end. Whatever uses the
// connection next waits for it first (await), and an error it met
// fails the attempt then, as it would have at that send.
func (p *pgTx) stream(ctx context.Context) {
	if p.fast == nil || len(p.pending) == 0 || p.usable(ctx) != nil {
		return
	}
	if f := p.inflight; f != nil {
		select {
		case <-f.done:
		default:
			return
		}
	}
	if p.await() != nil {
		return
	}
	stmts := p.pending
	p.pending, p.begun = nil, true
	b := &pgx.Batch{}
	f := &pgInflight{done: make(chan struct{})}
	if p.deps != nil && p.deps.ticketNext != "" {
		// The next messages' ticket ids ride along: without a read in
		// the batch, each new ticket would wait for RETURNING id.
		have := len(p.ticketAhead)
		if p.ticket != 0 {
			have++
		}
		f.reserving = max(0, min(ticketAheadMax-have, p.ticketsExpected-have))
	}
	p.inflight = f
	p.streamed++
	c, next := p.c, ""
	if p.deps != nil {
		next = p.deps.ticketNext
	}
	go func() {
		defer close(f.done)
		for _, s := range stmts {
			if err := resolveLazy(s.args); err != nil {
				f.err = err
				for _, s := range stmts {
					if s.res != nil {
						s.res.done, s.res.err = true, err
					}
				}
				return
			}
			b.Queue(s.sql, s.args...)
		}
		for range f.reserving {
			b.Queue(next)
		}
		br := c.SendBatch(ctx, b)
		err := readQueued(br, stmts)
		for i := 0; err == nil && i < f.reserving; i++ {
			var id int64
			if err = br.QueryRow().Scan(&id); err == nil {
				f.tickets = append(f.tickets, id)
			}
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		f.err = err
	}()
}

// await waits for the send stream started, if any, and returns (and
// records, see fail) the error it met.
func (p *pgTx) await() error {
	f := p.inflight
	if f == nil {
		return nil
	}
	<-f.done
	p.inflight = nil
	p.ticketAhead = append(p.ticketAhead, f.tickets...)
	if f.err != nil {
		return p.fail(f.err)
	}
	return nil
}

// wantsConversation reports whether the fast attempt's next round trip
// that reads should take a conversation id (see pgTx.conversation).
func (p *pgTx) wantsConversation() bool {
	return p.fast != nil && p.conversation == 0 && len(p.convAhead) == 0 && p.deps != nil && p.deps.conversationNext != ""
}

// wantsTicket reports whether it should take a ticket id (see
// pgTx.ticket).
func (p *pgTx) wantsTicket() bool {
	return p.fast != nil && p.ticket == 0 && len(p.ticketAhead) == 0 && (p.inflight == nil || p.inflight.reserving == 0) &&
		p.ticketsExpected > 0 && p.deps != nil && p.deps.ticketNext != ""
}

// takeTicket returns a ticket id taken ahead (0: none), waiting for a
// send on its way that takes some.
func (p *pgTx) takeTicket() (int64, error) {
	if p.fast == nil {
		return 0, nil
	}
	if p.ticket == 0 && len(p.ticketAhead) == 0 && p.inflight != nil && p.inflight.reserving > 0 {
		if err := p.await(); err != nil {
			return 0, err
		}
	}
	var id int64
	switch {
	case p.ticket != 0 && (len(p.ticketAhead) == 0 || p.ticket < p.ticketAhead[0]):
		id, p.ticket = p.ticket, 0
	case len(p.ticketAhead) > 0:
		id, p.ticketAhead = p.ticketAhead[0], p.ticketAhead[1:]
	}
	if p.ticketsExpected > 0 {
		p.ticketsExpected-- // this one came
	}
	return id, nil
}

// resolveLazy puts in args the bytes each lazyRaw stands for.
func resolveLazy(args []any) error {
	for i, a := range args {
		if l, ok := a.(lazyRaw); ok {
			raw, err := l.resolve()
			if err != nil {
				return err
			}
			args[i] = raw
		}
	}
	return nil
}

// flush sends the queued statements.
func (p *pgTx) flush(ctx context.Context) error {
	if len(p.pending) == 0 {
		return nil
	}
	if err := p.usable(ctx); err != nil {
		return err
	}
	_, err := p.send(ctx, "", nil)
	return err
}

func (p *pgTx) exec(ctx, quiet context.Context, query string, args []any) (sql.Result, error) {
	if err := p.usable(ctx); err != nil {
		return nil, err
	}
	if p.fast != nil {
		return p.queue(quiet, query, args), nil
	}
	br, err := p.send(quiet, query, args)
	if err != nil {
		return nil, err
	}
	ct, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, p.fail(err)
	}
	return &pgResult{p: p, done: true, n: ct.RowsAffected()}, nil
}

func (p *pgTx) query(ctx, quiet context.Context, query string, args []any) (*pgRows, error) {
	if err := p.usable(ctx); err != nil {
		return nil, err
	}
	var rows pgx.Rows
	var br pgx.BatchResults
	n := len(p.pending)
	if p.fast != nil {
		n = p.before(query)
	}
	if err := p.await(); err != nil {
		return nil, err
	}
	if n == 0 && p.begun && !p.wantsConversation() && !p.wantsTicket() {
		var err error
		if rows, err = p.c.Query(quiet, query, args...); err != nil {
			return nil, p.fail(err)
		}
	} else {
		var err error
		if br, err = p.sendN(quiet, n, query, args); err != nil {
			return nil, err
		}
		if rows, err = br.Query(); err != nil {
			br.Close()
			return nil, p.fail(err)
		}
	}
	return &pgRows{p: p, rows: rows, br: br}, nil
}

func (p *pgTx) row(ctx, quiet context.Context, query string, args []any) *pgRow {
	rows, err := p.query(ctx, quiet, query, args)
	return &pgRow{rows: rows, err: err}
}

// pgRows reads the rows of one query of a pgTx with database/sql's
// conversions (see assign).
type pgRows struct {
	p      *pgTx
	rows   pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
	decode []func([]byte) (any, error)
}

func (r *pgRows) Next() bool {
	if r.closed {
		return false
	}
	if r.rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *pgRows) Scan(dest ...any) error {
	raw := r.rows.RawValues()
	if len(raw) != len(dest) {
		return fmt.Errorf("store: scan: %d columns, %d destinations", len(raw), len(dest))
	}
	if r.decode == nil {
		r.decode = pgDecoders(r.p.c.TypeMap(), r.rows.FieldDescriptions())
	}
	for i, src := range raw {
		var v any
		if src != nil {
			var err error
			if v, err = r.decode[i](src); err != nil {
				return fmt.Errorf("store: scan column %d: %w", i, err)
			}
		}
		if err := assign(dest[i], v); err != nil {
			return fmt.Errorf("store: scan column %d: %w", i, err)
		}
	}
	return nil
}

// pgDecoders returns, for each column, how its value is decoded: into
// the Go value pgx's database/sql driver hands database/sql (see
// pgx's stdlib.Rows.Next), so that assign sees what database/sql's
// Scan saw.
func pgDecoders(m *pgtype.Map, fds []pgconn.FieldDescription) []func([]byte) (any, error) {
	out := make([]func([]byte) (any, error), len(fds))
	for i, fd := range fds {
		oid, format := fd.DataTypeOID, fd.Format
		switch oid {
		case pgtype.BoolOID:
			out[i] = decodeAs[bool](m, oid, format, func(v bool) any { return v })
		case pgtype.ByteaOID, pgtype.JSONOID, pgtype.JSONBOID, pgtype.XMLOID:
			out[i] = decodeAs[[]byte](m, oid, format, func(v []byte) any { return v })
		case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
			out[i] = decodeAs[int64](m, oid, format, func(v int64) any { return v })
		case pgtype.Float4OID, pgtype.Float8OID:
			out[i] = decodeAs[float64](m, oid, format, func(v float64) any { return v })
		case pgtype.TimestampOID, pgtype.TimestamptzOID, pgtype.DateOID:
			out[i] = decodeAs[time.Time](m, oid, format, func(v time.Time) any { return v })
		default:
			out[i] = decodeAs[string](m, oid, format, func(v string) any { return v })
		}
	}
	return out
}

func decodeAs[T any](m *pgtype.Map, oid uint32, format int16, wrap func(T) any) func([]byte) (any, error) {
	var d T
	plan := m.PlanScan(oid, format, &d)
	return func(src []byte) (any, error) {
		if err := plan.Scan(src, &d); err != nil {
			return nil, err
		}
		return wrap(d), nil
	}
}

func (r *pgRows) Close() error {
	if r.closed {
		return r.err
	}
	r.closed = true
	r.rows.Close()
	r.err = r.rows.Err()
	if r.br != nil {
		if err := r.br.Close(); r.err == nil {
			r.err = err
		}
	}
	if r.err != nil {
		r.p.fail(r.err)
	}
	return r.err
}

func (r *pgRows) Err() error {
	if r.closed {
		return r.err
	}
	return r.rows.Err()
}

// pgRow is QueryRow's result: sql.ErrNoRows when there is no row.
type pgRow struct {
	rows *pgRows
	err  error
}

func (r *pgRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Close(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}

// assign stores the value pgx decoded (int64, string, []byte, bool,
// float64, time.Time or nil for the column types of deskmail's schema)
// in dest as database/sql's Scan would: the same conversions the
// store's queries rely on through database/sql (an INTEGER flag into a
// bool, NULL into a sql.Null*, a number into a string).
func assign(dest, v any) error {
	if b, ok := v.([]byte); ok {
		v = append([]byte(nil), b...)
	}
	if s, ok := dest.(sql.Scanner); ok {
		return s.Scan(v)
	}
	switch d := dest.(type) {
	case *any:
		*d = v
		return nil
	case *string:
		switch v := v.(type) {
		case string:
			*d = v
		case []byte:
			*d = string(v)
		case int64:
			*d = strconv.FormatInt(v, 10)
		case float64:
			*d = strconv.FormatFloat(v, 'g', -1, 64)
		case bool:
			*d = strconv.FormatBool(v)
		case time.Time:
			*d = v.Format(time.RFC3339Nano)
		default:
			return fmt.Errorf("converting %T to string is unsupported", v)
		}
		return nil
	case *[]byte:
		switch v := v.(type) {
		case []byte:
			*d = v
		case string:
			*d = []byte(v)
		case nil:
			*d = nil
		default:
			return fmt.Errorf("converting %T to []byte is unsupported", v)
		}
		return nil
	case *bool:
		switch v := v.(type) {
		case bool:
			*d = v
		case int64:
			if v != 0 && v != 1 {
				return fmt.Errorf("converting %d to bool is unsupported", v)
			}
			*d = v == 1
		case string:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return err
			}
			*d = b
		default:
			return fmt.Errorf("converting %T to bool is unsupported", v)
		}
		return nil
	case *time.Time:
		if t, ok := v.(time.Time); ok {
			*d = t
			return nil
		}
		return fmt.Errorf("converting %T to time.Time is unsupported", v)
	}
	// Numbers of any width, and pointers to them (NULL → nil).
	rv := reflect.ValueOf(dest)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("destination not a pointer")
	}
	ev := rv.Elem()
	if ev.Kind() == reflect.Pointer {
		if v == nil {
			ev.SetZero()
			return nil
		}
		n := reflect.New(ev.Type().Elem())
		if err := assign(n.Interface(), v); err != nil {
			return err
		}
		ev.Set(n)
		return nil
	}
	if v == nil {
		return fmt.Errorf("converting NULL to %s is unsupported", ev.Kind())
	}
	var s string
	switch v := v.(type) {
	case int64:
		s = strconv.FormatInt(v, 10)
	case float64:
		s = strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		s = v
	case []byte:
		s = string(v)
	case bool:
		s = "0"
		if v {
			s = "1"
		}
	default:
		return fmt.Errorf("converting %T to %s is unsupported", v, ev.Kind())
	}
	switch ev.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, ev.Type().Bits())
		if err != nil {
			return fmt.Errorf("converting %q to %s: %w", s, ev.Kind(), err)
		}
		ev.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, ev.Type().Bits())
		if err != nil {
			return fmt.Errorf("converting %q to %s: %w", s, ev.Kind(), err)
		}
		ev.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, ev.Type().Bits())
		if err != nil {
			return fmt.Errorf("converting %q to %s: %w", s, ev.Kind(), err)
		}
		ev.SetFloat(n)
	case reflect.String:
		ev.SetString(s)
	default:
		return fmt.Errorf("unsupported Scan, storing %T into %T", v, dest)
	}
	return nil
}

// writePG is Write (fast false) and WriteBatch (fast true) on
// PostgreSQL: fn runs on the writer's pgx connection; a fast attempt
// that is abandoned is rolled back and fn runs again in the safe mode.
//
// The transaction runs on a goroutine of its own, which the caller
// waits for: it waits on the network some ten times per message, and
// the caller's goroutine may be locked to its thread (deskmail
// ingest's main, see internal/oneshot), where each of those waits hands
// the thread over and back (runtime.startlockedm: futex wake-ups and
// sleeps on two threads). Measured on a batch of 1,000 gen-mails:
// 28.6 -> 12.2 futex calls per message.
func (s *Store) writePG(ctx context.Context, fast bool, fn func(*Tx) error) error {
	type outcome struct {
		err   error
		panic any
		ok    bool
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if !o.ok {
				o.panic = recover()
			}
			done <- o
		}()
		o.err = s.writePGHere(ctx, fast, fn)
		o.ok = true
	}()
	o := <-done
	switch {
	case o.ok:
		return o.err
	case o.panic == nil:
		runtime.Goexit() // fn called it (a test's t.FailNow)
	}
	panic(o.panic)
}

// writePGHere is writePG on the calling goroutine.
func (s *Store) writePGHere(ctx context.Context, fast bool, fn func(*Tx) error) error {
	if n := s.writes.Add(1); n > 1 && n&(n-1) == 0 {
		s.replan(ctx)
	}
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer conn.Close()
	s.writing.Add(1)
	defer s.writing.Add(-1)
	batch := fast
	for conflicts := 0; ; {
		err = conn.Raw(func(dc any) error {
			c := dc.(*stdlib.Conn).Conn()
			err := s.attemptPG(ctx, c, fast, fn)
			if c.IsClosed() {
				// database/sql discards the connection.
				return errors.Join(err, driver.ErrBadConn)
			}
			return err
		})
		switch {
		case errors.Is(err, ErrConflict) && batch && conflicts < conflictRetries:
			// Run again from the start, fast again: the other
			// transaction has the rows now and will let them go.
			s.conflicts.Add(1)
			if perr := conflictPause(ctx, conflicts); perr != nil {
				return err
			}
			conflicts++
			fast = true
		case fast && errors.Is(err, errAbandoned):
			fast = false
		default:
			return err
		}
	}
}

// attemptPG runs fn once in one transaction on c.
func (s *Store) attemptPG(ctx context.Context, c *pgx.Conn, fast bool, fn func(*Tx) error) (err error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	quiet := context.WithoutCancel(ctx)
	p := &pgTx{c: c, deps: s.pgDeps}
	if fast {
		p.fast = &fastAttempt{cancel: cancel}
	}
	p.queue(quiet, "BEGIN", nil)
	t := &Tx{ctx: actx, quiet: quiet, d: s.d, now: time.Now, pg: p, fast: p.fast, verifyTickets: s.verifyTickets}
	defer t.stopLater()
	if h := s.hook.Load(); h != nil {
		t.hook = *h
	}
	// No send may still be reading from c when it goes back.
	defer p.await()
	rollback := func() {
		_ = p.await()
		if p.begun && !c.IsClosed() {
			_, _ = c.Exec(quiet, "ROLLBACK")
		}
	}
	defer func() {
		if v := recover(); v != nil {
			rollback()
			if p.fast != nil {
				err = fmt.Errorf("%w: panic in transaction: %v", errAbandoned, v)
				return
			}
			err = fmt.Errorf("store: panic in transaction: %v", v)
		}
	}()
	ferr := fn(t)
	if ferr == nil && p.failed() == nil && p.conflict == nil {
		ferr = t.runLater()
	}
	if ferr == nil && p.failed() == nil && p.conflict == nil {
		// The queue and COMMIT in one round trip.
		p.queue(quiet, "COMMIT", nil)
		if ferr = p.flush(ctx); ferr == nil {
			return nil
		}
		if p.conflict != nil && pgAborted(c) {
			// A queued statement lost a deadlock: COMMIT did not run.
			rollback()
			return p.conflicted()
		}
		if p.failed() == nil || !pgAborted(c) {
			// COMMIT itself failed: whether the transaction committed
			// is not known to the caller; it is not run again.
			rollback()
			return fmt.Errorf("store: commit: %w", ferr)
		}
	} else if ferr != nil && p.failed() == nil && p.fast != nil {
		// fn failed by itself: what it would have failed with, had its
		// queued statements run one at a time, shows when they run.
		_ = p.flush(ctx)
	}
	rollback()
	if p.conflict != nil && !c.IsClosed() {
		return p.conflicted()
	}
	if p.failed() != nil && !c.IsClosed() {
		return fmt.Errorf("%w: %w", errAbandoned, p.failed())
	}
	return ferr
}

// pgAborted reports whether c is inside a failed transaction (so that
// COMMIT did not run).
func pgAborted(c *pgx.Conn) bool {
	return c.PgConn().TxStatus() == 'E'
}

// pgPrefetched are the tables whose ids a fast attempt takes from
// their sequence ahead (see queueInsert): raw mail and outbox mail,
// whose ids nobody reads in order of time. Tickets keep numbers
// allocated one by one (dense enough to read), and conversations,
// listed in order of id, too.
var pgPrefetched = map[string]bool{"raw_messages": true, "outbox": true}

// queueInsert queues, in a fast attempt, an INSERT into one of
// pgPrefetched with its id taken from the sequence ahead (a few at a
// time), instead of waiting for RETURNING id; ok is false for any other
// INSERT. Ids a rolled-back or abandoned attempt took are not reused:
// gaps, as after any rollback on PostgreSQL.
func (t *Tx) queueInsert(query string, args []any) (id int64, ok bool, err error) {
	table, withID, ok := t.d.insertWithID(query)
	p := t.pg
	if ok && table == "tickets" {
		if id, err = p.takeTicket(); err != nil || id == 0 {
			return 0, err != nil, err
		}
		t.forgetPeople(query, args)
		if _, err := p.exec(t.ctx, t.quiet, withID, pgArgs(append([]any{id}, args...))); err != nil {
			return 0, true, err
		}
		p.pending[len(p.pending)-1].ticket = id
		return id, true, nil
	}
	if ok && table == "conversations" && (p.conversation != 0 || len(p.convAhead) > 0) {
		if len(p.convAhead) > 0 {
			id, p.convAhead = p.convAhead[0], p.convAhead[1:]
		} else {
			id, p.conversation = p.conversation, 0
		}
		t.forgetPeople(query, args)
		if _, err := p.exec(t.ctx, t.quiet, withID, pgArgs(append([]any{id}, args...))); err != nil {
			return 0, true, err
		}
		p.pending[len(p.pending)-1].conversation = id
		return id, true, nil
	}
	if !ok || !pgPrefetched[table] {
		return 0, false, nil
	}
	ids := p.ids[table]
	if len(ids) == 0 {
		n := min(256, max(8, 2*p.took[table], p.expect[table]))
		rows, err := p.query(t.ctx, t.quiet, `SELECT nextval(q.s) FROM (SELECT pg_get_serial_sequence($1, 'id')::regclass AS s) q, generate_series(1, $2)`,
			[]any{table, n})
		if err != nil {
			return 0, true, err
		}
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return 0, true, err
			}
			ids = append(ids, v)
		}
		if err := rows.Close(); err != nil {
			return 0, true, err
		}
		if len(ids) == 0 {
			return 0, true, fmt.Errorf("store: no ids from the sequence of %s", table)
		}
		if p.ids == nil {
			p.ids, p.took = map[string][]int64{}, map[string]int{}
		}
		p.took[table] = n
	}
	id, p.ids[table] = ids[0], ids[1:]
	t.forgetPeople(query, args)
	if _, err := p.exec(t.ctx, t.quiet, withID, pgArgs(append([]any{id}, args...))); err != nil {
		return 0, true, err
	}
	return id, true, nil
}

// queueClaim queues AddMessageID's INSERT in a fast attempt, marked for
// patchClaim.
func (p *pgTx) queueClaim(ctx, quiet context.Context, query string, args []any) error {
	if err := p.usable(ctx); err != nil {
		return err
	}
	p.queue(quiet, query, args)
	p.pending[len(p.pending)-1].claim = true
	return nil
}

// contactReservingQuery is contactByEmail's query in a fast attempt:
// the contact with the address, or, when none has it, a row of NULLs
// and an id taken from the contacts' sequence, for the contact
// EnsureContact usually creates next (the sender of a new ticket): its
// INSERT then needs no round trip of its own for RETURNING id. An id
// reserved and not used is a gap in the sequence, as after a rollback.
// $seq stands for the sequence (see pgDeps.contactReserving).
const contactReservingQuery = `SELECT c.id, c.email, c.name, c.language, c.bouncing, c.bounced_at, c.bounce_reason, c.bounce_status, c.bounce_id,
	c.phone, c.time_zone, c.tags, c.deleted_at, c.created_at, c.updated_at,
	CASE WHEN c.id IS NULL THEN nextval($seq) END
	FROM (SELECT 1) AS one LEFT JOIN contacts c ON c.email=?`

// contactByEmailReserving is contactByEmail in a fast attempt (see
// contactReservingQuery).
func (t *Tx) contactByEmailReserving(email string) (*Contact, error) {
	vals := make([]any, 16)
	dest := make([]any, len(vals))
	for i := range vals {
		dest[i] = &vals[i]
	}
	if err := t.row(t.pg.deps.contactReserving, email).Scan(dest...); err != nil {
		return nil, err
	}
	if vals[0] == nil {
		id, ok := vals[15].(int64)
		if !ok {
			return nil, fmt.Errorf("store: no id reserved for contact %s", email)
		}
		t.rememberNoContact(email)
		p := t.peopleCache()
		if p.reserved == nil {
			p.reserved = map[string]int64{}
		}
		p.reserved[email] = id
		return nil, sql.ErrNoRows
	}
	c, err := scanContact(replayRow(vals[:15]))
	if err != nil {
		return nil, err
	}
	t.rememberContact(email, c)
	return c, nil
}

// ReserveConversations takes n conversation ids from the sequence in
// one query, for the conversations a batch of n messages is about to
// add (about one per message): each conversation's INSERT is then queued with its id
// instead of waiting for RETURNING id or taking the next id in a round
// trip's extra statement. Only in a WriteBatch's fast attempt on
// PostgreSQL; elsewhere it does nothing. Ids left unused at the end of
// the attempt are gaps in the sequence, as those of a rolled-back
// INSERT are.
func (t *Tx) ReserveConversations(n int) error {
	p := t.pg
	if p == nil || p.fast == nil || p.deps == nil || p.deps.conversationsAhead == "" || n <= 0 {
		return nil
	}
	// And as many raw messages, with about two outbox mails each (a
	// new ticket's confirmation and notification), taken when first
	// needed (queueInsert).
	p.expect = map[string]int{"raw_messages": n, "outbox": 2 * n}
	rows, err := t.query(p.deps.conversationsAhead, min(n, 10000))
	if err != nil {
		return fmt.Errorf("store: reserve conversations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("store: reserve conversations: %w", err)
		}
		p.convAhead = append(p.convAhead, id)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: reserve conversations: %w", err)
	}
	if p.conversation != 0 {
		// Taken before these: used first, so that ids follow the order
		// conversations are added in.
		p.convAhead = append([]int64{p.conversation}, p.convAhead...)
		p.conversation = 0
	}
	return nil
}

// ExpectNewTickets tells a WriteBatch's fast attempt on PostgreSQL
// that n of the batch's messages still to be stored, the next one
// included, look like new tickets (their Message-IDs name no known
// ticket): while n > 0, a round trip made anyway takes the next ticket
// id too, and CreateTicket's INSERT is queued with it (see
// pgTx.ticket). Elsewhere it does nothing.
func (t *Tx) ExpectNewTickets(n int) {
	if p := t.pg; p != nil && p.fast != nil {
		p.ticketsExpected = n
	}
}

// contactsReservingQuery is contactReservingQuery for many addresses
// at once (PrefetchContacts): each asked address, its contact's
// columns, and an id taken from the sequence where none has it.
const contactsReservingQuery = `SELECT e.asked, c.id, c.email, c.name, c.language, c.bouncing, c.bounced_at, c.bounce_reason, c.bounce_status, c.bounce_id,
	c.phone, c.time_zone, c.tags, c.deleted_at, c.created_at, c.updated_at,
	CASE WHEN c.id IS NULL THEN nextval($seq) END
	FROM unnest(CAST(? AS TEXT[])) AS e(asked) LEFT JOIN contacts c ON c.email=CAST(e.asked AS citext)`

// PrefetchContacts reads the contacts with these addresses in one query
// so that the transaction's lookups of them (EnsureContact,
// ContactByEmail) answer without asking the database again, and, for
// an address no contact has, takes the id its contact would get, as
// contactByEmailReserving does. Only a WriteBatch's fast attempt on
// PostgreSQL does it (anywhere else a lookup is not a round trip of
// its own, or the ids are not taken ahead); elsewhere it does nothing.
// Addresses are remembered exactly as given, as lookups are.
func (t *Tx) PrefetchContacts(emails []string) error {
	if t.pg == nil || t.fast == nil || t.pg.deps == nil || t.pg.deps.contactsReserving == "" {
		return nil
	}
	var ask []string
	seen := make(map[string]bool, len(emails))
	for _, e := range emails {
		if e == "" || seen[e] || !storedAsIs(e) || t.contactFromCache(e, 0) != nil || t.knownNoContact(e) {
			continue
		}
		seen[e] = true
		ask = append(ask, e)
	}
	for start := 0; start < len(ask); start += prefetchChunk {
		chunk := ask[start:min(len(ask), start+prefetchChunk)]
		rows, err := t.query(t.pg.deps.contactsReserving, chunk)
		if err != nil {
			return fmt.Errorf("store: prefetch contacts: %w", err)
		}
		if err := t.rememberPrefetched(rows); err != nil {
			return fmt.Errorf("store: prefetch contacts: %w", err)
		}
	}
	return nil
}

// rememberPrefetched reads and closes the rows of
// contactsReservingQuery into the transaction's people.
func (t *Tx) rememberPrefetched(rs rows) error {
	defer rs.Close()
	vals := make([]any, 17)
	dest := make([]any, len(vals))
	for i := range vals {
		dest[i] = &vals[i]
	}
	for rs.Next() {
		clear(vals)
		if err := rs.Scan(dest...); err != nil {
			return err
		}
		asked, ok := vals[0].(string)
		if !ok {
			return fmt.Errorf("store: prefetched address of type %T", vals[0])
		}
		if vals[1] == nil {
			id, ok := vals[16].(int64)
			if !ok {
				return fmt.Errorf("store: no id reserved for contact %s", asked)
			}
			t.rememberNoContact(asked)
			p := t.peopleCache()
			if p.reserved == nil {
				p.reserved = map[string]int64{}
			}
			p.reserved[asked] = id
			continue
		}
		c, err := scanContact(replayRow(vals[1:16]))
		if err != nil {
			return err
		}
		t.rememberContact(asked, c)
	}
	return rs.Err()
}

// replayRow scans values already read, with assign's conversions.
type replayRow []any

func (r replayRow) Scan(dest ...any) error {
	if len(dest) != len(r) {
		return fmt.Errorf("store: scan: %d columns, %d destinations", len(r), len(dest))
	}
	for i, v := range r {
		if err := assign(dest[i], v); err != nil {
			return fmt.Errorf("store: scan column %d: %w", i, err)
		}
	}
	return nil
}

// takeReservedContact returns, once, the contact id reserved for
// email, if the transaction still knows no contact with it.
func (t *Tx) takeReservedContact(email string) (int64, bool) {
	p := t.people
	if t.pg == nil || t.fast == nil || p == nil || !p.noContact[email] {
		return 0, false
	}
	id, ok := p.reserved[email]
	delete(p.reserved, email)
	return id, ok
}

// queueReservedInsert queues query (an INSERT … ON CONFLICT DO NOTHING
// into a table with an id column) with the reserved id first: should it
// insert nothing, the fast attempt is abandoned (errReservedTaken) and
// the safe mode inserts as usual.
func (t *Tx) queueReservedInsert(query string, id int64, args ...any) error {
	if err := t.beforeStatement(query); err != nil {
		return err
	}
	_, withID, ok := t.d.insertWithID(query)
	if !ok {
		return fmt.Errorf("store: %.40s…: not an INSERT … VALUES", query)
	}
	t.forgetPeople(query, args)
	p := t.pg
	if err := p.usable(t.ctx); err != nil {
		return err
	}
	p.queue(t.quiet, withID, pgArgs(append([]any{id}, args...)))
	p.pending[len(p.pending)-1].one = true
	return nil
}
