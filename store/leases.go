package store

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrLeaseLost is returned when an IMAP folder lease is no longer held
// by the caller: it expired and another instance (or a newer poller of
// this one) took it over. The holder must stop acknowledging mail.
var ErrLeaseLost = errors.New("imap folder lease lost")

// Instance is one running deskmail (serve) on the database.
type Instance struct {
	ID          string
	Host        string
	PID         int
	Version     string
	StartedAt   time.Time
	HeartbeatAt time.Time
	StoppedAt   *time.Time
}

// Lease is who polls one IMAP folder: the owner instance, the fencing
// token (it grows at every acquisition) and until when the lease holds
// without renewal.
type Lease struct {
	Channel    string
	Mailbox    string
	Owner      string
	Token      int64
	AcquiredAt time.Time
	ExpiresAt  time.Time
}

// Heartbeat records that instance in is alive at now (registering it
// on first call).
func (t *Tx) Heartbeat(in Instance, now time.Time) error {
	_, err := t.exec(`INSERT INTO instances(id, host, pid, version, started_at, heartbeat_at) VALUES (?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET heartbeat_at=excluded.heartbeat_at, stopped_at=NULL`,
		in.ID, in.Host, in.PID, in.Version, ts(in.StartedAt), ts(now))
	if err != nil {
		return fmt.Errorf("store: heartbeat of %s: %w", in.ID, err)
	}
	return nil
}

// StopInstance records a clean stop, and gives up the instance's
// leases so that another instance takes its folders at once.
func (t *Tx) StopInstance(id string, now time.Time) error {
	if _, err := t.exec(`UPDATE instances SET stopped_at=? WHERE id=?`, ts(now), id); err != nil {
		return fmt.Errorf("store: stop instance %s: %w", id, err)
	}
	if _, err := t.exec(`UPDATE imap_leases SET expires_at=? WHERE owner=? AND expires_at>?`, ts(now), id, ts(now)); err != nil {
		return fmt.Errorf("store: release leases of %s: %w", id, err)
	}
	return nil
}

// Instances lists instances whose heartbeat is at or after since and
// that have not stopped, oldest first.
func (t *Tx) Instances(since time.Time) ([]Instance, error) {
	rows, err := t.query(`SELECT id, host, pid, version, started_at, heartbeat_at, stopped_at FROM instances
		WHERE heartbeat_at>=? AND stopped_at IS NULL ORDER BY started_at, id`, ts(since))
	if err != nil {
		return nil, fmt.Errorf("store: instances: %w", err)
	}
	defer rows.Close()
	out := []Instance{}
	for rows.Next() {
		var in Instance
		var started, beat string
		var stopped sql.NullString
		if err := rows.Scan(&in.ID, &in.Host, &in.PID, &in.Version, &started, &beat, &stopped); err != nil {
			return nil, fmt.Errorf("store: instances: %w", err)
		}
		in.StartedAt, in.HeartbeatAt, in.StoppedAt = pts(started), pts(beat), pnts(stopped)
		out = append(out, in)
	}
	return out, rows.Err()
}

// AcquireLease takes the lease of an IMAP folder for owner until
// now+ttl when nobody holds it, it expired, or owner already holds it
// (a new session of the same poller). Every acquisition increments the
// token, so a holder from before can no longer pass CheckLease. ok is
// false, with the current holder's lease, when another owner holds it.
func (t *Tx) AcquireLease(channel, mailbox, owner string, now time.Time, ttl time.Duration) (l Lease, ok bool, err error) {
	_, err = t.exec(`INSERT INTO imap_leases(channel, mailbox, owner, token, acquired_at, expires_at) VALUES (?,?,?,1,?,?)
		ON CONFLICT(channel, mailbox) DO UPDATE SET owner=excluded.owner, token=imap_leases.token+1,
			acquired_at=excluded.acquired_at, expires_at=excluded.expires_at
		WHERE imap_leases.expires_at<=? OR imap_leases.owner=excluded.owner`,
		channel, mailbox, owner, ts(now), ts(now.Add(ttl)), ts(now))
	if err != nil {
		return l, false, fmt.Errorf("store: acquire lease %s/%s: %w", channel, mailbox, err)
	}
	l, err = t.lease(channel, mailbox)
	if err != nil {
		return l, false, err
	}
	return l, l.Owner == owner, nil
}

func (t *Tx) lease(channel, mailbox string) (Lease, error) {
	l := Lease{Channel: channel, Mailbox: mailbox}
	var acq, exp string
	err := t.row(`SELECT owner, token, acquired_at, expires_at FROM imap_leases WHERE channel=? AND mailbox=?`, channel, mailbox).
		Scan(&l.Owner, &l.Token, &acq, &exp)
	if err != nil {
		return l, notFound(err, fmt.Sprintf("lease %s/%s", channel, mailbox))
	}
	l.AcquiredAt, l.ExpiresAt = pts(acq), pts(exp)
	return l, nil
}

// CheckLease renews l until now+ttl if its owner still holds it with
// the same token and it has not expired; otherwise it returns
// ErrLeaseLost. A poller runs it in the commit that precedes every
// acknowledgement on the IMAP server (flag, move, delete), so an
// instance that lost its folder never touches the folder's mail.
func (t *Tx) CheckLease(l Lease, now time.Time, ttl time.Duration) error {
	res, err := t.exec(`UPDATE imap_leases SET expires_at=? WHERE channel=? AND mailbox=? AND owner=? AND token=? AND expires_at>?`,
		ts(now.Add(ttl)), l.Channel, l.Mailbox, l.Owner, l.Token, ts(now))
	if err != nil {
		return fmt.Errorf("store: renew lease %s/%s: %w", l.Channel, l.Mailbox, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: %s/%s (token %d of %s): %w", l.Channel, l.Mailbox, l.Token, l.Owner, ErrLeaseLost)
	}
	return nil
}

// ReleaseLease gives a held lease up (a clean stop): it expires now.
func (t *Tx) ReleaseLease(l Lease, now time.Time) error {
	_, err := t.exec(`UPDATE imap_leases SET expires_at=? WHERE channel=? AND mailbox=? AND owner=? AND token=?`,
		ts(now), l.Channel, l.Mailbox, l.Owner, l.Token)
	if err != nil {
		return fmt.Errorf("store: release lease %s/%s: %w", l.Channel, l.Mailbox, err)
	}
	return nil
}

// Leases lists every IMAP folder lease (expired ones too), by channel
// and folder.
func (t *Tx) Leases() ([]Lease, error) {
	rows, err := t.query(`SELECT channel, mailbox, owner, token, acquired_at, expires_at FROM imap_leases ORDER BY channel, mailbox`)
	if err != nil {
		return nil, fmt.Errorf("store: leases: %w", err)
	}
	defer rows.Close()
	out := []Lease{}
	for rows.Next() {
		var l Lease
		var acq, exp string
		if err := rows.Scan(&l.Channel, &l.Mailbox, &l.Owner, &l.Token, &acq, &exp); err != nil {
			return nil, fmt.Errorf("store: leases: %w", err)
		}
		l.AcquiredAt, l.ExpiresAt = pts(acq), pts(exp)
		out = append(out, l)
	}
	return out, rows.Err()
}
