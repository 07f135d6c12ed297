package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/ingest/archive"
	"github.com/deskmail/deskmail/store"
)

// importSummary is what `deskmail import` did, printed at the end.
type importSummary struct {
	Messages   int            `json:"messages"`
	Created    int            `json:"tickets_created"`
	Threaded   int            `json:"replies_threaded"`
	Duplicates int            `json:"duplicates"`
	Ignored    int            `json:"ignored"`
	Failed     int            `json:"failed"`
	Reasons    map[string]int `json:"failed_reasons,omitempty"`
	Seconds    float64        `json:"seconds"`
}

func runImport(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("import", "--config FILE|--db PATH [--channel NAME] [--sla-clocks] [--json] SOURCE...",
		"Imports an existing support history — mbox files, Maildirs, directories of .eml files — as tickets and conversations, oldest first, threading as live mail would, and mails nobody (no confirmation, notification or closing mail). Mail from an agent or a support address becomes an agent reply. Safe to run again or after a crash: messages already stored are counted as duplicates. For live mail from an MTA use deskmail ingest.")
	db := fs.String("db", "", "SQLite database `PATH` (created if missing)")
	cfgPath := fs.String("config", "", "configuration `FILE` (default: built-in defaults)")
	channel := fs.String("channel", "", "channel `NAME` of the imported mail (default: from each message's recipients)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	clocks := fs.Bool("sla-clocks", false, "start SLA clocks for the imported tickets (by default they have none until live mail or an agent changes them, so old history escalates nothing)")
	sources, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *db == "" && *cfgPath == "" {
		return fmt.Errorf("%w: --config FILE or --db PATH is required", errUsage)
	}
	if len(sources) == 0 {
		return fmt.Errorf("%w: name at least one mbox file, Maildir or directory", errUsage)
	}
	rt, err := openRuntime(ctx, *cfgPath, *db, *cfgPath == "", stderrLogger())
	if err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			return withStatus(exConfig, err)
		}
		return err
	}
	defer rt.Close()
	if *channel != "" && !hasChannel(rt.cfg, *channel) {
		return fmt.Errorf("%w: no channel %q in %s", errUsage, *channel, configName(rt.cfg))
	}
	start := time.Now()
	msgs, scanErrs := archive.Scan(sources)
	for _, e := range scanErrs {
		fmt.Fprintf(stderr, "deskmail import: %v\n", e)
	}
	sum := importSummary{Messages: len(msgs), Reasons: map[string]int{}}
	fail := func(name, reason string) {
		sum.Failed++
		sum.Reasons[reason]++
		fmt.Fprintf(stderr, "deskmail import: %s: %s\n", name, reason)
	}
	prog := newProgress(stderr, "messages", len(msgs))
	for lo := 0; lo < len(msgs); lo += ingestBatch {
		if err := ctx.Err(); err != nil {
			prog.done()
			return err
		}
		hi := min(lo+ingestBatch, len(msgs))
		raws, known, err := importBatch(ctx, rt, msgs[lo:hi], *channel, *clocks, fail)
		if err != nil {
			prog.done()
			return err
		}
		sum.Duplicates += known
		if len(raws) > 0 {
			results, err := rt.pipeline.Ingest(ctx, raws)
			if err != nil {
				prog.done()
				return fmt.Errorf("import: %w (run the same command again to go on)", err)
			}
			for _, r := range results {
				switch r.Action {
				case ingest.ActionCreated, ingest.ActionFollowupCreated:
					sum.Created++
				case ingest.ActionAppended, ingest.ActionReopened:
					sum.Threaded++
				case ingest.ActionDuplicate:
					sum.Duplicates++
				case ingest.ActionIgnored:
					if strings.Contains(r.Reason, "parse") || strings.Contains(r.Reason, "not mail") || strings.Contains(r.Reason, "empty") || strings.Contains(r.Reason, "threading failed") {
						fail(r.Name, "kept raw: "+r.Reason)
					} else {
						sum.Ignored++
					}
				default:
					sum.Ignored++
				}
			}
		}
		prog.add(hi - lo)
	}
	prog.done()
	sum.Seconds = time.Since(start).Seconds()
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(sum); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "imported %d messages in %.1fs: %d tickets created, %d replies threaded, %d duplicates (already stored), %d ignored, %d failed\n",
			sum.Messages, sum.Seconds, sum.Created, sum.Threaded, sum.Duplicates, sum.Ignored, sum.Failed)
		for reason, n := range sum.Reasons {
			fmt.Fprintf(stdout, "  %d failed: %s\n", n, reason)
		}
	}
	if sum.Failed > 0 || len(scanErrs) > 0 {
		return withStatus(exDataErr, fmt.Errorf("%d messages failed, %d sources unreadable", sum.Failed, len(scanErrs)))
	}
	return nil
}

// importBatch reads one batch of archive messages and returns those to
// ingest; messages whose Message-ID is already stored (an earlier or
// interrupted run) are counted in known and not stored again.
// Without clocks the messages are History: their tickets get no SLA
// clock (old due dates would escalate every one at once). They are
// Quiet: nothing is mailed, and the team's mail among them (from an
// agent's or a support address) becomes agent replies.
func importBatch(ctx context.Context, rt *runtime, msgs []archive.Message, channel string, clocks bool,
	fail func(name, reason string)) ([]ingest.Raw, int, error) {
	type item struct {
		raw ingest.Raw
		id  string
	}
	var items []item
	var ids []string
	for _, m := range msgs {
		data, err := m.Read(maxInputBytes)
		if err != nil {
			fail(m.Name, err.Error())
			continue
		}
		id := headerMessageID(data)
		at := m.Date
		if at.IsZero() || at.After(time.Now()) {
			at = time.Now()
		}
		items = append(items, item{id: id, raw: ingest.Raw{Data: data, Source: ingest.SourceImport, Name: m.Name, Channel: channel,
			Quiet: true, History: !clocks, Envelope: ingest.Envelope{ReceivedAt: at}}})
		if id != "" {
			ids = append(ids, id)
		}
	}
	stored := map[string]store.MessageRef{}
	if len(ids) > 0 {
		err := rt.st.Read(ctx, func(tx *store.Tx) error {
			var err error
			stored, err = tx.LookupMessageIDs(ids)
			return err
		})
		if err != nil {
			return nil, 0, fmt.Errorf("import: %w", err)
		}
	}
	var raws []ingest.Raw
	known := 0
	for _, it := range items {
		if _, ok := stored[it.id]; ok && it.id != "" {
			known++
			continue
		}
		raws = append(raws, it.raw)
	}
	return raws, known, nil
}

// headerMessageID reads a message's Message-ID (without <>), "" when
// missing or unreadable; the pipeline's parser decides everything else.
func headerMessageID(data []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	id := strings.TrimSpace(m.Header.Get("Message-Id"))
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	if strings.ContainsAny(id, " <>") {
		id = ""
	}
	return id
}

// hasChannel reports whether the configuration declares channel name.
func hasChannel(c *config.Config, name string) bool {
	for _, ch := range c.Channels {
		if ch.Name == name {
			return true
		}
	}
	return false
}
