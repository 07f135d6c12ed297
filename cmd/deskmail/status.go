package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/opsreport"
	"github.com/deskmail/deskmail/store"
)

// statusReport is what `deskmail status --json` prints (the console's
// ops dashboard shows the same report).
type statusReport = opsreport.Report

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
	storeState := "ok"
	if err := st.ProbeWrite(ctx, probeTimeout); err != nil {
		storeState = notWritable(err)
	}
	rep, err := opsreport.Read(ctx, st, cfg, time.Now())
	if err != nil {
		return err
	}
	rep.Database, rep.StoreKind, rep.Store = st.Name(), st.Kind(), storeState
	if *asJSON {
		return writeJSON(stdout, rep)
	}
	if rep.Store != "ok" {
		fmt.Fprintf(stdout, "database %s: %s\n\n", rep.Database, rep.Store)
	}
	w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CHANNEL\tKIND\tHEALTH\tTODAY\tLAST POLL\tOAUTH TOKEN EXPIRES\tLAST ERROR")
	for _, c := range rep.Channels {
		health := c.Health()
		if health == "failing" {
			health = "FAILING"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", c.Channel, c.Kind, health, c.MessagesToday, fmtTime(c.LastPollAt), fmtTime(c.OAuthExpiresAt), oneLine(c.LastError, 80))
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
