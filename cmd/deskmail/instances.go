package main

import (
	"context"
	"os"
	"time"

	"github.com/deskmail/deskmail/ingest/poller"
	"github.com/deskmail/deskmail/opsreport"
	"github.com/deskmail/deskmail/store"
)

// heartbeatEvery is how often a serving instance refreshes its row in
// the instances table; instanceLive is how old a heartbeat may be for
// deskmail status and /readyz to list the instance as running.
const (
	heartbeatEvery = 5 * time.Second
	instanceLive   = opsreport.InstanceLive
)

// instanceStatus is one running deskmail and the IMAP folders whose
// lease it holds (opsreport's, shared with the web console).
type instanceStatus = opsreport.Instance

// instancesView lists the live instances with their folders, and the
// folders no live instance holds.
func instancesView(tx *store.Tx, now time.Time) ([]instanceStatus, []string, error) {
	return opsreport.Instances(tx, now)
}

// newInstance describes this process for the instances table.
func newInstance() store.Instance {
	host, _ := os.Hostname()
	return store.Instance{ID: poller.NewInstanceID(), Host: host, PID: os.Getpid(), Version: buildVersion().Version, StartedAt: time.Now()}
}

// heartbeat keeps this instance's row fresh until ctx ends, then marks
// it stopped and releases its folder leases.
func (d *daemon) heartbeat(ctx context.Context) {
	beat := func() {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		released := 0
		err := d.st.Write(wctx, func(tx *store.Tx) error {
			now := time.Now()
			if err := tx.Heartbeat(d.instance, now); err != nil {
				return err
			}
			// Mail claimed by an instance that died mid-delivery is
			// due again now, for this one or another to send.
			var err error
			released, err = tx.ReleaseDeadClaims(now)
			return err
		})
		if err != nil {
			d.log.Warn("instance heartbeat failed", "err", err.Error())
			return
		}
		if released > 0 {
			d.log.Info("outbox mail claimed by a stopped instance released", "mails", released)
			d.kick()
		}
	}
	beat()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			beat()
		}
	}
}

// stopInstance records a clean stop (after the pollers stopped).
func (d *daemon) stopInstance() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.st.Write(ctx, func(tx *store.Tx) error { return tx.StopInstance(d.instance.ID, time.Now()) }); err != nil {
		d.log.Warn("instance stop not recorded", "err", err.Error())
	}
}
