package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"sort"
	"strings"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/ingest/archive"
	"github.com/deskmail/deskmail/ingest/poller"
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
	fs := newFlags("import", "--config FILE|--db PATH [--channel NAME [--imap] [--folder F]...] [--password env:NAME|file:PATH] [--sla-clocks] [--json] [SOURCE...]",
		"Imports an existing support history — mbox files, Maildirs, directories of .eml files, IMAP folders (a channel's configured mailbox with --imap or --folder, or imaps://USER@HOST/FOLDER) — as tickets and conversations, oldest first, threading as live mail would, and mails nobody (no confirmation, notification or closing mail). An IMAP mailbox is only read (EXAMINE): nothing on the server is flagged, moved or deleted. Mail from an agent or a support address becomes an agent reply. Safe to run again or after a crash: messages already stored are counted as duplicates. For live mail from an MTA use deskmail ingest.")
	db := fs.String("db", "", "SQLite database `PATH` (created if missing)")
	cfgPath := fs.String("config", "", "configuration `FILE` (default: built-in defaults)")
	channel := fs.String("channel", "", "channel `NAME` of the imported mail (default: from each message's recipients)")
	useIMAP := fs.Bool("imap", false, "import the --channel's IMAP mailbox (its imap section: server, login, OAuth): its folders and its sent_folder")
	var folders listFlag
	fs.Var(&folders, "folder", "with --channel: import this `FOLDER` of the channel's IMAP mailbox (repeatable; implies --imap)")
	password := fs.String("password", "", "the password of imap:// and imaps:// SOURCEs: env:`NAME` or file:PATH")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	clocks := fs.Bool("sla-clocks", false, "start SLA clocks for the imported tickets (by default they have none until live mail or an agent changes them, so old history escalates nothing)")
	sources, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *db == "" && *cfgPath == "" {
		return fmt.Errorf("%w: --config FILE or --db PATH is required", errUsage)
	}
	if len(folders) > 0 {
		*useIMAP = true
	}
	if *useIMAP && *channel == "" {
		return fmt.Errorf("%w: --imap and --folder read the IMAP mailbox of a channel: name it with --channel", errUsage)
	}
	if len(sources) == 0 && !*useIMAP {
		return fmt.Errorf("%w: name at least one mbox file, Maildir, directory or IMAP URL, or --channel NAME --imap", errUsage)
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
	var files []string
	var imapFolders []imapFolder
	opts := poller.Options{Logger: rt.logger}
	for _, src := range sources {
		if !isIMAPURL(src) {
			files = append(files, src)
			continue
		}
		f, err := urlFolder(ctx, rt, src, *password, *channel, opts)
		if err != nil {
			return err
		}
		imapFolders = append(imapFolders, f)
	}
	if *useIMAP {
		fs, err := channelFolders(ctx, rt, *channel, folders, opts)
		if err != nil {
			return err
		}
		imapFolders = append(imapFolders, fs...)
	}
	var entries []importEntry
	var scanErrs []error
	if len(files) > 0 {
		msgs, errs := archive.Scan(files)
		scanErrs = errs
		for i := range msgs {
			entries = append(entries, importEntry{name: msgs[i].Name, date: msgs[i].Date, arch: &msgs[i]})
		}
	}
	for _, e := range scanErrs {
		fmt.Fprintf(stderr, "deskmail import: %v\n", e)
	}
	prog := newProgress(stderr, "messages", 0)
	for _, f := range imapFolders {
		prog.status("listing " + f.label + "…")
		list, folder, err := listFolder(ctx, f)
		if err != nil {
			prog.done()
			return fmt.Errorf("import: %s: %w", f.label, err)
		}
		defer folder.Close()
		for _, l := range list {
			entries = append(entries, importEntry{name: fmt.Sprintf("%s;UID=%d", f.label, l.UID), date: l.Date, id: l.MessageID,
				folder: folder, uid: l.UID, size: l.Size})
		}
	}
	prog.done()
	// Oldest first across every source (an IMAP Sent folder's answers
	// after the questions in INBOX), stable within a source.
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].date.Before(entries[j].date) })
	sum := importSummary{Messages: len(entries), Reasons: map[string]int{}}
	fail := func(name, reason string) {
		sum.Failed++
		sum.Reasons[reason]++
		fmt.Fprintf(stderr, "deskmail import: %s: %s\n", name, reason)
	}
	prog = newProgress(stderr, "messages", len(entries))
	for lo := 0; lo < len(entries); lo += ingestBatch {
		if err := ctx.Err(); err != nil {
			prog.done()
			return err
		}
		hi := min(lo+ingestBatch, len(entries))
		raws, known, err := importBatch(ctx, rt, entries[lo:hi], *channel, *clocks, fail)
		if err != nil {
			prog.done()
			return fmt.Errorf("%w (run the same command again to go on)", err)
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

// importEntry is one message to import: from an archive (arch) or an
// IMAP folder (folder and uid; its Message-ID known before its body).
type importEntry struct {
	name   string
	date   time.Time
	id     string
	arch   *archive.Message
	folder *poller.Folder
	uid    uint32
	size   int64
}

// listFolder opens an IMAP folder read-only and lists its messages.
func listFolder(ctx context.Context, f imapFolder) ([]poller.Listed, *poller.Folder, error) {
	folder, err := f.mb.Folder(ctx, f.folder, f.sent)
	if err != nil {
		return nil, nil, err
	}
	list, err := folder.List(ctx)
	if err != nil {
		folder.Close()
		return nil, nil, err
	}
	return list, folder, nil
}

// importBatch reads one batch of messages and returns those to ingest,
// in the batch's order; messages whose Message-ID is already stored (an
// earlier or interrupted run) are counted in known and not stored again
// — an IMAP message's body is then not even fetched: the store's
// Message-IDs, committed with each batch, are the import's checkpoint.
// Without clocks the messages are History: their tickets get no SLA
// clock (old due dates would escalate every one at once). They are
// Quiet: nothing is mailed, and the team's mail among them (from an
// agent's or a support address) becomes agent replies.
func importBatch(ctx context.Context, rt *runtime, batch []importEntry, channel string, clocks bool,
	fail func(name, reason string)) ([]ingest.Raw, int, error) {
	type item struct {
		e   *importEntry
		raw *ingest.Raw // nil for IMAP until fetched
	}
	var items []item
	var ids []string
	for i := range batch {
		e := &batch[i]
		it := item{e: e}
		if e.arch != nil {
			data, err := e.arch.Read(maxInputBytes)
			if err != nil {
				fail(e.name, err.Error())
				continue
			}
			e.id = headerMessageID(data)
			it.raw = &ingest.Raw{Data: data, Source: ingest.SourceImport, Name: e.name}
		} else if e.size > maxInputBytes {
			fail(e.name, fmt.Sprintf("%d bytes, more than the %d a message may have", e.size, maxInputBytes))
			continue
		}
		items = append(items, it)
		if e.id != "" {
			ids = append(ids, e.id)
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
	known := 0
	keep := items[:0]
	for _, it := range items {
		if _, ok := stored[it.e.id]; ok && it.e.id != "" {
			known++
			continue
		}
		keep = append(keep, it)
	}
	items = keep
	// Fetch the IMAP bodies, one command per folder.
	byFolder := map[*poller.Folder][]uint32{}
	var order []*poller.Folder
	for _, it := range items {
		if f := it.e.folder; f != nil {
			if _, ok := byFolder[f]; !ok {
				order = append(order, f)
			}
			byFolder[f] = append(byFolder[f], it.e.uid)
		}
	}
	type key struct {
		f   *poller.Folder
		uid uint32
	}
	fetched := map[key]*ingest.Raw{}
	lost := map[key]string{}
	for _, f := range order {
		raws, unfetched, err := f.Fetch(ctx, byFolder[f])
		if err != nil {
			return nil, 0, fmt.Errorf("import: %w", err)
		}
		for i := range raws {
			fetched[key{f, raws[i].Envelope.UID}] = &raws[i]
		}
		for _, u := range unfetched {
			lost[key{f, u.UID}] = u.Reason
		}
	}
	now := time.Now()
	var raws []ingest.Raw
	for _, it := range items {
		r := it.raw
		if it.e.folder != nil {
			k := key{it.e.folder, it.e.uid}
			if r = fetched[k]; r == nil {
				fail(it.e.name, cmp.Or(lost[k], "not fetched"))
				continue
			}
			r.Source, r.Name = ingest.SourceImport, it.e.name
		}
		at := it.e.date
		if at.IsZero() || at.After(now) {
			at = now
		}
		r.Channel, r.Quiet, r.History, r.Envelope.ReceivedAt = channel, true, !clocks, at
		raws = append(raws, *r)
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
