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
	UpdatedAt     time.Time
}

// IMAPState returns the checkpoint of a folder, or ErrNotFound when the
// folder was never polled.
func (t *Tx) IMAPState(channel, mailbox string) (*IMAPState, error) {
	s := &IMAPState{Channel: channel, Mailbox: mailbox}
	var started, before sql.NullString
	var updated string
	var validity, last, hist int64
	err := t.row(`SELECT uid_validity, last_uid, started_at, history_uid, history_before, updated_at
		FROM imap_state WHERE channel=? AND mailbox=?`, channel, mailbox).Scan(&validity, &last, &started, &hist, &before, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: imap state %s/%s: %w", channel, mailbox, err)
	}
	s.UIDValidity, s.LastUID, s.HistoryUID = uint32(validity), uint32(last), uint32(hist)
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
	_, err := t.exec(`INSERT INTO imap_state(channel, mailbox, uid_validity, last_uid, started_at, history_uid, history_before, updated_at)
		VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT(channel, mailbox) DO UPDATE SET uid_validity=excluded.uid_validity, last_uid=excluded.last_uid,
			started_at=excluded.started_at, history_uid=excluded.history_uid, history_before=excluded.history_before,
			updated_at=excluded.updated_at`,
		s.Channel, s.Mailbox, int64(s.UIDValidity), int64(s.LastUID), ts(s.StartedAt), int64(s.HistoryUID), nts(s.HistoryBefore), ts(now))
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

// ChannelHealth is what the status views show about a channel's
// mailbox connection.
type ChannelHealth struct {
	Channel             string
	LastPollAt          *time.Time
	LastOKAt            *time.Time
	LastError           string
	LastErrorAt         *time.Time
	ConsecutiveFailures int
}

// ChannelHealth returns one channel's health, or ErrNotFound.
func (t *Tx) ChannelHealth(channel string) (*ChannelHealth, error) {
	h, err := scanHealth(t.row(`SELECT channel, last_poll_at, last_ok_at, last_error, last_error_at, consecutive_failures
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
	rows, err := t.query(`SELECT channel, last_poll_at, last_ok_at, last_error, last_error_at, consecutive_failures
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
	var poll, ok, errAt sql.NullString
	if err := sc.Scan(&h.Channel, &poll, &ok, &h.LastError, &errAt, &h.ConsecutiveFailures); err != nil {
		return nil, err
	}
	h.LastPollAt, h.LastOKAt, h.LastErrorAt = pnts(poll), pnts(ok), pnts(errAt)
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

// RecordChannelError records a failed poll or connection. msg must
// name the cause and never contain a secret.
func (t *Tx) RecordChannelError(channel string, at time.Time, msg string) error {
	_, err := t.exec(`INSERT INTO channel_health(channel, last_poll_at, last_error, last_error_at, consecutive_failures) VALUES (?,?,?,?,1)
		ON CONFLICT(channel) DO UPDATE SET last_poll_at=excluded.last_poll_at, last_error=excluded.last_error,
			last_error_at=excluded.last_error_at, consecutive_failures=consecutive_failures+1`,
		channel, ts(at), msg, ts(at))
	if err != nil {
		return fmt.Errorf("store: channel health %s: %w", channel, err)
	}
	return nil
}

// OAuthRefreshToken returns the newest refresh token saved for a
// channel, or ErrNotFound.
func (t *Tx) OAuthRefreshToken(channel string) (string, error) {
	var tok string
	err := t.row(`SELECT refresh_token FROM oauth_tokens WHERE channel=?`, channel).Scan(&tok)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: oauth token %s: %w", channel, err)
	}
	return tok, nil
}

// PutOAuthRefreshToken saves the refresh token a provider issued last
// (providers rotate them and revoke the old one).
func (t *Tx) PutOAuthRefreshToken(channel, token string) error {
	_, err := t.exec(`INSERT INTO oauth_tokens(channel, refresh_token, updated_at) VALUES (?,?,?)
		ON CONFLICT(channel) DO UPDATE SET refresh_token=excluded.refresh_token, updated_at=excluded.updated_at`,
		channel, token, ts(t.now()))
	if err != nil {
		return fmt.Errorf("store: oauth token %s: %w", channel, err)
	}
	return nil
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
