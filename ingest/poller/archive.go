package poller

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
)

// Mailbox reads an IMAP account's folders for an import of its history
// (`deskmail import`), with the same connection, TLS, login (password
// or OAuth, sharing rotated refresh tokens with the pollers through the
// store) and fetch code as the pollers, but without changing anything
// on the server: folders are opened with EXAMINE (read-only, RFC 9051
// section 6.3.3), bodies are fetched with BODY.PEEK[], and nothing is
// flagged, moved, copied or deleted. No checkpoint is kept in
// imap_state either: the pollers' own stays as it is.
type Mailbox struct {
	channel string
	im      *config.IMAPConfig
	st      *store.Store
	auth    *authenticator
	opts    Options
}

// OpenMailbox prepares to read the IMAP account im as channel's (the
// name labels messages, errors and the OAuth token chain). Nothing is
// dialled until Folder.
func OpenMailbox(ctx context.Context, channel string, im *config.IMAPConfig, st *store.Store, opts Options) *Mailbox {
	opts.fill()
	return &Mailbox{channel: channel, im: im, st: st, opts: opts, auth: newAuthenticator(ctx, channel, im, st, opts)}
}

// Folder is one folder of a Mailbox, opened read-only on its own
// connection. It is not safe for concurrent use.
type Folder struct {
	s           *session
	uidValidity uint32
	exists      uint32
}

// Listed is one message of a folder as Folder.List finds it, before
// its body is fetched.
type Listed struct {
	UID uint32
	// Size is RFC822.SIZE.
	Size int64
	// Date is the message's Date header (from its ENVELOPE), else its
	// INTERNALDATE (when the server received it).
	Date time.Time
	// MessageID is the Message-ID without <>, "" when it has none.
	MessageID string
}

// Folder connects, logs in and opens folder (written with "/" between
// levels, as in the configuration) with EXAMINE. sent marks the team's
// Sent folder: its mail is the team's (Raw.Sent).
func (m *Mailbox) Folder(ctx context.Context, folder string, sent bool) (*Folder, error) {
	p := &folderPoller{channel: m.channel, im: m.im, folder: folder, sent: sent, st: m.st, auth: m.auth, opts: m.opts,
		log: m.opts.Logger.With("channel", m.channel, "folder", folder, "import", true)}
	s := &session{p: p}
	if err := s.connect(ctx); err != nil {
		if s.c != nil {
			s.c.Close()
		}
		return nil, err
	}
	f := &Folder{s: s}
	if err := f.examine(); err != nil {
		s.c.Close()
		return nil, err
	}
	s.wd.pause() // nothing is asked of the server until List
	return f, nil
}

// examine learns the hierarchy delimiter and opens the folder
// read-only.
func (f *Folder) examine() error {
	s := f.s
	if list, err := s.c.List("", "", nil).Collect(); err == nil && len(list) > 0 {
		s.delim = list[0].Delim
	}
	s.mailbox = s.serverName(s.p.folder)
	sel, err := s.c.Select(s.mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return s.errorf("examine: %w", err)
	}
	if sel.UIDValidity == 0 {
		return s.errorf("examine: server sent no UIDVALIDITY")
	}
	s.state = store.IMAPState{Channel: s.p.channel, Mailbox: s.p.folder, UIDValidity: sel.UIDValidity}
	f.uidValidity, f.exists = sel.UIDValidity, sel.NumMessages
	return nil
}

// Name is the folder's configured name.
func (f *Folder) Name() string { return f.s.p.folder }

// List returns every message of the folder in UID order, with what an
// import needs before fetching bodies: size, date and Message-ID.
func (f *Folder) List(ctx context.Context) ([]Listed, error) {
	s := f.s
	s.wd.resume()
	defer s.wd.pause()
	if f.exists == 0 {
		return nil, nil
	}
	stop := context.AfterFunc(ctx, func() { s.c.Close() })
	defer stop()
	// In chunks, so that a large folder's envelopes are not all held
	// as one response.
	var bufs []*imapclient.FetchMessageBuffer
	const chunk = 1000
	for lo := uint32(1); lo <= f.exists; lo += chunk {
		var set imap.SeqSet
		set.AddRange(lo, min(lo+chunk-1, f.exists))
		part, err := s.c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true, Envelope: true}).Collect()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, s.errorf("list messages %d to %d: %w", lo, min(lo+chunk-1, f.exists), err)
		}
		bufs = append(bufs, part...)
	}
	out := make([]Listed, 0, len(bufs))
	for _, b := range bufs {
		if b.UID == 0 {
			continue
		}
		l := Listed{UID: uint32(b.UID), Size: b.RFC822Size, Date: b.InternalDate.UTC()}
		if e := b.Envelope; e != nil {
			if !e.Date.IsZero() {
				l.Date = e.Date.UTC()
			}
			l.MessageID = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(e.MessageID), "<"), ">")
			if strings.ContainsAny(l.MessageID, " <>") {
				l.MessageID = ""
			}
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Listed) int { return int(int64(a.UID) - int64(b.UID)) })
	return out, nil
}

// Unfetched is a message Fetch could not bring: the server refused
// it, or it is no longer in the folder.
type Unfetched struct {
	UID    uint32
	Reason string
}

// Fetch returns the messages with these UIDs in UID order, as the
// pollers hand them to the pipeline: Source imap, Channel the
// mailbox's channel, Name "imap:CHANNEL/FOLDER/UIDVALIDITY/UID", the
// IMAP origin in the Envelope, Sent for the Sent folder. The caller
// marks them as history (Quiet, History) as it sees fit. When the
// server refuses the batch (NO or BAD), its messages are fetched one
// by one and those refused again are returned as unfetched, as are
// messages no longer in the folder. An error (a dropped connection)
// ends the folder's use.
func (f *Folder) Fetch(ctx context.Context, uids []uint32) ([]ingest.Raw, []Unfetched, error) {
	if len(uids) == 0 {
		return nil, nil, nil
	}
	s := f.s
	s.wd.resume()
	defer s.wd.pause()
	stop := context.AfterFunc(ctx, func() { s.c.Close() })
	defer stop()
	byUID := make(map[imap.UID]meta, len(uids))
	set := make([]imap.UID, 0, len(uids))
	now := s.p.opts.Now()
	for _, u := range uids {
		byUID[imap.UID(u)] = meta{uid: imap.UID(u), date: now}
		set = append(set, imap.UID(u))
	}
	failed := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	var lost []Unfetched
	raws, err := s.fetchBodies(set, byUID)
	if refused(err) != nil {
		s.p.log.Warn("imap server refused a batch; fetching its messages one by one", "uids", len(set), "err", err)
		raws = raws[:0]
		for _, u := range set {
			one, err := s.fetchBodies([]imap.UID{u}, byUID)
			if ie := refused(err); ie != nil {
				lost = append(lost, Unfetched{UID: uint32(u), Reason: "the server answered " + answer(ie)})
				continue
			}
			if err != nil {
				return nil, nil, failed(err)
			}
			raws = append(raws, one...)
		}
	} else if err != nil {
		return nil, nil, failed(err)
	}
	got := make(map[uint32]bool, len(raws))
	for _, r := range raws {
		got[r.Envelope.UID] = true
	}
	for _, u := range uids {
		if !got[u] && !slices.ContainsFunc(lost, func(l Unfetched) bool { return l.UID == u }) {
			lost = append(lost, Unfetched{UID: u, Reason: "no longer in the folder"})
		}
	}
	return raws, lost, nil
}

// Close logs out and closes the connection.
func (f *Folder) Close() error {
	f.s.wd.resume()
	_ = f.s.c.Logout().Wait() // a server gone already changes nothing
	return f.s.c.Close()
}
