package poller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/deskmail/deskmail/store"
)

// session is one connection of a folder poller.
type session struct {
	p       *folderPoller
	c       *imapclient.Client
	wake    chan struct{} // new mail announced (EXISTS) while selected
	delim   rune
	created map[string]bool // folders known to exist
	mailbox string          // the watched folder's name on the server
	state   store.IMAPState
	drained bool
	wd      *watchdog // the connection's; nil before dial
}

// errorf wraps err with the channel and folder.
func (s *session) errorf(format string, args ...any) error {
	return fmt.Errorf("imap "+s.p.channel+": "+s.p.folder+": "+format, args...)
}

// dial opens the connection in the configured TLS mode. ctx bounds the
// TCP connect and the TLS handshake (at most 30s); from then on the
// returned watchdog closes the connection when the server stays
// silent for timeout while an answer is expected.
func dial(ctx context.Context, host string, port int, mode string, base *tls.Config, timeout time.Duration,
	opts *imapclient.Options) (*imapclient.Client, *watchdog, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	wd := newWatchdog(raw, timeout)
	var conn net.Conn = wd
	tc := &tls.Config{}
	if base != nil {
		tc = base.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS12
	}
	opts.TLSConfig = tc
	switch mode {
	case "implicit", "":
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(dctx); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		return imapclient.New(tconn, opts), wd, nil
	case "starttls":
		stop := context.AfterFunc(dctx, func() { conn.Close() })
		defer stop()
		c, err := imapclient.NewStartTLS(conn, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("starttls with %s: %w", addr, err)
		}
		return c, wd, nil
	case "none":
		return imapclient.New(conn, opts), wd, nil
	}
	conn.Close()
	return nil, nil, fmt.Errorf("unknown tls mode %q", mode)
}

// connect dials, waits for the greeting and authenticates.
func (s *session) connect(ctx context.Context) error {
	im := s.p.im
	s.wake = make(chan struct{}, 1)
	opts := &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
		},
	}}
	c, wd, err := dial(ctx, im.Host, im.Port, im.TLS, s.p.opts.TLSConfig, s.p.opts.commandTimeout, opts)
	if err != nil {
		return s.errorf("%w", err)
	}
	s.c, s.wd = c, wd
	// A server that accepts the connection and then says nothing must
	// not hold up a shutdown until the watchdog gives up on it.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.WaitGreeting(); err != nil {
		return s.errorf("greeting from %s: %w", im.Host, err)
	}
	if c.State() == imap.ConnStateNotAuthenticated {
		if err := s.p.auth.authenticate(ctx, c, im.Host, im.Port); err != nil {
			return s.errorf("%w", err)
		}
	}
	return nil
}

// run is one connection's life: connect, select, then drain and wait
// until ctx ends or something fails.
func (s *session) run(ctx context.Context) (err error) {
	defer func() {
		if err != nil && s.wd.timedOut() {
			err = fmt.Errorf("%w (timed out: the server sent nothing for %s)", err, s.p.opts.commandTimeout)
		}
	}()
	if err := s.connect(ctx); err != nil {
		if s.c != nil {
			s.c.Close()
		}
		return err
	}
	c := s.c
	// Ending ctx closes the connection, which fails whatever command
	// is waiting; a committed batch not yet acknowledged is then
	// acknowledged by the next session.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	if err := s.selectFolder(ctx); err != nil {
		return err
	}
	idle := s.p.im.IDLE == nil || *s.p.im.IDLE
	idle = idle && c.Caps().Has(imap.CapIdle)
	for {
		if err := s.drain(ctx); err != nil {
			return err
		}
		if err := s.p.recordOK(ctx); err != nil {
			return err
		}
		s.drained = true
		if err := s.wait(ctx, idle); err != nil {
			return err
		}
	}
}

// serverName maps a configured folder name, written with "/" between
// levels, to the server's hierarchy delimiter.
func (s *session) serverName(name string) string {
	if s.delim == 0 || s.delim == '/' || strings.EqualFold(name, "INBOX") {
		return name
	}
	return strings.ReplaceAll(name, "/", string(s.delim))
}

// selectFolder learns the hierarchy delimiter, selects the watched
// folder and loads or creates its checkpoint.
func (s *session) selectFolder(ctx context.Context) error {
	c := s.c
	s.created = map[string]bool{}
	if list, err := c.List("", "", nil).Collect(); err == nil && len(list) > 0 {
		s.delim = list[0].Delim
	}
	s.mailbox = s.serverName(s.p.folder)
	sel, err := c.Select(s.mailbox, &imap.SelectOptions{}).Wait()
	if err != nil {
		return s.errorf("select: %w", err)
	}
	s.created[s.mailbox] = true
	if sel.UIDValidity == 0 {
		return s.errorf("select: server sent no UIDVALIDITY; cannot poll exactly once")
	}
	var st *store.IMAPState
	err = s.p.st.Read(ctx, func(tx *store.Tx) (err error) {
		st, err = tx.IMAPState(s.p.channel, s.p.folder)
		return err
	})
	now := s.p.opts.Now()
	switch {
	case errors.Is(err, store.ErrNotFound):
		// First poll of this folder: everything already here is
		// history, up to UIDNEXT-1.
		next := sel.UIDNext
		if next == 0 {
			if next, err = s.uidNext(); err != nil {
				return err
			}
		}
		st = &store.IMAPState{Channel: s.p.channel, Mailbox: s.p.folder, UIDValidity: sel.UIDValidity, StartedAt: now,
			HistoryUID: uint32(next) - 1}
		if s.p.im.Existing != "import" {
			st.LastUID = st.HistoryUID
		}
		s.p.log.Info("imap folder polled for the first time", "uidvalidity", st.UIDValidity, "history_up_to_uid", st.HistoryUID,
			"existing", s.p.im.Existing)
	case err != nil:
		return s.errorf("load checkpoint: %w", err)
	case st.UIDValidity != sel.UIDValidity:
		// RFC 9051 section 2.3.1.1: the old UIDs mean nothing now.
		// Re-scan; what was stored comes back as duplicates, and mail
		// that arrived before the first poll is still history.
		s.p.log.Warn("imap UIDVALIDITY changed; re-scanning the folder", "old", st.UIDValidity, "new", sel.UIDValidity)
		started := st.StartedAt
		st.UIDValidity, st.LastUID, st.HistoryUID, st.HistoryBefore = sel.UIDValidity, 0, 0, &started
	default:
		s.state = *st
		return nil
	}
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	if err := s.p.st.Write(wctx, func(tx *store.Tx) error { return tx.PutIMAPState(*st) }); err != nil {
		return s.errorf("save checkpoint: %w", err)
	}
	s.state = *st
	return nil
}

// uidNext finds UIDNEXT for servers that do not send it on SELECT.
func (s *session) uidNext() (imap.UID, error) {
	data, err := s.c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil {
		return 0, s.errorf("search: %w", err)
	}
	var top imap.UID
	for _, u := range data.AllUIDs() {
		top = max(top, u)
	}
	return top + 1, nil
}

// wait returns when new mail may be there: at once when the server
// announced some, else on IDLE news, the re-IDLE timer or the poll
// interval.
func (s *session) wait(ctx context.Context, idle bool) error {
	select {
	case <-s.wake:
		return nil
	default:
	}
	if !idle {
		t := time.NewTimer(s.p.im.PollInterval.Duration)
		if s.p.im.PollInterval.Duration <= 0 {
			t.Reset(time.Minute)
		}
		defer t.Stop()
		// No command is pending until the next drain.
		s.wd.pause()
		defer s.wd.resume()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.c.Closed():
			return s.errorf("connection closed by the server")
		}
	}
	// A NOOP right before IDLE collects what arrived since the drain:
	// not every server reports pending changes when IDLE starts.
	if err := s.c.Noop().Wait(); err != nil {
		return s.errorf("noop: %w", err)
	}
	select {
	case <-s.wake:
		return nil
	default:
	}
	cmd, err := s.c.Idle()
	if err != nil {
		return s.errorf("idle: %w", err)
	}
	// Re-IDLE before the server's timeout, and at least every poll
	// interval: a drain then also catches mail whose announcement a
	// server failed to send.
	d := s.p.opts.reIdle
	if pi := s.p.im.PollInterval.Duration; pi > 0 {
		d = min(d, pi)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	// Silence is what IDLE is for; DONE starts the clock again.
	s.wd.pause()
	select {
	case <-s.wake:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.c.Closed():
		return s.errorf("connection closed by the server while idle")
	}
	s.wd.resume()
	if err := cmd.Close(); err != nil {
		return s.errorf("idle done: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return s.errorf("idle: %w", err)
	}
	return nil
}
