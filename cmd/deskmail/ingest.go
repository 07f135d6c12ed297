package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
)

// ingestBatch is how many files one transaction takes.
const ingestBatch = 256

func runIngest(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	db := fs.String("db", "", "SQLite database `PATH` (created if missing)")
	cfgPath := fs.String("config", "", "configuration `FILE` (default: built-in defaults; the first To address is the support address)")
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

	enc := json.NewEncoder(stdout)
	failed, notStored := 0, 0
	var batch []ingest.Raw
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		results, err := rt.pipeline.Ingest(ctx, batch)
		for _, res := range results {
			if res.Err != nil {
				failed++
				notStored++
				fmt.Fprintf(stderr, "deskmail ingest: %s: %v\n", res.Name, res.Err)
				continue
			}
			if err := enc.Encode(res); err != nil {
				return err
			}
		}
		batch = batch[:0]
		if err != nil && len(results) == 0 {
			return err
		}
		return nil
	}
	for _, name := range files {
		data, arrived, err := readMessage(name, stdin)
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "deskmail ingest: %v\n", err)
			continue
		}
		batch = append(batch, ingest.Raw{Data: data, Source: ingest.SourcePipe, Name: name,
			Envelope: ingest.Envelope{ReceivedAt: arrived}})
		if len(batch) >= ingestBatch {
			if err := flush(); err != nil {
				return withStatus(exTempFail, err)
			}
		}
	}
	if err := flush(); err != nil {
		return withStatus(exTempFail, err)
	}
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
