package store

import (
	"errors"
	"fmt"
)

// ErrLater marks the failure of work a transaction put off (see
// Tx.RenderLater): the whole transaction is rolled back, and a caller
// that batched many messages may commit them again without putting
// anything off, so that the one that fails is set aside alone.
var ErrLater = errors.New("deferred outbox rendering failed")

// later is what a transaction puts off: outbox mails whose bytes a
// goroutine of the transaction renders while its function goes on
// (see EnqueueOutboxLater), written into their rows before COMMIT.
type later struct {
	mails []*laterMail
	// queue feeds the render goroutine, started with the first mail;
	// closed by stop.
	queue chan *laterMail
}

type laterMail struct {
	id     int64
	render func() ([]byte, error)
	raw    []byte
	err    error
	done   chan struct{} // closed once raw and err are set
	// inserted is set when the row's INSERT carries the bytes (a
	// PostgreSQL fast attempt, see lazyRaw): no UPDATE writes them.
	inserted bool
}

// lazyRaw stands for a mail's bytes among the arguments of its outbox
// INSERT, queued in a PostgreSQL fast attempt (see pgwrite.go): the
// statement waits in the queue anyway until a later one must follow it
// or COMMIT, by which time the render goroutine has usually rendered
// the mail; pgTx.sendN then puts the bytes in its place, waiting for
// them if need be. The row is so written once, with its bytes, instead
// of inserted empty and updated before COMMIT: an UPDATE that
// PostgreSQL could not make HOT (the page full of the batch's rows),
// a new row version and six index entries per mail.
type lazyRaw struct{ m *laterMail }

// resolve waits for the mail's bytes.
func (l lazyRaw) resolve() ([]byte, error) {
	<-l.m.done
	if l.m.err != nil {
		return nil, fmt.Errorf("%w: outbox mail %d: %w", ErrLater, l.m.id, l.m.err)
	}
	return l.m.raw, nil
}

// RenderLater makes EnqueueOutboxLater hand rendering to a goroutine of
// the transaction: the row is inserted at once, with its recipients,
// kind, subject and Message-ID (every read of the outbox inside the
// transaction sees it as before, its bytes still empty or, in a
// PostgreSQL fast attempt, already rendered), its bytes are rendered
// beside the transaction's function on another core and written into
// the row before COMMIT. A batch of many messages (deskmail ingest, an IMAP
// drain) so renders its outbound mail beside the serial work of
// threading and storing instead of inside it. A rendering that fails
// fails the whole Write with ErrLater.
func (t *Tx) RenderLater() {
	if t.later == nil {
		t.later = &later{}
	}
}

// EnqueueOutboxLater is EnqueueOutbox for a mail whose bytes render
// computes. render must use nothing of the transaction (it runs on
// another goroutine, beside the function that enqueued it), and must
// be safe to run beside other code that reads what it reads. Without
// RenderLater it runs at once.
func (t *Tx) EnqueueOutboxLater(m *OutboxMail, render func() ([]byte, error)) error {
	if t.later == nil {
		raw, err := render()
		if err != nil {
			return err
		}
		m.Raw = raw
		return t.EnqueueOutbox(m)
	}
	l := t.later
	if l.queue == nil {
		// One goroutine: the mails of a batch render in the time the
		// serial commit spends on the next messages, on the core that
		// is otherwise parsing the next batch.
		l.queue = make(chan *laterMail, 64)
		go renderLoop(l.queue)
	}
	lm := &laterMail{render: render, done: make(chan struct{})}
	m.Raw = []byte{}
	var raw any = m.Raw
	if t.pg != nil && t.fast != nil {
		// Its INSERT is queued (pgPrefetched: the id is taken ahead).
		raw, lm.inserted = lazyRaw{lm}, true
	}
	// Rendering starts before the INSERT is queued, whose sending may
	// wait for it.
	l.queue <- lm
	if err := t.enqueueOutbox(m, raw); err != nil {
		return err
	}
	lm.id = m.ID
	l.mails = append(l.mails, lm)
	return nil
}

// renderLoop renders the mails of queue until it is closed.
func renderLoop(queue <-chan *laterMail) {
	for lm := range queue {
		lm.raw, lm.err = renderSafely(lm.render)
		close(lm.done)
	}
}

// laterMark is how much was put off when a savepoint began: rolling
// back to it forgets what came after (their renderings finish unread).
func (t *Tx) laterMark() int {
	if t.later == nil {
		return 0
	}
	return len(t.later.mails)
}

func (t *Tx) laterRollback(mark int) {
	if t.later != nil && mark < len(t.later.mails) {
		t.later.mails = t.later.mails[:mark]
	}
}

// stopLater ends the render goroutine once it has rendered what it was
// given; every Write calls it, whatever its outcome.
func (t *Tx) stopLater() {
	if t.later != nil && t.later.queue != nil {
		close(t.later.queue)
		t.later.queue = nil
	}
}

// runLater waits for the mails the transaction put off and writes each
// one's bytes into its row, in the order enqueued.
func (t *Tx) runLater() error {
	if t.later == nil || len(t.later.mails) == 0 {
		return nil
	}
	mails := t.later.mails
	t.later.mails = nil
	t.stopLater()
	var update []*laterMail
	for _, m := range mails {
		<-m.done
		if m.err != nil {
			return fmt.Errorf("%w: outbox mail %d: %w", ErrLater, m.id, m.err)
		}
		if !m.inserted {
			update = append(update, m)
		}
	}
	if len(update) == 0 {
		return nil
	}
	mails = update
	if t.d.pg {
		return t.writeLaterPG(mails)
	}
	for _, m := range mails {
		if _, err := t.exec(`UPDATE outbox SET raw=? WHERE id=?`, m.raw, m.id); err != nil {
			return fmt.Errorf("store: outbox mail %d: %w", m.id, err)
		}
	}
	return nil
}

// writeLaterPG writes the bytes of the mails the transaction put off
// into their rows on PostgreSQL in one statement (the ids and the
// bytes as two arrays), instead of one UPDATE per mail: for a batch
// ingest, 1.7 statements per message fewer, each costing PostgreSQL
// its executor start-up, portal and protocol messages.
func (t *Tx) writeLaterPG(mails []*laterMail) error {
	ids := make([]int64, len(mails))
	raws := make([][]byte, len(mails))
	for i, m := range mails {
		ids[i], raws[i] = m.id, m.raw
	}
	if _, err := t.exec(`UPDATE outbox SET raw=v.raw FROM unnest(CAST(? AS BIGINT[]), CAST(? AS BYTEA[])) AS v(id, raw) WHERE outbox.id=v.id`,
		ids, raws); err != nil {
		return fmt.Errorf("store: outbox mails %d…%d: %w", ids[0], ids[len(ids)-1], err)
	}
	return nil
}

// renderSafely runs render, turning a panic into an error.
func renderSafely(render func() ([]byte, error)) (raw []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return render()
}
