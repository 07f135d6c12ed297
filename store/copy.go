package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// CopyTable is one table's result in a CopyReport.
type CopyTable struct {
	Table string `json:"table"`
	// Source and Target are the row counts after the copy.
	Source int64 `json:"source_rows"`
	Target int64 `json:"target_rows"`
	// Copied counts the rows this run inserted (0 on a re-run).
	Copied int64 `json:"copied"`
}

// CopyReport is what Copy did and verified.
type CopyReport struct {
	Tables []CopyTable `json:"tables"`
	// BlobsVerified counts raw messages and attachment blobs whose
	// content in the target hashes to their SHA-256.
	BlobsVerified int64 `json:"blobs_verified"`
}

// derivedTables are not copied but derived in the target, by the
// statement given, from the rows copied (their counts are still
// compared): outbox_rcpt from outbox.rcpt_to, as enqueueOutbox writes
// it. Only outbox mail without recipient rows is derived, so a re-run
// adds nothing twice.
var derivedTables = map[string]string{"outbox_rcpt": `INSERT INTO outbox_rcpt(outbox_id, address)
	SELECT o.id, a FROM outbox o CROSS JOIN outbox_rcpt_addresses(o.rcpt_to) a
	WHERE NOT EXISTS (SELECT 1 FROM outbox_rcpt r WHERE r.outbox_id = o.id) ORDER BY o.id`}

// Copy copies every row of a SQLite store into a PostgreSQL store (the
// upgrade path, `deskmail migrate`), in one target transaction from
// one snapshot of the source, then verifies that every table has as
// many rows on both sides and that every raw message and blob in the
// target hashes to its SHA-256. Rows the target already has (same
// primary key) are kept, so a re-run after a failure or after success
// copies only what is missing; a target that was written to by a
// deskmail of its own fails verification. Identity sequences are
// moved past the copied ids. Both stores must be at the same schema
// version (Open migrates both).
func Copy(ctx context.Context, src, dst *Store) (*CopyReport, error) {
	if src.d.pg || !dst.d.pg {
		return nil, errors.New("store: copy: from a SQLite store to a PostgreSQL store only")
	}
	r, err := src.readPool()
	if err != nil {
		return nil, fmt.Errorf("store: copy: read %s: %w", src.Name(), err)
	}
	stx, err := r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("store: copy: read %s: %w", src.Name(), err)
	}
	defer stx.Rollback()
	dtx, err := dst.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: copy: %s: %w", dst.Name(), err)
	}
	defer dtx.Rollback()
	c := &copier{ctx: ctx, src: stx, dst: dtx}
	rep, err := c.run()
	if err != nil {
		return nil, fmt.Errorf("store: copy: %w", err)
	}
	if err := dtx.Commit(); err != nil {
		return nil, fmt.Errorf("store: copy: commit: %w", err)
	}
	return rep, nil
}

type copier struct {
	ctx context.Context
	src *sql.Tx
	dst *sql.Tx
}

type fkey struct{ from, table string }

type tableInfo struct {
	name    string
	cols    []string          // source columns
	types   map[string]string // target column → data type
	rowid   bool              // the target has a hidden rowid column
	fks     []fkey
	notNull map[string]bool
	pk      string // "id" for an identity primary key
	deferFK map[string]string
}

func (c *copier) run() (*CopyReport, error) {
	names, err := c.strings(c.src, `SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	var tables []*tableInfo
	for _, n := range names {
		ti, err := c.info(n)
		if err != nil {
			return nil, err
		}
		tables = append(tables, ti)
	}
	order := copyOrder(tables)
	rep := &CopyReport{}
	copied := map[string]int64{}
	for _, ti := range order {
		if _, ok := derivedTables[ti.name]; ok {
			continue
		}
		n, err := c.copyTable(ti)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ti.name, err)
		}
		copied[ti.name] = n
	}
	// Second pass: the references left out to break cycles.
	for _, ti := range order {
		for col, target := range ti.deferFK {
			if err := c.fillDeferred(ti, col, target); err != nil {
				return nil, fmt.Errorf("%s.%s: %w", ti.name, col, err)
			}
		}
	}
	for _, ti := range order {
		if q, ok := derivedTables[ti.name]; ok {
			if _, err := c.dst.ExecContext(c.ctx, q); err != nil {
				return nil, fmt.Errorf("%s: derive: %w", ti.name, err)
			}
		}
	}
	for _, ti := range tables {
		var seqs []string
		if ti.pk != "" {
			seqs = append(seqs, ti.pk)
		}
		if ti.rowid {
			seqs = append(seqs, "rowid")
		}
		for _, col := range seqs {
			q := fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%s', '%s'), GREATEST((SELECT MAX(%s) FROM %s), 1))`, ti.name, col, col, ti.name)
			if _, err := c.dst.ExecContext(c.ctx, q); err != nil {
				return nil, fmt.Errorf("%s: sequence of %s: %w", ti.name, col, err)
			}
		}
	}
	for _, ti := range tables {
		t := CopyTable{Table: ti.name, Copied: copied[ti.name]}
		if err := c.src.QueryRowContext(c.ctx, "SELECT COUNT(*) FROM "+ti.name).Scan(&t.Source); err != nil {
			return nil, err
		}
		if err := c.dst.QueryRowContext(c.ctx, "SELECT COUNT(*) FROM "+ti.name).Scan(&t.Target); err != nil {
			return nil, err
		}
		rep.Tables = append(rep.Tables, t)
		if t.Source != t.Target {
			return rep, fmt.Errorf("verify: %s has %d rows in the source and %d in the target (was the target written to by another deskmail?)",
				ti.name, t.Source, t.Target)
		}
	}
	for _, tb := range []string{"raw_messages", "blobs"} {
		var n, bad int64
		err := c.dst.QueryRowContext(c.ctx, `SELECT COUNT(*), COUNT(*) FILTER (WHERE encode(sha256(data), 'hex') <> sha256) FROM `+tb).Scan(&n, &bad)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", tb, err)
		}
		if bad > 0 {
			return rep, fmt.Errorf("verify: %d of %d rows of %s do not match their SHA-256 in the target", bad, n, tb)
		}
		rep.BlobsVerified += n
	}
	return rep, nil
}

func (c *copier) strings(tx *sql.Tx, q string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(c.ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (c *copier) info(name string) (*tableInfo, error) {
	ti := &tableInfo{name: name, types: map[string]string{}, deferFK: map[string]string{}, notNull: map[string]bool{}}
	rows, err := c.src.QueryContext(c.ctx, `SELECT name, pk, type, "notnull" FROM pragma_table_info(?)`, name)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var col, typ string
		var pk int
		var notNull bool
		if err := rows.Scan(&col, &pk, &typ, &notNull); err != nil {
			rows.Close()
			return nil, err
		}
		ti.cols = append(ti.cols, col)
		ti.notNull[col] = notNull
		if col == "id" && pk == 1 && strings.EqualFold(typ, "INTEGER") {
			ti.pk = "id"
		}
	}
	rows.Close()
	frows, err := c.src.QueryContext(c.ctx, `SELECT "from", "table" FROM pragma_foreign_key_list(?)`, name)
	if err != nil {
		return nil, err
	}
	for frows.Next() {
		var fk fkey
		if err := frows.Scan(&fk.from, &fk.table); err != nil {
			frows.Close()
			return nil, err
		}
		ti.fks = append(ti.fks, fk)
	}
	frows.Close()
	trows, err := c.dst.QueryContext(c.ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1`, name)
	if err != nil {
		return nil, err
	}
	for trows.Next() {
		var col, typ string
		if err := trows.Scan(&col, &typ); err != nil {
			trows.Close()
			return nil, err
		}
		ti.types[col] = typ
	}
	trows.Close()
	if len(ti.types) == 0 {
		return nil, fmt.Errorf("table %s is missing in the target (different schema versions?)", name)
	}
	_, ti.rowid = ti.types["rowid"]
	return ti, nil
}

// copyOrder orders tables so that every referenced table comes first;
// references that would close a cycle (and a table's references to
// itself) are deferred: copied as NULL, then filled in.
func copyOrder(tables []*tableInfo) []*tableInfo {
	done := map[string]bool{}
	var out []*tableInfo
	left := slices.Clone(tables)
	for len(left) > 0 {
		progress := false
		for i := 0; i < len(left); i++ {
			ti := left[i]
			ready := true
			for _, fk := range ti.fks {
				if fk.table != ti.name && !done[fk.table] {
					ready = false
				}
			}
			if ready {
				for _, fk := range ti.fks {
					if fk.table == ti.name {
						ti.deferFK[fk.from] = fk.table
					}
				}
				done[ti.name] = true
				out = append(out, ti)
				left = slices.Delete(left, i, i+1)
				i--
				progress = true
			}
		}
		if !progress {
			// A cycle: copy a table whose references to tables not
			// copied yet are all nullable without them.
			pick := 0
			for i, ti := range left {
				ok := true
				for _, fk := range ti.fks {
					if !done[fk.table] && ti.notNull[fk.from] {
						ok = false
					}
				}
				if ok {
					pick = i
					break
				}
			}
			ti := left[pick]
			left = slices.Delete(left, pick, pick+1)
			for _, fk := range ti.fks {
				if !done[fk.table] {
					ti.deferFK[fk.from] = fk.table
				}
			}
			done[ti.name] = true
			out = append(out, ti)
		}
	}
	return out
}

// copyBatchRows and copyBatchBytes bound one multi-row INSERT.
const (
	copyBatchRows  = 500
	copyBatchBytes = 8 << 20
)

func (c *copier) copyTable(ti *tableInfo) (int64, error) {
	srcCols := slices.Clone(ti.cols)
	dstCols := slices.Clone(ti.cols)
	if ti.rowid {
		srcCols = append([]string{"rowid"}, srcCols...)
		dstCols = append([]string{"rowid"}, dstCols...)
	}
	for i, col := range dstCols {
		if _, ok := ti.types[col]; !ok {
			return 0, fmt.Errorf("column %s is missing in the target", col)
		}
		if _, ok := ti.deferFK[col]; ok {
			srcCols[i] = "NULL"
		}
	}
	rows, err := c.src.QueryContext(c.ctx, "SELECT "+strings.Join(srcCols, ", ")+" FROM "+ti.name)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		copied int64
		batch  []any
		nrows  int
		nbytes int
	)
	flush := func() error {
		if nrows == 0 {
			return nil
		}
		var b strings.Builder
		fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", ti.name, strings.Join(dstCols, ", "))
		for r := range nrows {
			if r > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('(')
			for i := range dstCols {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, "$%d", r*len(dstCols)+i+1)
			}
			b.WriteByte(')')
		}
		b.WriteString(" ON CONFLICT DO NOTHING")
		res, err := c.dst.ExecContext(c.ctx, b.String(), batch...)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		copied += n
		batch, nrows, nbytes = batch[:0], 0, 0
		return nil
	}
	vals := make([]any, len(srcCols))
	ptrs := make([]any, len(srcCols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return copied, err
		}
		for i, v := range vals {
			v = targetValue(ti.types[dstCols[i]], v)
			switch v := v.(type) {
			case []byte:
				nbytes += len(v)
			case string:
				nbytes += len(v)
			}
			batch = append(batch, v)
		}
		nrows++
		if nrows >= copyBatchRows || nbytes >= copyBatchBytes || (nrows+1)*len(dstCols) > 65000 {
			if err := flush(); err != nil {
				return copied, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return copied, err
	}
	return copied, flush()
}

// targetValue converts a SQLite value for a target column: bytes for
// BYTEA, valid text (no NUL) for text columns, 0/1 stays an integer.
func targetValue(typ string, v any) any {
	switch typ {
	case "bytea":
		if s, ok := v.(string); ok {
			return []byte(s)
		}
	case "text", "USER-DEFINED": // citext is USER-DEFINED
		switch s := v.(type) {
		case []byte:
			return cleanText(string(s))
		case string:
			return cleanText(s)
		}
	}
	return v
}

// fillDeferred sets a reference column left NULL by the first pass.
func (c *copier) fillDeferred(ti *tableInfo, col, target string) error {
	key := "rowid"
	if ti.pk != "" {
		key = ti.pk
	}
	if !ti.rowid && ti.pk == "" {
		return fmt.Errorf("no key to update by")
	}
	rows, err := c.src.QueryContext(c.ctx, fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s IS NOT NULL", key, col, ti.name, col))
	if err != nil {
		return err
	}
	defer rows.Close()
	q := fmt.Sprintf("UPDATE %s SET %s=$1 WHERE %s=$2 AND %s IS NULL", ti.name, col, key, col)
	for rows.Next() {
		var k, v int64
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		if _, err := c.dst.ExecContext(c.ctx, q, v, k); err != nil {
			return err
		}
	}
	return rows.Err()
}
