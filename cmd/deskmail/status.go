package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
)

// channelStatus is one line of `deskmail status`.
type channelStatus struct {
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
}

type statusReport struct {
	Database string `json:"database"`
	// StoreKind is sqlite or postgresql.
	StoreKind string `json:"store_kind"`
	// Instances are the deskmail instances serving the database (a
	// heartbeat in the last 30s) with the IMAP folders each polls;
	// UnheldFolders are folders whose holder is gone.
	Instances     []instanceStatus `json:"instances"`
	UnheldFolders []string         `json:"unheld_folders"`
	// Store is "ok" when a write probe committed, else "not writable:
	// …" — the same probe and text as /readyz.
	Store    string          `json:"store"`
	Channels []channelStatus `json:"channels"`
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
	IMAPSetAsideMessages []setAsideStatus `json:"imap_set_aside_messages"`
	// Webhooks is the webhook delivery queue.
	Webhooks webhookStatus `json:"webhooks"`
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

// webhookStatus is the webhook delivery queue in deskmail status.
type webhookStatus struct {
	Queued    int    `json:"queued"`
	Retrying  int    `json:"retrying"`
	Failed    int    `json:"failed"`
	Sent      int    `json:"sent"`
	LastError string `json:"last_error"`
}

// setAsideStatus is one mailbox message set aside because its fetch
// kept failing.
type setAsideStatus struct {
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

// runStatus prints each channel's health, the outbox and mail kept raw
// because it failed, so an operator sees a broken mailbox at a glance;
// first, when the database cannot take writes, a line saying so (the
// write probe of /readyz).
func runStatus(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("status", "[--config FILE] [--db PATH] [--json]",
		"Shows each channel's health, the outbox and mail kept raw after a failure.")
	cfgPath := fs.String("config", "", "configuration `FILE`")
	db := fs.String("db", "", "database `PATH` (default: the configured one)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := config.Default()
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	if *db != "" {
		cfg.Database = *db
	}
	if err := requireDatabase(cfg.Database, ""); err != nil {
		return err
	}
	st, err := openDatabase(ctx, cfg, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	rep := statusReport{Database: st.Name(), StoreKind: st.Kind(), Store: "ok", Channels: []channelStatus{}}
	if err := st.ProbeWrite(ctx, probeTimeout); err != nil {
		rep.Store = notWritable(err)
	}
	now := time.Now()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	err = st.Read(ctx, func(tx *store.Tx) error {
		today, err := tx.MessagesSince(midnight)
		if err != nil {
			return err
		}
		for _, ch := range cfg.Channels {
			cs := channelStatus{Channel: ch.Name, Kind: "smtp", Addresses: ch.Addresses, MessagesToday: today[ch.Name], Healthy: true}
			if ch.IMAP != nil {
				cs.Kind = "imap"
				h, err := tx.ChannelHealth(ch.Name)
				if err == nil {
					cs.LastPollAt, cs.LastOKAt, cs.LastError, cs.LastErrorAt, cs.Failures = h.LastPollAt, h.LastOKAt, h.LastError, h.LastErrorAt, h.ConsecutiveFailures
				}
				// A mailbox is healthy when its last poll succeeded.
				cs.Healthy = err == nil && h.ConsecutiveFailures == 0 && h.LastOKAt != nil
			}
			rep.Channels = append(rep.Channels, cs)
		}
		ob, err := tx.OutboxStats()
		if err != nil {
			return err
		}
		rep.Outbox.Queued, rep.Outbox.Retrying, rep.Outbox.Failed, rep.Outbox.Sent, rep.Outbox.Suppressed, rep.Outbox.OldestQueued =
			ob.Queued, ob.Retrying, ob.Failed, ob.Sent, ob.Suppressed, ob.OldestQueued
		if rep.FailedMessages, err = tx.CountRaw("failed"); err != nil {
			return err
		}
		aside, err := tx.IMAPSetAside("")
		if err != nil {
			return err
		}
		rep.IMAPSetAside = len(aside)
		rep.IMAPSetAsideMessages = make([]setAsideStatus, len(aside))
		for i, u := range aside {
			rep.IMAPSetAsideMessages[i] = setAsideStatus{Channel: u.Channel, Folder: u.Mailbox, UIDValidity: u.UIDValidity, UID: u.UID,
				Attempts: u.Attempts, LastError: u.ServerAnswer, SetAsideAt: u.SetAsideAt, MovedTo: u.MovedTo}
		}
		wh, err := tx.WebhookStats()
		if err != nil {
			return err
		}
		rep.Webhooks = webhookStatus{Queued: wh.Queued, Retrying: wh.Retrying, Failed: wh.Failed, Sent: wh.Sent, LastError: wh.LastError}
		if rep.Instances, rep.UnheldFolders, err = instancesView(tx, now); err != nil {
			return err
		}
		return bounceStatus(tx, &rep)
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, rep)
	}
	if rep.Store != "ok" {
		fmt.Fprintf(stdout, "database %s: %s\n\n", rep.Database, rep.Store)
	}
	w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CHANNEL\tKIND\tHEALTH\tTODAY\tLAST POLL\tLAST ERROR")
	for _, c := range rep.Channels {
		health := "ok"
		if !c.Healthy {
			health = "FAILING"
			if c.LastPollAt == nil && c.LastError == "" {
				health = "never polled"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", c.Channel, c.Kind, health, c.MessagesToday, fmtTime(c.LastPollAt), oneLine(c.LastError, 80))
	}
	w.Flush()
	fmt.Fprintf(stdout, "\noutbox: %d queued (%d retrying), %d failed, %d sent, %d suppressed", rep.Outbox.Queued, rep.Outbox.Retrying, rep.Outbox.Failed, rep.Outbox.Sent, rep.Outbox.Suppressed)
	if rep.Outbox.OldestQueued != nil {
		fmt.Fprintf(stdout, "; oldest queued %s ago", time.Since(*rep.Outbox.OldestQueued).Round(time.Second))
	}
	fmt.Fprintf(stdout, "\nwebhooks: %d queued (%d retrying), %d failed, %d sent", rep.Webhooks.Queued, rep.Webhooks.Retrying, rep.Webhooks.Failed, rep.Webhooks.Sent)
	if rep.Webhooks.LastError != "" {
		fmt.Fprintf(stdout, "; last error: %s", oneLine(rep.Webhooks.LastError, 80))
	}
	fmt.Fprintf(stdout, "\nmessages kept raw after a failure: %d\n", rep.FailedMessages)
	fmt.Fprintf(stdout, "instances (%s): %d running", rep.StoreKind, len(rep.Instances))
	for _, in := range rep.Instances {
		fmt.Fprintf(stdout, "\n  %s (pid %d on %s, up since %s): %s", in.ID, in.PID, orDash(in.Host), fmtTime(&in.StartedAt), listOrNone(in.Folders))
	}
	if len(rep.UnheldFolders) > 0 {
		fmt.Fprintf(stdout, "\n  folders without a live holder (taken over within 20s): %s", listOrNone(rep.UnheldFolders))
	}
	fmt.Fprintln(stdout)
	b := rep.Bounces
	fmt.Fprintf(stdout, "delivery reports: %d flagged an address, %d transient, %d proved nothing and flagged nobody; %d contacts flagged bouncing (deskmail contacts list --bouncing)\n",
		b.Flagged, b.Transient, b.Uncorrelated, b.BouncingContacts)
	for _, u := range b.RecentUncorrelated {
		ticket := ""
		if u.TicketID != nil {
			ticket = fmt.Sprintf(", noted on ticket %d", *u.TicketID)
		}
		fmt.Fprintf(stdout, "  bounce %d, %s, from %s, raw message %d%s: %s\n", u.ID, fmtTime(&u.ReceivedAt), orDash(u.FromEmail), derefID(u.RawID), ticket, oneLine(u.Note, 160))
	}
	if rep.IMAPSetAside > 0 {
		fmt.Fprintf(stdout, "mailbox messages the server would not deliver, set aside: %d (see the channel's failed folder)\n", rep.IMAPSetAside)
		w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  CHANNEL\tFOLDER\tUID\tATTEMPTS\tSET ASIDE\tNOW IN\tLAST ERROR")
		for _, m := range rep.IMAPSetAsideMessages {
			in := m.MovedTo
			if in == "" {
				in = m.Folder + " (not moved)"
			}
			fmt.Fprintf(w, "  %s\t%s\t%d\t%d\t%s\t%s\t%s\n", m.Channel, m.Folder, m.UID, m.Attempts, fmtTime(m.SetAsideAt), in, oneLine(m.LastError, 60))
		}
		w.Flush()
	}
	return nil
}

// bounceStatus fills the report's bounces section.
func bounceStatus(tx *store.Tx, rep *statusReport) error {
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

func derefID(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// runBackup writes a consistent copy of the database while deskmail
// keeps running.
func runBackup(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("backup", "--config FILE|--db PATH [--json] DEST",
		"Writes a consistent copy of the database to DEST (a new file), also while deskmail runs.")
	db := fs.String("db", "", "database `PATH`")
	cfgPath := fs.String("config", "", "configuration `FILE`")
	asJSON := fs.Bool("json", false, `print {"backup": DEST, "bytes": N, "seconds": S}`)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: backup --db PATH DEST", errUsage)
	}
	dest := pos[0]
	st, err := openStore(ctx, *db, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	// On a terminal, show the copy growing while VACUUM INTO writes it.
	prog := newProgress(stderr, "", 0)
	start := time.Now()
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if fi, err := os.Stat(dest); err == nil {
					prog.status(fmt.Sprintf("backing up: %s written, %s", byteSize(fi.Size()), time.Since(start).Round(time.Second)))
				}
			}
		}
	}()
	err = st.Backup(ctx, dest)
	close(stop)
	<-watched
	prog.done()
	if err != nil {
		return err
	}
	fi, err := os.Stat(dest)
	if err != nil {
		return fmt.Errorf("backup written but cannot be read back: %w", err)
	}
	took := time.Since(start)
	if *asJSON {
		return writeJSON(stdout, map[string]any{"backup": dest, "bytes": fi.Size(), "seconds": took.Seconds()})
	}
	fmt.Fprintf(stdout, "backup written to %s (%s, in %s)\n", dest, byteSize(fi.Size()), took.Round(time.Millisecond))
	return nil
}
