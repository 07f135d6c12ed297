package main

import (
	"context"
	"os"
	"time"

	"github.com/deskmail/deskmail/ingest/poller"
	"github.com/deskmail/deskmail/store"
)

// heartbeatEvery is how often a serving instance refreshes its row in
// the instances table; instanceLive is how old a heartbeat may be for
// deskmail status and /readyz to list the instance as running.
const (
	heartbeatEvery = 5 * time.Second
	instanceLive   = 30 * time.Second
)

// instanceStatus is one running deskmail and the IMAP folders whose
// lease it holds, in deskmail status and /readyz.
type instanceStatus struct {
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

// instancesView lists the live instances with their folders; folders
// whose lease no live instance holds are returned apart (unheld: their
// holder died and no instance has taken them over yet).
func instancesView(tx *store.Tx, now time.Time) (ins []instanceStatus, unheld []string, err error) {
	live, err := tx.Instances(now.Add(-instanceLive))
	if err != nil {
		return nil, nil, err
	}
	leases, err := tx.Leases()
	if err != nil {
		return nil, nil, err
	}
	ins = make([]instanceStatus, len(live))
	byID := map[string]*instanceStatus{}
	for i, in := range live {
		ins[i] = instanceStatus{ID: in.ID, Host: in.Host, PID: in.PID, Version: in.Version, StartedAt: in.StartedAt,
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
		if err := d.st.Write(wctx, func(tx *store.Tx) error { return tx.Heartbeat(d.instance, time.Now()) }); err != nil {
			d.log.Warn("instance heartbeat failed", "err", err.Error())
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
