package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest/poller"
	"github.com/deskmail/deskmail/store"
)

// runChannels is `deskmail channels test NAME --config FILE`.
func runChannels(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runGroup(ctx, "channels", []subcommand{
		{"test", "channels test NAME --config FILE [--json] [-v]   check an IMAP channel's mailbox", func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
			return channelsTest(ctx, args, stdout, stderr)
		}},
	}, args, stdin, stdout, stderr)
}

// channelsTest connects to a channel's IMAP server, authenticates,
// looks at the watched folders (STATUS only: nothing on the server
// changes) and prints the capabilities that matter to deskmail (IDLE,
// MOVE, UIDPLUS) and each folder's counts. On failure it prints what
// went wrong as one plain sentence (poller.Explain) and exits 1; with
// -v the technical error follows.
func channelsTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("channels test", "NAME --config FILE [--json] [-v]",
		"Logs in to an IMAP channel's mailbox and reports its capabilities and folder counts, or what is wrong in one sentence. Nothing on the server changes.")
	cfgPath := fs.String("config", "", "configuration `FILE` (required)")
	db := fs.String("db", "", "database `PATH` for OAuth channels (default: the configured one)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this `DURATION`")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	verbose := fs.Bool("v", false, "print the technical error after the explanation")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *cfgPath == "" {
		return fmt.Errorf("%w: channels test NAME --config FILE", errUsage)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return withStatus(exConfig, err)
	}
	var ch *config.ChannelConfig
	var names []string
	for i := range cfg.Channels {
		if cfg.Channels[i].IMAP != nil {
			names = append(names, cfg.Channels[i].Name)
		}
		if cfg.Channels[i].Name == pos[0] {
			ch = &cfg.Channels[i]
		}
	}
	switch {
	case ch == nil:
		return fmt.Errorf("%w: no channel named %q in %s (IMAP channels: %s)", errUsage, pos[0], *cfgPath, listOrNone(names))
	case ch.IMAP == nil:
		return fmt.Errorf("%w: channel %q has no imap section: it receives mail by SMTP only (IMAP channels: %s)", errUsage, ch.Name, listOrNone(names))
	}

	// Only OAuth channels need the database: a refresh token the
	// provider rotates during the probe must be kept.
	var st *store.Store
	if ch.IMAP.OAuth != nil {
		if *db != "" {
			cfg.Database = *db
		}
		if st, err = openDatabase(ctx, cfg, store.Options{}); err != nil {
			return fmt.Errorf("open the database for the OAuth token: %w", err)
		}
		defer st.Close()
	}

	pctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, perr := poller.Probe(pctx, ch, st, poller.Options{})
	if *asJSON {
		out := struct {
			*poller.ProbeReport
			OK          bool   `json:"ok"`
			Explanation string `json:"explanation"`
			Error       string `json:"error"`
		}{ProbeReport: rep, OK: perr == nil, Explanation: poller.Explain(perr)}
		if rep == nil {
			out.ProbeReport = &poller.ProbeReport{Channel: ch.Name}
		}
		if perr != nil {
			out.Error = perr.Error()
		}
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
		if perr != nil {
			return errReported
		}
		return nil
	}
	if rep != nil {
		fmt.Fprintf(stdout, "channel %s: %s (tls: %s)\n", rep.Channel, rep.Server, orDash(rep.TLS))
		if len(rep.Capabilities) > 0 {
			fmt.Fprintf(stdout, "capabilities: IDLE %s, MOVE %s, UIDPLUS %s\n", yesNo(rep.IDLE), yesNo(rep.Move), yesNo(rep.UIDPlus))
			fmt.Fprintf(stdout, "  (all: %s)\n", strings.Join(rep.Capabilities, " "))
		}
		if len(rep.Folders) > 0 {
			w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "FOLDER\tMESSAGES\tUNSEEN\tUIDVALIDITY\tUIDNEXT")
			for _, f := range rep.Folders {
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", f.Name, f.Messages, f.Unseen, f.UIDValidity, f.UIDNext)
			}
			w.Flush()
		}
	}
	if perr != nil {
		fmt.Fprintf(stderr, "deskmail channels test: %s: %s\n", ch.Name, poller.Explain(perr))
		if *verbose {
			fmt.Fprintf(stderr, "  error: %v\n", perr)
		}
		return errReported
	}
	fmt.Fprintf(stdout, "ok: %s can log in and read its folders\n", ch.Name)
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
