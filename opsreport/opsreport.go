// Package opsreport builds the operator's report of a deskmail
// database: each channel's health and mail received today, the
// outbox, mail kept raw after a failure, mailbox messages set aside,
// the webhook queue and delivery reports. `deskmail status` prints it
// and the web console's ops dashboard shows it: both read it with
// Gather, in one read transaction, so their numbers cannot disagree.
package opsreport

import (
	"context"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
)

// Channel is one channel's line.
type Channel struct {
	Channel       string     `json:"channel"`
	Kind          string     `json:"kind"` // smtp or imap
	Addresses     []string   `json:"addresses"`
	MessagesToday int        `json:"messages_today"`
	LastPollAt    *time.Time `json:"last_poll_at"`
	LastOKAt      *time.Time `json:"last_ok_at"`
	LastError     string     `json:"last_error"`
	LastErrorAt   *time.Time `json:"last_error_at"`
	Failures      int        `json:"consecutive_failures"`
	Healthy       bool       `json:"healthy"`
	// OAuthTokenSavedAt is when the provider last issued the
	// channel's OAuth refresh token (it rotates them), for an OAuth
	// mailbox that has one.
	OAuthTokenSavedAt *time.Time `json:"oauth_token_saved_at"`
	// OAuthExpiresAt is when the access token the mailbox's poller
	// last obtained expires (it gets a new one before then; an expiry
	// in the past with failures means it could not).
	OAuthExpiresAt *time.Time `json:"oauth_token_expires_at"`
}

// Health words a channel's state: "ok", "failing", or "never polled"
// for a mailbox not polled yet.
func (c Channel) Health() string {
	switch {
	case c.Healthy:
		return "ok"
	case c.LastPollAt == nil && c.LastError == "":
		return "never polled"
	}
	return "failing"
}

// Report is what `deskmail status --json` prints.
type Report struct {
	Database string `json:"database"`
	// StoreKind is sqlite or postgresql (set by the caller).
	StoreKind string `json:"store_kind"`
	// Instances are the deskmail instances serving the database (a
	// heartbeat in the last InstanceLive) with the IMAP folders each
	// polls; UnheldFolders are folders whose holder is gone.
	Instances     []Instance `json:"instances"`
	UnheldFolders []string   `json:"unheld_folders"`
	// Store is "ok" when a write probe committed, else "not writable:
	// …" — the same probe and text as /readyz (set by the caller).
	Store    string    `json:"store"`
	Channels []Channel `json:"channels"`
	Outbox   struct {
		Queued       int        `json:"queued"`
		Retrying     int        `json:"retrying"`
		Failed       int        `json:"failed"`
		Sent         int        `json:"sent"`
		Suppressed   int        `json:"suppressed"`
		OldestQueued *time.Time `json:"oldest_queued"`
	} `json:"outbox"`
	FailedMessages int `json:"failed_messages"`
	// IMAPSetAside counts mailbox messages the server refused to hand
	// over, set aside after repeated failures (see the failed folder).
	IMAPSetAside int `json:"imap_set_aside"`
	// IMAPSetAsideMessages lists them, newest first.
	IMAPSetAsideMessages []SetAside `json:"imap_set_aside_messages"`
	// Webhooks is the webhook delivery queue.
	Webhooks Webhooks `json:"webhooks"`
	// Bounces counts the delivery status reports received by what they
	// proved, and shows the latest that proved nothing (kept raw,
	// flagging nobody).
	Bounces struct {
		Flagged            int            `json:"flagged"`
		Transient          int            `json:"transient"`
		Uncorrelated       int            `json:"uncorrelated"`
		RecentUncorrelated []store.Bounce `json:"recent_uncorrelated"`
		// BouncingContacts counts the contacts flagged bouncing now
		// (deskmail contacts list --bouncing).
		BouncingContacts int `json:"bouncing_contacts"`
	} `json:"bounces"`
}

// InstanceLive is how old a heartbeat may be for an instance to be
// listed as running.
const InstanceLive = store.InstanceLive

// Instance is one running deskmail and the IMAP folders whose lease it
// holds, in deskmail status, /readyz and the ops dashboard.
type Instance struct {
	ID          string    `json:"id"`
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	Version     string    `json:"version"`
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
	// Folders are "channel/folder" names whose lease it holds.
	Folders []string `json:"folders"`
	// Self marks the instance answering (/readyz only).
	Self bool `json:"self,omitempty"`
}

// Instances lists the live instances with their folders; folders
// whose lease no live instance holds are returned apart (unheld: their
// holder died and no instance has taken them over yet).
func Instances(tx *store.Tx, now time.Time) (ins []Instance, unheld []string, err error) {
	live, err := tx.Instances(now.Add(-InstanceLive))
	if err != nil {
		return nil, nil, err
	}
	leases, err := tx.Leases()
	if err != nil {
		return nil, nil, err
	}
	ins = make([]Instance, len(live))
	byID := map[string]*Instance{}
	for i, in := range live {
		ins[i] = Instance{ID: in.ID, Host: in.Host, PID: in.PID, Version: in.Version, StartedAt: in.StartedAt,
			HeartbeatAt: in.HeartbeatAt, Folders: []string{}}
		byID[in.ID] = &ins[i]
	}
	unheld = []string{}
	for _, l := range leases {
		name := l.Channel + "/" + l.Mailbox
		if in := byID[l.Owner]; in != nil && l.ExpiresAt.After(now) {
			in.Folders = append(in.Folders, name)
			continue
		}
		unheld = append(unheld, name)
	}
	return ins, unheld, nil
}

// Webhooks is the webhook delivery queue.
type Webhooks struct {
	Queued    int    `json:"queued"`
	Retrying  int    `json:"retrying"`
	Failed    int    `json:"failed"`
	Sent      int    `json:"sent"`
	LastError string `json:"last_error"`
}

// SetAside is one mailbox message set aside because its fetch kept
// failing.
type SetAside struct {
	Channel     string     `json:"channel"`
	Folder      string     `json:"folder"`
	UIDValidity uint32     `json:"uid_validity"`
	UID         uint32     `json:"uid"`
	Attempts    int        `json:"attempts"`
	LastError   string     `json:"last_error"`
	SetAsideAt  *time.Time `json:"set_aside_at"`
	// MovedTo is the failed folder it was moved to, "" when the
	// server would not let it move (it stays in Folder).
	MovedTo string `json:"moved_to"`
}

// Gather reads the report of cfg's channels from tx ("today" starts
// at local midnight of now). Store is left "ok": the caller probes.
func Gather(tx *store.Tx, cfg *config.Config, now time.Time) (*Report, error) {
	rep := &Report{Database: cfg.Database, Store: "ok", Channels: []Channel{}}
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	today, err := tx.MessagesSince(midnight)
	if err != nil {
		return nil, err
	}
	for _, ch := range cfg.Channels {
		cs := Channel{Channel: ch.Name, Kind: "smtp", Addresses: ch.Addresses, MessagesToday: today[ch.Name], Healthy: true}
		if ch.IMAP != nil {
			cs.Kind = "imap"
			h, err := tx.ChannelHealth(ch.Name)
			if err == nil {
				cs.LastPollAt, cs.LastOKAt, cs.LastError, cs.LastErrorAt, cs.Failures = h.LastPollAt, h.LastOKAt, h.LastError, h.LastErrorAt, h.ConsecutiveFailures
				cs.OAuthExpiresAt = h.OAuthExpiresAt
			}
			// A mailbox is healthy when its last poll succeeded.
			cs.Healthy = err == nil && h.ConsecutiveFailures == 0 && h.LastOKAt != nil
			if tok, err := tx.OAuthToken(ch.Name); err == nil {
				at := tok.UpdatedAt
				cs.OAuthTokenSavedAt = &at
			}
		}
		rep.Channels = append(rep.Channels, cs)
	}
	ob, err := tx.OutboxStats()
	if err != nil {
		return nil, err
	}
	rep.Outbox.Queued, rep.Outbox.Retrying, rep.Outbox.Failed, rep.Outbox.Sent, rep.Outbox.Suppressed, rep.Outbox.OldestQueued =
		ob.Queued, ob.Retrying, ob.Failed, ob.Sent, ob.Suppressed, ob.OldestQueued
	if rep.FailedMessages, err = tx.CountRaw("failed"); err != nil {
		return nil, err
	}
	aside, err := tx.IMAPSetAside("")
	if err != nil {
		return nil, err
	}
	rep.IMAPSetAside = len(aside)
	rep.IMAPSetAsideMessages = make([]SetAside, len(aside))
	for i, u := range aside {
		rep.IMAPSetAsideMessages[i] = SetAside{Channel: u.Channel, Folder: u.Mailbox, UIDValidity: u.UIDValidity, UID: u.UID,
			Attempts: u.Attempts, LastError: u.ServerAnswer, SetAsideAt: u.SetAsideAt, MovedTo: u.MovedTo}
	}
	wh, err := tx.WebhookStats()
	if err != nil {
		return nil, err
	}
	rep.Webhooks = Webhooks{Queued: wh.Queued, Retrying: wh.Retrying, Failed: wh.Failed, Sent: wh.Sent, LastError: wh.LastError}
	if rep.Instances, rep.UnheldFolders, err = Instances(tx, now); err != nil {
		return nil, err
	}
	if err := bounces(tx, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// bounces fills the report's bounces section.
func bounces(tx *store.Tx, rep *Report) error {
	b := &rep.Bounces
	var err error
	if b.Flagged, err = tx.CountBounces(store.BounceFlagged); err != nil {
		return err
	}
	if b.Transient, err = tx.CountBounces(store.BounceTransient); err != nil {
		return err
	}
	if b.Uncorrelated, err = tx.CountBounces(store.BounceUncorrelated); err != nil {
		return err
	}
	if b.RecentUncorrelated, err = tx.Bounces(store.BounceUncorrelated, 5); err != nil {
		return err
	}
	cs, err := tx.BouncingContacts()
	b.BouncingContacts = len(cs)
	return err
}

// Read runs Gather in one read transaction of st.
func Read(ctx context.Context, st *store.Store, cfg *config.Config, now time.Time) (*Report, error) {
	var rep *Report
	err := st.Read(ctx, func(tx *store.Tx) error {
		var err error
		rep, err = Gather(tx, cfg, now)
		return err
	})
	return rep, err
}
