package store

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// IMAPState is the checkpoint of one watched IMAP folder: every message
// with a UID up to LastUID under UIDValidity has been committed and
// acknowledged on the server (flagged, moved or deleted).
type IMAPState struct {
	Channel     string
	Mailbox     string
	UIDValidity uint32
	LastUID     uint32
	// StartedAt is when the folder was first polled.
	StartedAt time.Time
	// HistoryUID: messages with a UID up to it (under UIDValidity)
	// were in the folder before the channel was first polled.
	HistoryUID uint32
	// HistoryBefore, when set, classifies by arrival date instead:
	// after a UIDVALIDITY change the old UIDs mean nothing, and mail
	// that arrived before the channel's first poll is history.
	HistoryBefore *time.Time
	// FetchingThrough is the highest UID whose fetch was started
	// (MarkIMAPFetching). Messages above LastUID and up to it were
	// being fetched when the last session ended.
	FetchingThrough uint32
	UpdatedAt       time.Time
}

// IMAPState returns the checkpoint of a folder, or ErrNotFound when the
// folder was never polled.
func (t *Tx) IMAPState(channel, mailbox string) (*IMAPState, error) {
	s := &IMAPState{Channel: channel, Mailbox: mailbox}
	var started, before sql.NullString
	var updated string
	var validity, last, hist, fetching int64
	err := t.row(`SELECT uid_validity, last_uid, started_at, history_uid, history_before, fetching_through, updated_at
		FROM imap_state WHERE channel=? AND mailbox=?`, channel, mailbox).Scan(&validity, &last, &started, &hist, &before, &fetching, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: imap state %s/%s: %w", channel, mailbox, err)
	}
	s.UIDValidity, s.LastUID, s.HistoryUID, s.FetchingThrough = uint32(validity), uint32(last), uint32(hist), uint32(fetching)
	if p := pnts(started); p != nil {
		s.StartedAt = *p
	}
	s.HistoryBefore = pnts(before)
	s.UpdatedAt = pts(updated)
	return s, nil
}

// PutIMAPState stores a folder's checkpoint, replacing the previous one.
func (t *Tx) PutIMAPState(s IMAPState) error {
	now := t.now()
	if s.StartedAt.IsZero() {
		s.StartedAt = now
	}
	_, err := t.exec(`INSERT INTO imap_state(channel, mailbox, uid_validity, last_uid, started_at, history_uid, history_before,
			fetching_through, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?)
		ON CONFLICT(channel, mailbox) DO UPDATE SET uid_validity=excluded.uid_validity, last_uid=excluded.last_uid,
			started_at=excluded.started_at, history_uid=excluded.history_uid, history_before=excluded.history_before,
			fetching_through=excluded.fetching_through, updated_at=excluded.updated_at`,
		s.Channel, s.Mailbox, int64(s.UIDValidity), int64(s.LastUID), ts(s.StartedAt), int64(s.HistoryUID), nts(s.HistoryBefore),
		int64(s.FetchingThrough), ts(now))
	if err != nil {
		return fmt.Errorf("store: imap state %s/%s: %w", s.Channel, s.Mailbox, err)
	}
	return nil
}

// AdvanceIMAPState moves a folder's last processed UID forward (never
// back) under the given UIDVALIDITY; a stale UIDVALIDITY changes
// nothing and returns ErrNotFound.
func (t *Tx) AdvanceIMAPState(channel, mailbox string, uidValidity, lastUID uint32) error {
	res, err := t.exec(`UPDATE imap_state SET last_uid=max(last_uid, ?), updated_at=?
		WHERE channel=? AND mailbox=? AND uid_validity=?`, int64(lastUID), ts(t.now()), channel, mailbox, int64(uidValidity))
	if err != nil {
		return fmt.Errorf("store: imap state %s/%s: %w", channel, mailbox, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: imap state %s/%s uidvalidity %d: %w", channel, mailbox, uidValidity, ErrNotFound)
	}
	return nil
}

// MarkIMAPFetching records, before a poller fetches messages up to
// throughUID, that their fetch has started (IMAPState.FetchingThrough
// only grows). A stale UIDVALIDITY changes nothing.
func (t *Tx) MarkIMAPFetching(channel, mailbox string, uidValidity, throughUID uint32) error {
	_, err := t.exec(`UPDATE imap_state SET fetching_through=max(fetching_through, ?)
		WHERE channel=? AND mailbox=? AND uid_validity=?`, int64(throughUID), channel, mailbox, int64(uidValidity))
	if err != nil {
		return fmt.Errorf("store: imap state %s/%s: %w", channel, mailbox, err)
	}
	return nil
}

// ChannelHealth is what the status views show about a channel's
// mailbox connection.
type ChannelHealth struct {
	Channel             string
	LastPollAt          *time.Time
	LastOKAt            *time.Time
	LastError           string
	LastErrorAt         *time.Time
	ConsecutiveFailures int
	// OAuthExpiresAt is when the OAuth access token the poller last
	// obtained expires (nil: no OAuth, or not obtained yet).
	OAuthExpiresAt *time.Time
}

// ChannelHealth returns one channel's health, or ErrNotFound.
func (t *Tx) ChannelHealth(channel string) (*ChannelHealth, error) {
	h, err := scanHealth(t.row(`SELECT channel, last_poll_at, last_ok_at, last_error, last_error_at, consecutive_failures, oauth_expires_at
		FROM channel_health WHERE channel=?`, channel))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: channel health %s: %w", channel, err)
	}
	return h, nil
}

// ChannelHealths returns the health of every channel that has one,
// ordered by name.
func (t *Tx) ChannelHealths() ([]ChannelHealth, error) {
	rows, err := t.query(`SELECT channel, last_poll_at, last_ok_at, last_error, last_error_at, consecutive_failures, oauth_expires_at
		FROM channel_health ORDER BY channel`)
	if err != nil {
		return nil, fmt.Errorf("store: channel health: %w", err)
	}
	defer rows.Close()
	var out []ChannelHealth
	for rows.Next() {
		h, err := scanHealth(rows)
		if err != nil {
			return nil, fmt.Errorf("store: channel health: %w", err)
		}
		out = append(out, *h)
	}
	return out, rows.Err()
}

func scanHealth(sc interface{ Scan(...any) error }) (*ChannelHealth, error) {
	var h ChannelHealth
	var poll, ok, errAt, exp sql.NullString
	if err := sc.Scan(&h.Channel, &poll, &ok, &h.LastError, &errAt, &h.ConsecutiveFailures, &exp); err != nil {
		return nil, err
	}
	h.LastPollAt, h.LastOKAt, h.LastErrorAt, h.OAuthExpiresAt = pnts(poll), pnts(ok), pnts(errAt), pnts(exp)
	return &h, nil
}

// RecordChannelOK records a successful poll: the last error stays for
// the record, the failure count goes back to zero.
func (t *Tx) RecordChannelOK(channel string, at time.Time) error {
	_, err := t.exec(`INSERT INTO channel_health(channel, last_poll_at, last_ok_at, consecutive_failures) VALUES (?,?,?,0)
		ON CONFLICT(channel) DO UPDATE SET last_poll_at=excluded.last_poll_at, last_ok_at=excluded.last_ok_at, consecutive_failures=0`,
		channel, ts(at), ts(at))
	if err != nil {
		return fmt.Errorf("store: channel health %s: %w", channel, err)
	}
	return nil
}

// RecordOAuthExpiry records when a channel's newest OAuth access token
// expires.
func (t *Tx) RecordOAuthExpiry(channel string, expires time.Time) error {
	_, err := t.exec(`INSERT INTO channel_health(channel, oauth_expires_at) VALUES (?,?)
		ON CONFLICT(channel) DO UPDATE SET oauth_expires_at=excluded.oauth_expires_at`, channel, ts(expires))
	if err != nil {
		return fmt.Errorf("store: channel health %s: %w", channel, err)
	}
	return nil
}

// RecordChannelError records a failed poll or connection. msg must
// name the cause and never contain a secret.
func (t *Tx) RecordChannelError(channel string, at time.Time, msg string) error {
	_, err := t.exec(`INSERT INTO channel_health(channel, last_poll_at, last_error, last_error_at, consecutive_failures) VALUES (?,?,?,?,1)
		ON CONFLICT(channel) DO UPDATE SET last_poll_at=excluded.last_poll_at, last_error=excluded.last_error,
			last_error_at=excluded.last_error_at, consecutive_failures=channel_health.consecutive_failures+1`,
		channel, ts(at), msg, ts(at))
	if err != nil {
		return fmt.Errorf("store: channel health %s: %w", channel, err)
	}
	return nil
}

// OAuthRefreshToken returns the newest refresh token saved for a
// channel, or ErrNotFound.
func (t *Tx) OAuthRefreshToken(channel string) (string, error) {
	tok, err := t.OAuthToken(channel)
	if err != nil {
		return "", err
	}
	return tok.RefreshToken, nil
}

// SavedOAuthToken is a channel's saved refresh token and the origin
// of its rotation chain.
type SavedOAuthToken struct {
	RefreshToken string
	// ConfiguredSHA256 is the hex SHA-256 of the configured refresh
	// token the saved one descends from ("" for tokens saved before
	// it was recorded). When the configured token no longer hashes to
	// it, the operator has re-authorized the channel.
	ConfiguredSHA256 string
	UpdatedAt        time.Time
}

// OAuthToken returns the refresh token saved for a channel with its
// origin, or ErrNotFound.
func (t *Tx) OAuthToken(channel string) (*SavedOAuthToken, error) {
	var tok SavedOAuthToken
	var updated string
	err := t.row(`SELECT refresh_token, configured_sha256, updated_at FROM oauth_tokens WHERE channel=?`, channel).
		Scan(&tok.RefreshToken, &tok.ConfiguredSHA256, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: oauth token %s: %w", channel, err)
	}
	tok.UpdatedAt = pts(updated)
	return &tok, nil
}

// PutOAuthRefreshToken saves the refresh token a provider issued last
// (providers rotate them and revoke the old one), keeping the recorded
// origin of the chain.
func (t *Tx) PutOAuthRefreshToken(channel, token string) error {
	_, err := t.exec(`INSERT INTO oauth_tokens(channel, refresh_token, updated_at) VALUES (?,?,?)
		ON CONFLICT(channel) DO UPDATE SET refresh_token=excluded.refresh_token, updated_at=excluded.updated_at`,
		channel, token, ts(t.now()))
	if err != nil {
		return fmt.Errorf("store: oauth token %s: %w", channel, err)
	}
	return nil
}

// PutOAuthToken saves a channel's refresh token together with the hex
// SHA-256 of the configured refresh token its chain started from.
func (t *Tx) PutOAuthToken(channel, token, configuredSHA256 string) error {
	_, err := t.exec(`INSERT INTO oauth_tokens(channel, refresh_token, configured_sha256, updated_at) VALUES (?,?,?,?)
		ON CONFLICT(channel) DO UPDATE SET refresh_token=excluded.refresh_token,
			configured_sha256=excluded.configured_sha256, updated_at=excluded.updated_at`,
		channel, token, configuredSHA256, ts(t.now()))
	if err != nil {
		return fmt.Errorf("store: oauth token %s: %w", channel, err)
	}
	return nil
}

// IMAPUnfetchable is a message an IMAP server would not deliver: every
// FETCH of its body was answered NO or BAD, or the connection broke (or
// the process died) while it was being fetched. Attempts counts the
// failed fetches, across sessions and restarts. After enough attempts the
// poller sets it aside (SetAsideAt) and its folder's checkpoint moves
// past it; the message stays on the server, in MovedTo when the server
// let the poller move it to the channel's failed folder.
type IMAPUnfetchable struct {
	Channel     string
	Mailbox     string
	UIDValidity uint32
	UID         uint32
	Attempts    int
	// ServerAnswer is the server's last answer, e.g. "NO [SERVERBUG]
	// Internal error", or how the last attempt broke off.
	ServerAnswer  string
	FirstFailedAt time.Time
	LastFailedAt  time.Time
	SetAsideAt    *time.Time
	MovedTo       string
}

// RecordIMAPFetchFailure counts one more failed attempt to fetch a
// message and returns the record as it now stands.
func (t *Tx) RecordIMAPFetchFailure(channel, mailbox string, uidValidity, uid uint32, answer string, at time.Time) (*IMAPUnfetchable, error) {
	_, err := t.exec(`INSERT INTO imap_unfetchable(channel, mailbox, uid_validity, uid, attempts, server_answer, first_failed_at, last_failed_at)
		VALUES (?,?,?,?,1,?,?,?)
		ON CONFLICT(channel, mailbox, uid_validity, uid) DO UPDATE SET attempts=imap_unfetchable.attempts+1,
			server_answer=excluded.server_answer, last_failed_at=excluded.last_failed_at`,
		channel, mailbox, int64(uidValidity), int64(uid), answer, ts(at), ts(at))
	if err != nil {
		return nil, fmt.Errorf("store: imap fetch failure %s/%s uid %d: %w", channel, mailbox, uid, err)
	}
	return t.IMAPUnfetchable(channel, mailbox, uidValidity, uid)
}

// NoteIMAPFetchFailure replaces the recorded answer of a message's
// current failed attempt (without counting another one), e.g. with the
// server's NO or the connection error once it is known.
func (t *Tx) NoteIMAPFetchFailure(channel, mailbox string, uidValidity, uid uint32, answer string) error {
	_, err := t.exec(`UPDATE imap_unfetchable SET server_answer=? WHERE channel=? AND mailbox=? AND uid_validity=? AND uid=?`,
		answer, channel, mailbox, int64(uidValidity), int64(uid))
	if err != nil {
		return fmt.Errorf("store: imap fetch failure %s/%s uid %d: %w", channel, mailbox, uid, err)
	}
	return nil
}

// ForgetIMAPFetchFailures forgets the failed attempts of one message
// that was not set aside (it was fetched after all).
func (t *Tx) ForgetIMAPFetchFailures(channel, mailbox string, uidValidity, uid uint32) error {
	_, err := t.exec(`DELETE FROM imap_unfetchable WHERE channel=? AND mailbox=? AND uid_validity=? AND uid=? AND set_aside_at IS NULL`,
		channel, mailbox, int64(uidValidity), int64(uid))
	if err != nil {
		return fmt.Errorf("store: imap fetch failures %s/%s uid %d: %w", channel, mailbox, uid, err)
	}
	return nil
}

// UncountIMAPFetchFailure takes back one counted attempt of a message
// not set aside (an attempt our own shutdown interrupted: not the
// message's fault) and puts back the answer of the attempt before it;
// the record goes when no attempt is left.
func (t *Tx) UncountIMAPFetchFailure(channel, mailbox string, uidValidity, uid uint32, previousAnswer string) error {
	where := ` WHERE channel=? AND mailbox=? AND uid_validity=? AND uid=? AND set_aside_at IS NULL`
	args := []any{channel, mailbox, int64(uidValidity), int64(uid)}
	if _, err := t.exec(`UPDATE imap_unfetchable SET attempts=attempts-1, server_answer=?`+where, append([]any{previousAnswer}, args...)...); err != nil {
		return fmt.Errorf("store: imap fetch failure %s/%s uid %d: %w", channel, mailbox, uid, err)
	}
	if _, err := t.exec(`DELETE FROM imap_unfetchable`+where+` AND attempts<=0`, args...); err != nil {
		return fmt.Errorf("store: imap fetch failure %s/%s uid %d: %w", channel, mailbox, uid, err)
	}
	return nil
}

// SetIMAPMessageAside marks a message the server would not deliver as
// set aside at the given time (the first time only).
func (t *Tx) SetIMAPMessageAside(channel, mailbox string, uidValidity, uid uint32, at time.Time) error {
	res, err := t.exec(`UPDATE imap_unfetchable SET set_aside_at=COALESCE(set_aside_at, ?)
		WHERE channel=? AND mailbox=? AND uid_validity=? AND uid=?`, ts(at), channel, mailbox, int64(uidValidity), int64(uid))
	if err != nil {
		return fmt.Errorf("store: imap set aside %s/%s uid %d: %w", channel, mailbox, uid, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: imap set aside %s/%s uid %d: %w", channel, mailbox, uid, ErrNotFound)
	}
	return nil
}

// SetIMAPMessageMoved records the folder a set-aside message was moved
// to on the server.
func (t *Tx) SetIMAPMessageMoved(channel, mailbox string, uidValidity, uid uint32, folder string) error {
	_, err := t.exec(`UPDATE imap_unfetchable SET moved_to=? WHERE channel=? AND mailbox=? AND uid_validity=? AND uid=?`,
		folder, channel, mailbox, int64(uidValidity), int64(uid))
	if err != nil {
		return fmt.Errorf("store: imap set aside %s/%s uid %d: %w", channel, mailbox, uid, err)
	}
	return nil
}

// ClearIMAPFetchFailures forgets the failed attempts of messages up
// to throughUID that were not set aside: the folder's checkpoint has
// passed them, so they were fetched after all (or are gone), and a
// later failure counts from zero again. Set-aside records stay.
func (t *Tx) ClearIMAPFetchFailures(channel, mailbox string, uidValidity, throughUID uint32) error {
	_, err := t.exec(`DELETE FROM imap_unfetchable WHERE channel=? AND mailbox=? AND uid_validity=? AND uid<=? AND set_aside_at IS NULL`,
		channel, mailbox, int64(uidValidity), int64(throughUID))
	if err != nil {
		return fmt.Errorf("store: imap fetch failures %s/%s: %w", channel, mailbox, err)
	}
	return nil
}

const unfetchableColumns = `channel, mailbox, uid_validity, uid, attempts, server_answer, first_failed_at, last_failed_at,
	set_aside_at, COALESCE(moved_to, '')`

func scanUnfetchable(sc interface{ Scan(...any) error }) (*IMAPUnfetchable, error) {
	var u IMAPUnfetchable
	var validity, uid int64
	var first, last string
	var aside sql.NullString
	if err := sc.Scan(&u.Channel, &u.Mailbox, &validity, &uid, &u.Attempts, &u.ServerAnswer, &first, &last, &aside, &u.MovedTo); err != nil {
		return nil, err
	}
	u.UIDValidity, u.UID = uint32(validity), uint32(uid)
	u.FirstFailedAt, u.LastFailedAt, u.SetAsideAt = pts(first), pts(last), pnts(aside)
	return &u, nil
}

// IMAPUnfetchable returns the record of one message, or ErrNotFound.
func (t *Tx) IMAPUnfetchable(channel, mailbox string, uidValidity, uid uint32) (*IMAPUnfetchable, error) {
	u, err := scanUnfetchable(t.row(`SELECT `+unfetchableColumns+` FROM imap_unfetchable
		WHERE channel=? AND mailbox=? AND uid_validity=? AND uid=?`, channel, mailbox, int64(uidValidity), int64(uid)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: imap fetch failure %s/%s uid %d: %w", channel, mailbox, uid, err)
	}
	return u, nil
}

// IMAPSetAside lists the messages IMAP servers would not deliver and
// that were set aside (the folder carried on without them), newest
// first, for the status views. channel "" lists every channel's.
func (t *Tx) IMAPSetAside(channel string) ([]IMAPUnfetchable, error) {
	rows, err := t.query(`SELECT `+unfetchableColumns+` FROM imap_unfetchable
		WHERE set_aside_at IS NOT NULL AND (?='' OR channel=?) ORDER BY set_aside_at DESC, channel, mailbox, uid`, channel, channel)
	if err != nil {
		return nil, fmt.Errorf("store: imap set aside: %w", err)
	}
	defer rows.Close()
	out := []IMAPUnfetchable{}
	for rows.Next() {
		u, err := scanUnfetchable(rows)
		if err != nil {
			return nil, fmt.Errorf("store: imap set aside: %w", err)
		}
		out = append(out, *u)
	}
	return out, rows.Err()
}

// CountIMAPSetAside counts the messages set aside because their IMAP
// server would not deliver them (see IMAPSetAside).
func (t *Tx) CountIMAPSetAside() (int, error) {
	var n int
	if err := t.row(`SELECT COUNT(*) FROM imap_unfetchable WHERE set_aside_at IS NOT NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: imap set aside: %w", err)
	}
	return n, nil
}

// RawStates returns the state (processed, failed, ignored, duplicate)
// of the given raw messages; ids not found are absent from the map.
func (t *Tx) RawStates(ids []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(ids))
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := t.query(`SELECT id, state FROM raw_messages WHERE id IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("store: raw message states: %w", err)
		}
		for rows.Next() {
			var id int64
			var state string
			if err := rows.Scan(&id, &state); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: raw message states: %w", err)
			}
			out[id] = state
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("store: raw message states: %w", err)
		}
	}
	return out, nil
}
