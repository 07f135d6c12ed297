package poller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/deskmail/deskmail/store"
)

// # Several instances
//
// Several deskmail instances may share one database (PostgreSQL, or one
// SQLite file): each folder is polled by exactly one of them at a time.
// Before its first session a folder poller takes the folder's lease in
// the store (store.Tx.AcquireLease: owner, fencing token, expiry), and
// renews it every LeaseTTL/3 while it runs; the others wait and retry
// at that pace, so an instance that dies loses its folders within
// LeaseTTL and another takes them over within LeaseTTL + LeaseTTL/3
// (20s with the default 15s). Every acknowledgement on the server
// (flag, move, delete) is preceded by a commit that checks the token
// (store.Tx.CheckLease); a poller whose lease was taken over fails that
// check and ends without touching the folder again. A clean stop
// releases the leases, so a restart or another instance continues at
// once.

// DefaultLeaseTTL is how long a folder lease holds without renewal.
const DefaultLeaseTTL = 15 * time.Second

// NewInstanceID names one running deskmail: host, process id and a
// random suffix (a restarted process is a new instance).
func NewInstanceID() string {
	host, _ := os.Hostname()
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// acquire waits until the poller holds its folder's lease (true) or
// ctx ends (false).
func (p *folderPoller) acquire(ctx context.Context) (store.Lease, bool) {
	waiting := false
	for {
		var l store.Lease
		var ok bool
		wctx, cancel := writeCtx(ctx)
		err := p.st.Write(wctx, func(tx *store.Tx) (err error) {
			l, ok, err = tx.AcquireLease(p.channel, p.folder, p.opts.Instance, p.opts.Now(), p.opts.LeaseTTL)
			return err
		})
		cancel()
		switch {
		case err != nil:
			p.log.Warn("imap folder lease: cannot take it; will retry", "err", err)
		case ok:
			if waiting {
				p.log.Info("imap folder taken over", "instance", p.opts.Instance, "token", l.Token)
			}
			return l, true
		case !waiting:
			waiting = true
			p.log.Info("imap folder is polled by another instance; waiting for its lease", "holder", l.Owner,
				"expires", l.ExpiresAt)
		}
		if !sleep(ctx, p.opts.LeaseTTL/3) {
			return store.Lease{}, false
		}
	}
}

// hold renews the lease every LeaseTTL/3 until ctx ends; when the lease
// is lost (taken over) or cannot be renewed before it expires, it
// cancels the poller's sessions through lost.
func (p *folderPoller) hold(ctx context.Context, l store.Lease, lost context.CancelCauseFunc) {
	renewed := p.opts.Now()
	for sleep(ctx, p.opts.LeaseTTL/3) {
		wctx, cancel := writeCtx(ctx)
		now := p.opts.Now()
		err := p.st.Write(wctx, func(tx *store.Tx) error { return tx.CheckLease(l, now, p.opts.LeaseTTL) })
		cancel()
		switch {
		case err == nil:
			renewed = now
		case errors.Is(err, store.ErrLeaseLost):
			lost(err)
			return
		case p.opts.Now().Sub(renewed) > p.opts.LeaseTTL*2/3:
			lost(fmt.Errorf("imap folder lease not renewed for %s: %w", p.opts.Now().Sub(renewed).Round(time.Second), err))
			return
		default:
			p.log.Warn("imap folder lease: renewal failed; will retry", "err", err)
		}
	}
}

// fence is the commit before an acknowledgement: it fails (ending the
// session) when the poller no longer holds its folder's lease.
func (s *session) fence(ctx context.Context) error {
	l := s.p.lease.Load()
	if l == nil {
		return nil
	}
	now := s.p.opts.Now()
	if err := s.write(ctx, func(tx *store.Tx) error { return tx.CheckLease(*l, now, s.p.opts.LeaseTTL) }); err != nil {
		return s.errorf("before acknowledging: %w", err)
	}
	return nil
}
