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
	batch := s.p.im.BatchSize
	if batch <= 0 {
		batch = 100
	}
	for start := 0; start < len(uids); start += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := uids[start:min(start+batch, len(uids))]
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
				if err := s.process(ctx, part); err != nil {
					return err
				}
				part, bytes = nil, 0
			}
			part = append(part, m)
			if m.size > 0 && (!m.history || s.p.im.Existing == "import") {
				bytes += m.size
			}
		}
		if err := s.process(ctx, part); err != nil {
			return err
		}
	}
	return nil
}

// fetchMeta fetches UID, size and arrival date of a chunk and marks
// history. Messages gone meanwhile (expunged by another client) are
// absent from the result.
func (s *session) fetchMeta(chunk []imap.UID) ([]meta, error) {
	bufs, err := s.c.Fetch(imap.UIDSetNum(chunk...), &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true}).Collect()
	if err != nil {
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

// process ingests one batch (skipping history when existing is "skip"
// and placeholders for vanished UIDs), acknowledges it and advances
// the checkpoint past its last UID.
func (s *session) process(ctx context.Context, part []meta) error {
	if len(part) == 0 {
		return nil
	}
	var fetch []imap.UID
	byUID := map[imap.UID]meta{}
	for _, m := range part {
		if m.size < 0 || (m.history && s.p.im.Existing != "import") {
			continue
		}
		fetch = append(fetch, m.uid)
		byUID[m.uid] = m
	}
	s.p.log.Debug("imap batch", "uids", len(part), "fetch", len(fetch), "last", part[len(part)-1].uid)
	if len(fetch) > 0 {
		raws, err := s.fetchBodies(fetch, byUID)
		if err != nil {
			return err
		}
		if len(raws) > 0 {
			if err := s.ingest(ctx, raws); err != nil {
				return err
			}
		}
	}
	last := uint32(part[len(part)-1].uid)
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	err := s.p.st.Write(wctx, func(tx *store.Tx) error {
		return tx.AdvanceIMAPState(s.p.channel, s.p.folder, s.state.UIDValidity, last)
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
			Quiet: m.history,
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

// ingest commits a batch and then acknowledges it on the server: the
// configured action for stored mail, the failed folder for mail the
// pipeline could only keep raw.
func (s *session) ingest(ctx context.Context, raws []ingest.Raw) error {
	results, err := s.p.pl.Ingest(ctx, raws)
	if err != nil {
		return s.errorf("store %d messages: %w", len(raws), err)
	}
	if len(results) != len(raws) {
		return s.errorf("store %d messages: pipeline returned %d results", len(raws), len(results))
	}
	var ignored []int64
	for _, r := range results {
		if r.Err != nil {
			return s.errorf("store %s: %w", r.Name, r.Err)
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
			return s.errorf("read stored states: %w", err)
		}
	}
	var done, failed []imap.UID
	var all []imap.UID
	for i, r := range results {
		uid := imap.UID(raws[i].Envelope.UID)
		all = append(all, uid)
		if r.Action == ingest.ActionIgnored && states[r.RawID] == "failed" {
			failed = append(failed, uid)
			s.p.log.Warn("imap message could not be parsed; kept raw and moved to the failed folder", "uid", uid,
				"raw_id", r.RawID, "failed_folder", s.p.im.FailedFolder)
			continue
		}
		done = append(done, uid)
	}
	s.p.log.Info("imap batch stored", "messages", len(raws), "failed", len(failed))
	if h := s.p.opts.afterCommit; h != nil {
		if err := h(s.p.channel, s.p.folder, all); err != nil {
			return s.errorf("after commit: %w", err)
		}
	}
	if len(failed) > 0 {
		if err := s.move(failed, s.p.im.FailedFolder); err != nil {
			return err
		}
	}
	if len(done) > 0 {
		if err := s.acknowledge(done); err != nil {
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
