package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/internal/oneshot"
)

// hugeHeapAhead is how much Go heap a batch ingest maps ahead on
// transparent huge pages (oneshot.HugeHeapAhead): more than the heap
// two batches in flight grow to at ingestGCPercent (peak RSS ~140 MB
// for 5,000 gen-mails).
const hugeHeapAhead = 128 << 20

// ingestBatch is how many files one transaction takes.
const ingestBatch = 256

// ingestGCPercent is deskmail ingest's GOGC (see runIngest).
const ingestGCPercent = 400

func runIngest(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("ingest", "--db PATH [--config FILE] [--recipient ADDR]... [--sender ADDR] [FILE...|-]",
		"Ingests each message (files, or stdin with - or no FILE) through the whole pipeline and prints one JSON line per message; outbound mail is queued in the outbox. Creates the database if needed. An MTA passes the envelope with --recipient and --sender.")
	db := fs.String("db", "", "SQLite database `PATH` (created if missing)")
	cfgPath := fs.String("config", "", "configuration `FILE` (default: built-in defaults; the first To address is the support address)")
	var rcpts listFlag
	fs.Var(&rcpts, "recipient", "envelope recipient `ADDR` (repeatable); the channel is the first one's, and an address that is no support address exits 67")
	sender := fs.String("sender", "", "envelope sender `ADDR` (empty for a bounce)")
	files, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *db == "" && *cfgPath == "" {
		return fmt.Errorf("%w: --db PATH is required", errUsage)
	}
	if len(files) == 0 {
		files = []string{"-"}
	}
	// A batch of at least one transaction's files runs on huge pages
	// (see execWithHugeMalloc and oneshot.HugeHeapAhead).
	hugePages := len(files) >= ingestBatch && ownsProcess(ctx)
	if hugePages {
		// A batch's SQLite page cache on huge pages: this program
		// again, now, before anything is opened or read.
		if err := execWithHugeMalloc(); err != nil {
			fmt.Fprintf(stderr, "deskmail ingest: %v (going on without)\n", err)
		}
	}
	if len(files) > 1 && ownsProcess(ctx) {
		// main left the signals to us (see stopOnSignal): a batch
		// stops at its next message and reports what it stored.
		var stop context.CancelFunc
		ctx, stop = stopOnSignal(ctx)
		defer stop()
	}
	if ownsProcess(ctx) && os.Getenv("GOGC") == "" {
		// A batch keeps two batches of mail live (one parsing, one
		// committing) and allocates a few times that per message: at
		// the default GOGC=100 the collector ran every few dozen mails
		// and was 17% of the instructions of a batch ingest; 400 cut
		// 9% of them for 45 MB more of peak RSS on 5,000 gen-mails
		// (94 -> 138 MB). GOGC, when set, wins.
		debug.SetGCPercent(ingestGCPercent)
	}
	if len(files) > 1 && ownsProcess(ctx) && os.Getenv("GOMAXPROCS") == "" {
		// internal/oneshot started the process on one P, right for one
		// message (an MTA's pipe); a batch parses beside its commits.
		goruntime.SetDefaultGOMAXPROCS()
	}
	if hugePages {
		// The heap a batch grows into, on huge pages too (batch ingest,
		// 5,000 gen-mails into 100,000 tickets: 28,000 page faults ->
		// 3,400 with execWithHugeMalloc).
		oneshot.HugeHeapAhead(hugeHeapAhead)
	}
	rt, err := openRuntime(ctx, *cfgPath, *db, *cfgPath == "", stderrLogger())
	var problems config.Problems
	switch {
	case errors.As(err, &problems):
		// Temporary, not EX_CONFIG: an MTA bounces mail on 78, and a
		// configuration typo must not bounce customers' mail.
		return withStatus(exTempFail, err)
	case err != nil:
		return withStatus(exTempFail, err)
	}
	defer rt.Close()
	channel, err := envelopeChannel(rt, rcpts)
	if err != nil {
		// EX_NOUSER: the MTA bounces the mail for this recipient.
		return withStatus(exNoUser, err)
	}

	// Files are read and parsed one batch ahead while the previous
	// batch commits: parsing and storing each take one core.
	type prepared struct {
		batch *ingest.Batch
		read  int
	}
	var unreadable atomic.Int64
	batches := make(chan prepared, 1)
	produce := func() {
		defer close(batches)
		var raws []ingest.Raw
		send := func() bool {
			if len(raws) == 0 {
				return true
			}
			b := prepared{batch: rt.pipeline.Prepare(raws), read: len(raws)}
			raws = nil
			select {
			case batches <- b:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, name := range files {
			data, arrived, err := readMessage(name, stdin)
			if err != nil {
				unreadable.Add(1)
				fmt.Fprintf(stderr, "deskmail ingest: %v\n", err)
				continue
			}
			raws = append(raws, ingest.Raw{Data: data, Source: ingest.SourcePipe, Name: name, Channel: channel,
				Envelope: ingest.Envelope{MailFrom: *sender, RcptTo: rcpts, ReceivedAt: arrived}})
			if len(raws) >= ingestBatch && !send() {
				return
			}
		}
		send()
	}
	if len(files) == 1 {
		// One message (an MTA's pipe): its one batch fits in the
		// channel, and is read and parsed on this goroutine; a reader
		// goroutine would need a second thread beside the main one,
		// which internal/oneshot locks.
		produce()
	} else {
		go produce()
	}

	enc := json.NewEncoder(stdout)
	prog := newProgress(stderr, "messages", len(files))
	defer prog.done()
	notStored := 0
	var commitErr error
	for b := range batches {
		if commitErr != nil {
			notStored += b.read // drain the reader; nothing more is committed
			continue
		}
		results, err := rt.pipeline.Commit(ctx, b.batch)
		prog.add(len(results))
		for _, res := range results {
			if res.Err != nil {
				notStored++
				fmt.Fprintf(stderr, "deskmail ingest: %s: %v\n", res.Name, res.Err)
				continue
			}
			if err := enc.Encode(res); err != nil {
				commitErr = err
			}
		}
		if err != nil {
			commitErr = err
		}
	}
	failed := notStored + int(unreadable.Load())
	if failed > 0 {
		err := fmt.Errorf("%d of %d messages were not stored", failed, len(files))
		if notStored > 0 {
			// The store failed: the sender should retry later.
			return withStatus(exTempFail, err)
		}
		return withStatus(exNoInput, err)
	}
	return nil
}

// envelopeChannel checks the envelope recipients an MTA passed with
// --recipient the way the SMTP receiver checks RCPT TO (the same
// threading.Addresses lookup: support addresses, their aliases and
// plus-addressed reply tokens) and returns the channel of the first,
// as the receiver does for a transaction; "" when there are none (the
// pipeline then chooses from the headers).
func envelopeChannel(rt *runtime, rcpts []string) (string, error) {
	channel := ""
	for _, r := range rcpts {
		ch, ok := rt.pipeline.Addresses().Lookup(r)
		if !ok {
			return "", fmt.Errorf("recipient %s is not a support address of %s", r, configName(rt.cfg))
		}
		if channel == "" {
			channel = ch
		}
	}
	return channel, nil
}

// configName names where the support addresses come from, for errors.
func configName(c *config.Config) string {
	if c.File == "" {
		return "the built-in configuration (give --config)"
	}
	return c.File
}

// listFlag is a repeatable flag (addresses, folders).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Set adds one value; an empty one is refused.
func (l *listFlag) Set(v string) error {
	v = strings.TrimSpace(v)
	if v == "" {
		return errors.New("empty value")
	}
	*l = append(*l, v)
	return nil
}
