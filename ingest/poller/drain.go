package poller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
)

// meta is what a drain knows of a message before fetching its body.
type meta struct {
	uid     imap.UID
	size    int64
	date    time.Time
	history bool
}

// drain ingests every message above the checkpoint, batch by batch:
// fetch → commit → acknowledge → advance the checkpoint.
func (s *session) drain(ctx context.Context) error {
	// NOOP lets the server report mail that arrived since the last
	// command (RFC 9051 section 6.1.2).
	if err := s.c.Noop().Wait(); err != nil {
		return s.errorf("noop: %w", err)
	}
	var set imap.UIDSet
	set.AddRange(imap.UID(s.state.LastUID+1), 0)
	data, err := s.c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, nil).Wait()
	if err != nil {
		return s.errorf("search new mail: %w", err)
	}
	// "n:*" always matches the highest UID, even below n.
	uids := slices.DeleteFunc(data.AllUIDs(), func(u imap.UID) bool { return uint32(u) <= s.state.LastUID })
	slices.Sort(uids)
	if len(uids) == 0 {
		return nil
	}
	s.p.log.Debug("imap new mail", "messages", len(uids), "after_uid", s.state.LastUID)
	perChunk := s.p.im.BatchSize
	if perChunk <= 0 {
		perChunk = 100
	}
	// While the pipeline commits one batch, the next one is fetched;
	// acknowledgements and checkpoints stay in UID order.
	var fl *flight
	defer func() { fl.abandon() }()
	send := func(b batch) error {
		if err := s.land(ctx, fl); err != nil {
			fl = nil
			return err
		}
		fl = nil
		if len(b.part) > 0 {
			fl = s.launch(ctx, b)
		}
		if b.stop != nil {
			// A message the server refused and that is not set aside
			// yet: store what came before it, then end the session;
			// the next one tries it again.
			err := s.land(ctx, fl)
			fl = nil
			return errors.Join(b.stop, err)
		}
		return nil
	}
	step := func(part []meta) error {
		if len(part) == 0 {
			return nil
		}
		b, err := s.fetchPart(ctx, part)
		if err != nil {
			return err
		}
		return send(b)
	}
	// Messages a previous session had started to fetch when it ended
	// (a dropped connection, a broken literal, a crash) are fetched
	// one by one, each attempt counted before it starts, so the one
	// that breaks the fetch is found and finally set aside.
	suspect := s.state.FetchingThrough
	for start := 0; start < len(uids); start += perChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := uids[start:min(start+perChunk, len(uids))]
		for len(chunk) > 0 && uint32(chunk[0]) <= suspect {
			// What came before is acknowledged before the next suspect
			// is touched (no fetch overlaps a commit here).
			err := s.land(ctx, fl)
			fl = nil
			if err != nil {
				return err
			}
			b, err := s.fetchSuspect(ctx, chunk[0])
			if err != nil {
				return err
			}
			if err := send(b); err != nil {
				return err
			}
			chunk = chunk[1:]
		}
		if len(chunk) == 0 {
			continue
		}
		last := uint32(chunk[len(chunk)-1])
		if err := s.write(ctx, func(tx *store.Tx) error {
			return tx.MarkIMAPFetching(s.p.channel, s.p.folder, s.state.UIDValidity, last)
		}); err != nil {
			return s.errorf("mark fetching through uid %d: %w", last, err)
		}
		metas, err := s.fetchMeta(chunk)
		if err != nil {
			return err
		}
		// Split by size so that one batch holds a bounded number of
		// bytes, however large the messages.
		var part []meta
		var bytes int64
		for _, m := range metas {
			if len(part) > 0 && bytes+m.size > s.p.opts.maxBatchBytes {
				if err := step(part); err != nil {
					return err
				}
				part, bytes = nil, 0
			}
			part = append(part, m)
			if m.size > 0 && (!m.history || s.p.im.Existing == "import") {
				bytes += m.size
			}
		}
		if err := step(part); err != nil {
			return err
		}
	}
	err = s.land(ctx, fl)
	fl = nil
	return err
}

// fetchMeta fetches UID, size and arrival date of a chunk and marks
// history. Messages gone meanwhile (expunged by another client) are
// absent from the result.
func (s *session) fetchMeta(chunk []imap.UID) ([]meta, error) {
	items := &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true}
	bufs, err := s.c.Fetch(imap.UIDSetNum(chunk...), items).Collect()
	if refused(err) != nil {
		// A server that cannot read one message may refuse even its
		// size (Dovecot computes it from the file): ask one by one and
		// let the body fetch deal with the refused ones.
		s.p.log.Warn("imap server refused the sizes of a batch; asking one by one", "uids", len(chunk), "err", err)
		bufs = bufs[:0]
		for _, uid := range chunk {
			one, err := s.c.Fetch(imap.UIDSetNum(uid), items).Collect()
			if refused(err) != nil {
				bufs = append(bufs, &imapclient.FetchMessageBuffer{UID: uid})
				continue
			}
			if err != nil {
				return nil, s.errorf("fetch size of uid %d: %w", uid, err)
			}
			bufs = append(bufs, one...)
		}
	} else if err != nil {
		return nil, s.errorf("fetch sizes: %w", err)
	}
	want := imap.UIDSetNum(chunk...)
	out := make([]meta, 0, len(bufs))
	for _, b := range bufs {
		if b.UID == 0 || !want.Contains(b.UID) {
			continue
		}
		m := meta{uid: b.UID, size: b.RFC822Size, date: b.InternalDate}
		// INTERNALDATE has whole seconds: mail from the first poll's
		// own second counts as new.
		m.history = uint32(m.uid) <= s.state.HistoryUID ||
			(s.state.HistoryBefore != nil && !m.date.IsZero() && m.date.Before(s.state.HistoryBefore.Truncate(time.Second)))
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b meta) int { return int(int64(a.uid) - int64(b.uid)) })
	// The checkpoint may pass UIDs that vanished: they are expunged.
	if len(out) > 0 && out[len(out)-1].uid != chunk[len(chunk)-1] {
		out = append(out, meta{uid: chunk[len(chunk)-1], size: -1})
	}
	if len(out) == 0 {
		out = append(out, meta{uid: chunk[len(chunk)-1], size: -1})
	}
	return out, nil
}

// batch is one part of a drain: its UIDs (including history skipped
// and placeholders for vanished UIDs) and the bodies fetched.
type batch struct {
	part []meta
	raws []ingest.Raw
	// aside are messages the server would not deliver, set aside: the
	// checkpoint passes them after they go to the failed folder.
	aside []imap.UID
	// stop, when set, ends the session after this batch (cut short
	// before a message the server refused).
	stop error
}

// outcome is what the pipeline made of a batch.
type outcome struct {
	done, failed, all []imap.UID
}

// flight is a batch being committed by the pipeline in its own
// goroutine (no IMAP traffic there).
type flight struct {
	b    batch
	done chan struct{}
	out  outcome
	err  error
}

// abandon waits for a flight that will not be acknowledged in this
// session (its messages come back as duplicates in the next one).
func (f *flight) abandon() {
	if f != nil {
		<-f.done
	}
}

// fetchPart fetches the bodies of a part, skipping history when
// existing is "skip" and placeholders for vanished UIDs.
func (s *session) fetchPart(ctx context.Context, part []meta) (batch, error) {
	var fetch []imap.UID
	byUID := map[imap.UID]meta{}
	for _, m := range part {
		if m.size < 0 || (m.history && s.p.im.Existing != "import") {
			continue
		}
		fetch = append(fetch, m.uid)
		byUID[m.uid] = m
	}
	b := batch{part: part}
	s.p.log.Debug("imap batch", "uids", len(part), "fetch", len(fetch), "last", part[len(part)-1].uid)
	if len(fetch) == 0 {
		return b, nil
	}
	raws, err := s.fetchBodies(fetch, byUID)
	if ie := refused(err); ie != nil {
		s.p.log.Warn("imap server refused a batch; fetching its messages one by one", "uids", len(fetch), "err", err)
		return s.fetchOneByOne(ctx, b, fetch, byUID)
	}
	if err != nil {
		return b, err
	}
	b.raws = raws
	return b, nil
}

// refused returns the server's NO or BAD answer in err, or nil when
// err is something else (a broken connection, a timeout) or nil.
func refused(err error) *imap.Error {
	var ie *imap.Error
	if errors.As(err, &ie) && (ie.Type == imap.StatusResponseTypeNo || ie.Type == imap.StatusResponseTypeBad) {
		return ie
	}
	return nil
}

// answer renders a server's refusal for the store and the logs, e.g.
// "NO [SERVERBUG] Internal error".
func answer(ie *imap.Error) string {
	a := string(ie.Type)
	if ie.Code != "" {
		a += " [" + string(ie.Code) + "]"
	}
	if ie.Text != "" {
		a += " " + ie.Text
	}
	return a
}

// fetchOneByOne fetches a refused batch's messages one at a time
// (fetchAlone), in UID order. A message set aside is passed by the
// checkpoint once land has moved it to the failed folder; a message
// refused but not set aside yet cuts the batch short before it, and
// stop ends the session, so the next session tries it again.
func (s *session) fetchOneByOne(ctx context.Context, b batch, fetch []imap.UID, byUID map[imap.UID]meta) (batch, error) {
	for _, uid := range fetch {
		a, err := s.fetchAlone(ctx, uid, func() ([]ingest.Raw, error) { return s.fetchBodies([]imap.UID{uid}, byUID) })
		if err != nil {
			return b, err
		}
		switch {
		case a.stop != nil:
			i := slices.IndexFunc(b.part, func(m meta) bool { return m.uid >= uid })
			b.part = b.part[:i]
			b.stop = a.stop
			return b, nil
		case a.aside:
			b.aside = append(b.aside, uid)
		default:
			// Delivered (or expunged meanwhile).
			b.raws = append(b.raws, a.raws...)
		}
	}
	return b, nil
}

// fetchSuspect fetches one message that a previous session was
// fetching when it ended: its size and date, then its body, as one
// counted attempt (fetchAlone).
func (s *session) fetchSuspect(ctx context.Context, uid imap.UID) (batch, error) {
	var part []meta
	a, err := s.fetchAlone(ctx, uid, func() ([]ingest.Raw, error) {
		metas, err := s.fetchMeta([]imap.UID{uid})
		if err != nil {
			return nil, err
		}
		part = metas
		byUID := map[imap.UID]meta{}
		var fetch []imap.UID
		for _, m := range metas {
			if m.size < 0 || (m.history && s.p.im.Existing != "import") {
				continue
			}
			fetch = append(fetch, m.uid)
			byUID[m.uid] = m
		}
		if len(fetch) == 0 {
			return nil, nil
		}
		return s.fetchBodies(fetch, byUID)
	})
	switch {
	case err != nil:
		return batch{}, err
	case a.stop != nil:
		return batch{stop: a.stop}, nil
	case a.aside:
		if len(part) == 0 {
			part = []meta{{uid: uid, size: -1}} // not fetched again
		}
		return batch{part: part, aside: []imap.UID{uid}}, nil
	}
	return batch{part: part, raws: a.raws}, nil
}

// alone is the outcome of fetchAlone.
type alone struct {
	raws []ingest.Raw
	// aside: the message is set aside; the checkpoint may pass it.
	aside bool
	// stop: the server refused the message, which is not set aside
	// yet; the session ends before it and the next one retries it.
	stop error
}

// lostAnswer is recorded for an attempt until it ends: what stays when
// the process dies during the fetch.
const lostAnswer = "the fetch did not finish (the connection or the process ended during it)"

// fetchAlone fetches one message on its own as a counted attempt. The
// attempt is written to the store (imap_unfetchable) before the fetch
// starts, so a connection that breaks, a literal cut short, a server
// that falls silent or a process that dies while the message is read
// counts against that message, across reconnects and restarts; a
// fetch that succeeds forgets the count at once, and so does one
// interrupted by our own shutdown. Once a message has failed
// setAsideAttempts times, over at least setAsideAfter, it is set aside
// (see setAside) — without fetching it again when the previous
// attempts already reached that.
func (s *session) fetchAlone(ctx context.Context, uid imap.UID, fetch func() ([]ingest.Raw, error)) (alone, error) {
	now := s.p.opts.Now()
	var rec *store.IMAPUnfetchable
	exhausted, prevAnswer := false, ""
	if err := s.write(ctx, func(tx *store.Tx) error {
		prev, err := tx.IMAPUnfetchable(s.p.channel, s.p.folder, s.state.UIDValidity, uint32(uid))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if prev != nil {
			prevAnswer = prev.ServerAnswer
		}
		if prev != nil && s.exhausted(prev, now) {
			rec, exhausted = prev, true
			return nil
		}
		rec, err = tx.RecordIMAPFetchFailure(s.p.channel, s.p.folder, s.state.UIDValidity, uint32(uid), lostAnswer, now)
		return err
	}); err != nil {
		return alone{}, s.errorf("uid %d: %w", uid, err)
	}
	if exhausted {
		return s.setAside(ctx, uid, rec, now)
	}
	raws, err := fetch()
	ie := refused(err)
	switch {
	case err == nil:
		if err := s.write(ctx, func(tx *store.Tx) error {
			return tx.ForgetIMAPFetchFailures(s.p.channel, s.p.folder, s.state.UIDValidity, uint32(uid))
		}); err != nil {
			return alone{}, s.errorf("uid %d: %w", uid, err)
		}
		return alone{raws: raws}, nil
	case ie == nil && ctx.Err() != nil:
		// Our own shutdown broke the fetch off: not the message's fault.
		if uerr := s.write(ctx, func(tx *store.Tx) error {
			return tx.UncountIMAPFetchFailure(s.p.channel, s.p.folder, s.state.UIDValidity, uint32(uid), prevAnswer)
		}); uerr != nil {
			s.p.log.Error("imap fetch attempt interrupted by shutdown still counted", "uid", uid, "err", uerr)
		}
		return alone{}, err
	case ie == nil:
		s.p.log.Warn("imap fetch of a message broke off; it is retried, then set aside", "uid", uid,
			"uidvalidity", s.state.UIDValidity, "err", err, "attempt", rec.Attempts, "set_aside_after", s.p.opts.setAsideAttempts)
		if nerr := s.write(ctx, func(tx *store.Tx) error {
			return tx.NoteIMAPFetchFailure(s.p.channel, s.p.folder, s.state.UIDValidity, uint32(uid), err.Error())
		}); nerr != nil {
			s.p.log.Error("imap fetch failure not noted", "uid", uid, "err", nerr)
		}
		return alone{}, fmt.Errorf("%w (uid %d, attempt %d; set aside after %d over %s)", err, uid, rec.Attempts,
			s.p.opts.setAsideAttempts, s.p.opts.setAsideAfter)
	}
	said := answer(ie)
	rec.ServerAnswer = said
	if err := s.write(ctx, func(tx *store.Tx) error {
		return tx.NoteIMAPFetchFailure(s.p.channel, s.p.folder, s.state.UIDValidity, uint32(uid), said)
	}); err != nil {
		return alone{}, s.errorf("uid %d: %w", uid, err)
	}
	if !s.exhausted(rec, now) {
		s.p.log.Warn("imap server refused a message; will retry it", "uid", uid, "uidvalidity", s.state.UIDValidity,
			"server_answer", said, "attempt", rec.Attempts, "set_aside_after", s.p.opts.setAsideAttempts)
		return alone{stop: s.errorf("fetch uid %d: the server answered %s (attempt %d; the message is set aside after %d over %s)",
			uid, said, rec.Attempts, s.p.opts.setAsideAttempts, s.p.opts.setAsideAfter)}, nil
	}
	return s.setAside(ctx, uid, rec, now)
}

// exhausted reports whether a message has failed often enough, for
// long enough, to be set aside.
func (s *session) exhausted(rec *store.IMAPUnfetchable, now time.Time) bool {
	return rec.Attempts >= s.p.opts.setAsideAttempts && now.Sub(rec.FirstFailedAt) >= s.p.opts.setAsideAfter
}

// setAside gives up on a message: recorded (imap_unfetchable, which
// `deskmail status` lists), logged at error level with its UID and in
// channel health; land then moves it to the failed folder when the
// server lets us, and the checkpoint passes it. It is never dropped:
// it stays on the server and in the record.
func (s *session) setAside(ctx context.Context, uid imap.UID, rec *store.IMAPUnfetchable, now time.Time) (alone, error) {
	msg := s.errorf("uid %d (uidvalidity %d) set aside after %d failed fetches: %s",
		uid, s.state.UIDValidity, rec.Attempts, rec.ServerAnswer).Error()
	s.p.log.Error("imap message the server will not deliver is set aside; the folder carries on without it", "uid", uid,
		"uidvalidity", s.state.UIDValidity, "server_answer", rec.ServerAnswer, "attempts", rec.Attempts, "failed_folder", s.p.im.FailedFolder)
	s.p.opts.Metrics.IMAPError(s.p.channel, "set_aside")
	if err := s.write(ctx, func(tx *store.Tx) error {
		if err := tx.SetIMAPMessageAside(s.p.channel, s.p.folder, s.state.UIDValidity, uint32(uid), now); err != nil {
			return err
		}
		return tx.RecordChannelError(s.p.channel, now, msg)
	}); err != nil {
		return alone{}, s.errorf("uid %d: %w", uid, err)
	}
	return alone{aside: true}, nil
}

// write runs a bookkeeping transaction that must land even while ctx
// is ending.
func (s *session) write(ctx context.Context, f func(tx *store.Tx) error) error {
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	return s.p.st.Write(wctx, f)
}

// moveAside moves messages set aside to the failed folder, one at a
// time. A server that refuses (it may not be able to copy a message it
// cannot read) leaves the message where it is; the store has its
// record either way.
func (s *session) moveAside(ctx context.Context, uids []imap.UID) error {
	if s.p.sent {
		return nil // the team's Sent folder is never changed
	}
	for _, uid := range uids {
		err := s.move([]imap.UID{uid}, s.p.im.FailedFolder)
		if ie := refused(err); ie != nil {
			s.p.log.Error("imap message set aside could not be moved to the failed folder; it stays in the folder", "uid", uid,
				"uidvalidity", s.state.UIDValidity, "server_answer", answer(ie), "failed_folder", s.p.im.FailedFolder)
			continue
		}
		if err != nil {
			return err
		}
		if err := s.write(ctx, func(tx *store.Tx) error {
			return tx.SetIMAPMessageMoved(s.p.channel, s.p.folder, s.state.UIDValidity, uint32(uid), s.p.im.FailedFolder)
		}); err != nil {
			return s.errorf("uid %d: %w", uid, err)
		}
	}
	return nil
}

// launch starts committing a batch.
func (s *session) launch(ctx context.Context, b batch) *flight {
	f := &flight{b: b, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer func() {
			if v := recover(); v != nil {
				f.err = s.errorf("commit: internal error: %v", v)
			}
		}()
		if len(b.raws) > 0 {
			f.out, f.err = s.commit(ctx, b.raws)
		}
	}()
	return f
}

// land waits for a flight's commit, then acknowledges the batch on
// the server and advances the checkpoint past its last UID.
func (s *session) land(ctx context.Context, f *flight) error {
	if f == nil {
		return nil
	}
	// Nothing is asked of the server while the pipeline commits.
	s.wd.pause()
	<-f.done
	s.wd.resume()
	if f.err != nil {
		return f.err
	}
	if len(f.out.all) > 0 || len(f.b.aside) > 0 {
		if err := s.fence(ctx); err != nil {
			return err
		}
	}
	if len(f.out.all) > 0 {
		if err := s.acknowledgeBatch(f.out); err != nil {
			return err
		}
	}
	if len(f.b.aside) > 0 {
		if err := s.moveAside(ctx, f.b.aside); err != nil {
			return err
		}
	}
	last := uint32(f.b.part[len(f.b.part)-1].uid)
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	err := s.p.st.Write(wctx, func(tx *store.Tx) error {
		if err := tx.AdvanceIMAPState(s.p.channel, s.p.folder, s.state.UIDValidity, last); err != nil {
			return err
		}
		// Refusals of messages now passed (delivered after all) are
		// history; the set-aside records stay.
		return tx.ClearIMAPFetchFailures(s.p.channel, s.p.folder, s.state.UIDValidity, last)
	})
	if err != nil {
		return s.errorf("save checkpoint: %w", err)
	}
	s.state.LastUID = max(s.state.LastUID, last)
	return nil
}

// fetchBodies streams the bodies of a batch with BODY.PEEK[] (which
// leaves \Seen alone), one message at a time off the wire.
func (s *session) fetchBodies(uids []imap.UID, byUID map[imap.UID]meta) ([]ingest.Raw, error) {
	section := &imap.FetchItemBodySection{Peek: true}
	cmd := s.c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
	raws := make([]ingest.Raw, 0, len(uids))
	got := map[imap.UID]bool{}
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var uid imap.UID
		var body []byte
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil {
					continue
				}
				b, err := readLiteral(it.Literal)
				if err != nil {
					// The connection broke inside a message: drop it
					// here, without reading on (the client library
					// would read the dead stream again).
					s.c.Close()
					return nil, s.errorf("fetch uid %d: %w", uid, err)
				}
				body = b
			}
		}
		m, ok := byUID[uid]
		if !ok || got[uid] || body == nil {
			continue
		}
		got[uid] = true
		received := m.date
		if received.IsZero() {
			received = s.p.opts.Now()
		}
		raws = append(raws, ingest.Raw{
			Data:    body,
			Source:  ingest.SourceIMAP,
			Channel: s.p.channel,
			Name:    fmt.Sprintf("imap:%s/%s/%d/%d", s.p.channel, s.p.folder, s.state.UIDValidity, uid),
			Envelope: ingest.Envelope{ReceivedAt: received, Mailbox: s.p.folder, UIDValidity: s.state.UIDValidity,
				UID: uint32(uid), TLS: s.p.im.TLS != "none"},
			Quiet: m.history || s.p.sent, History: m.history,
			Sent: s.p.sent,
		})
	}
	if err := cmd.Close(); err != nil {
		return nil, s.errorf("fetch %d messages: %w", len(uids), err)
	}
	slices.SortFunc(raws, func(a, b ingest.Raw) int { return int(int64(a.Envelope.UID) - int64(b.Envelope.UID)) })
	return raws, nil
}

// maxMessageBytes bounds one message held in memory.
const maxMessageBytes = 512 << 20

func readLiteral(lit imap.LiteralReader) ([]byte, error) {
	size := lit.Size()
	if size > maxMessageBytes {
		return nil, fmt.Errorf("message of %d bytes is larger than %d", size, maxMessageBytes)
	}
	buf := make([]byte, size)
	n, err := io.ReadFull(lit, buf)
	if err != nil {
		// A short literal is a broken connection, never a message.
		return nil, fmt.Errorf("read message: %d of %d bytes: %w", n, size, err)
	}
	return buf, nil
}

// commit hands a batch to the pipeline and sorts the committed
// messages: stored (the configured post-action) or kept raw as failed
// (the failed folder).
func (s *session) commit(ctx context.Context, raws []ingest.Raw) (outcome, error) {
	var out outcome
	results, err := s.p.pl.Ingest(ctx, raws)
	if err != nil {
		return out, s.errorf("store %d messages: %w", len(raws), err)
	}
	if len(results) != len(raws) {
		return out, s.errorf("store %d messages: pipeline returned %d results", len(raws), len(results))
	}
	var ignored []int64
	for _, r := range results {
		if r.Err != nil {
			return out, s.errorf("store %s: %w", r.Name, r.Err)
		}
		if r.Action == ingest.ActionIgnored && r.RawID != 0 {
			ignored = append(ignored, r.RawID)
		}
	}
	states := map[int64]string{}
	if len(ignored) > 0 {
		err := s.p.st.Read(ctx, func(tx *store.Tx) (err error) {
			states, err = tx.RawStates(ignored)
			return err
		})
		if err != nil {
			return out, s.errorf("read stored states: %w", err)
		}
	}
	for i, r := range results {
		uid := imap.UID(raws[i].Envelope.UID)
		out.all = append(out.all, uid)
		if r.Action == ingest.ActionIgnored && states[r.RawID] == "failed" {
			out.failed = append(out.failed, uid)
			s.p.log.Warn("imap message could not be parsed; kept raw, moving it to the failed folder", "uid", uid,
				"raw_id", r.RawID, "failed_folder", s.p.im.FailedFolder)
			continue
		}
		out.done = append(out.done, uid)
	}
	s.p.log.Info("imap batch stored", "messages", len(raws), "failed", len(out.failed))
	return out, nil
}

// acknowledgeBatch tells the server about a committed batch: the
// failed folder for mail kept raw, the configured action for the rest.
func (s *session) acknowledgeBatch(out outcome) error {
	if h := s.p.opts.afterCommit; h != nil {
		if err := h(s.p.channel, s.p.folder, out.all); err != nil {
			return s.errorf("after commit: %w", err)
		}
	}
	if s.p.sent {
		// The team's Sent folder is theirs: read it, never change it.
		return nil
	}
	if len(out.failed) > 0 {
		if err := s.move(out.failed, s.p.im.FailedFolder); err != nil {
			return err
		}
	}
	if len(out.done) > 0 {
		if err := s.acknowledge(out.done); err != nil {
			return err
		}
	}
	return nil
}

// acknowledge applies the configured post-action to stored mail.
func (s *session) acknowledge(uids []imap.UID) error {
	set := imap.UIDSetNum(uids...)
	switch s.p.im.After {
	case "move":
		return s.move(uids, s.p.im.MoveTo)
	case "delete":
		store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
		if err := s.c.Store(set, store, nil).Close(); err != nil {
			return s.errorf("flag %d messages deleted: %w", len(uids), err)
		}
		return s.expunge(set)
	default:
		store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}
		if err := s.c.Store(set, store, nil).Close(); err != nil {
			return s.errorf("flag %d messages seen: %w", len(uids), err)
		}
		return nil
	}
}

// expunge removes \Deleted messages: only ours with UID EXPUNGE
// (UIDPLUS, RFC 4315), else every \Deleted message of the folder.
func (s *session) expunge(set imap.UIDSet) error {
	var cmd *imapclient.ExpungeCommand
	if s.c.Caps().Has(imap.CapUIDPlus) {
		cmd = s.c.UIDExpunge(set)
	} else {
		cmd = s.c.Expunge()
	}
	if err := cmd.Close(); err != nil {
		return s.errorf("expunge: %w", err)
	}
	return nil
}

// move moves messages to a folder, creating it first if needed: MOVE
// (RFC 6851) when the server has it, else COPY, \Deleted and EXPUNGE.
func (s *session) move(uids []imap.UID, folder string) error {
	name := s.serverName(folder)
	if err := s.ensureFolder(name); err != nil {
		return err
	}
	set := imap.UIDSetNum(uids...)
	if s.c.Caps().Has(imap.CapMove) {
		if _, err := s.c.Move(set, name).Wait(); err != nil {
			return s.errorf("move %d messages to %s: %w", len(uids), folder, err)
		}
		return nil
	}
	if _, err := s.c.Copy(set, name).Wait(); err != nil {
		return s.errorf("copy %d messages to %s: %w", len(uids), folder, err)
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if err := s.c.Store(set, store, nil).Close(); err != nil {
		return s.errorf("flag %d messages deleted after copy to %s: %w", len(uids), folder, err)
	}
	return s.expunge(set)
}

// ensureFolder creates a folder unless it exists.
func (s *session) ensureFolder(name string) error {
	if s.created[name] {
		return nil
	}
	list, err := s.c.List("", name, nil).Collect()
	if err != nil {
		return s.errorf("list %s: %w", name, err)
	}
	for _, l := range list {
		if l.Mailbox == name && !slices.Contains(l.Attrs, imap.MailboxAttrNonExistent) && !slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) {
			s.created[name] = true
			return nil
		}
	}
	if err := s.c.Create(name, nil).Wait(); err != nil {
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAlreadyExists {
			return s.errorf("create folder %s: %w", name, err)
		}
	}
	_ = s.c.Subscribe(name).Wait() // so that mail clients show it; not needed for us
	s.created[name] = true
	s.p.log.Info("imap folder created", "created", name)
	return nil
}
