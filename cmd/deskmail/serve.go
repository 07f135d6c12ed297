package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest/receiver"
)

// runServe runs the daemon: `deskmail serve [--config FILE]`.
//
// Without --config it runs on config.Default(): SQLite deskmail.db in
// the current directory, SMTP on 127.0.0.1:2525, one channel for
// support@localhost. The configuration is validated first and every
// problem is printed; the daemon does not start with any.
//
// Start-up order: open the store, sync the configuration into it and
// build the pipeline (openRuntime), start the group committer, then the
// sources (the SMTP receiver). Shutdown on SIGINT/SIGTERM (ctx) runs
// the other way: sources stop first — the receiver finishes the
// messages inside DATA — and only then does the group committer stop,
// so every message a source is still waiting on gets committed and
// acknowledged. Exit status 0 after a clean shutdown.
func runServe(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration `FILE` (default: built-in defaults)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}

	cfg := config.Default()
	if *cfgPath != "" {
		if cfg, err = config.Load(*cfgPath); err != nil {
			var ps config.Problems
			if errors.As(err, &ps) {
				for _, p := range ps {
					fmt.Fprintf(stderr, "deskmail serve: %s\n", p)
				}
				fmt.Fprintf(stderr, "deskmail serve: %d problem(s) in the configuration; not starting\n", len(ps))
				return errReported
			}
			return err
		}
	}
	logger, err := serveLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}

	rt, err := openRuntime(ctx, *cfgPath, "", false, logger)
	if err != nil {
		return err
	}
	defer rt.Close()
	cfg = rt.cfg

	fmt.Fprintf(stdout, "deskmail: database %s\n", cfg.Database)
	for _, ch := range cfg.Channels {
		fmt.Fprintf(stdout, "deskmail: channel %s accepts mail for %s\n", ch.Name, strings.Join(ch.Addresses, ", "))
	}

	// The group committer outlives the sources: it stops only after
	// they have returned (see below).
	pctx, stopPipeline := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPipeline()
	var pipeWG sync.WaitGroup
	pipeWG.Go(func() {
		if err := rt.pipeline.Run(pctx); err != nil {
			logger.Error("pipeline stopped", "err", err)
		}
	})

	// Sources: everything that submits to the pipeline.
	var (
		srcWG   sync.WaitGroup
		errMu   sync.Mutex
		srcErrs []error
	)
	srcCtx, stopSources := context.WithCancel(ctx)
	defer stopSources()
	source := func(name string, run func(context.Context) error) {
		srcWG.Go(func() {
			if err := run(srcCtx); err != nil {
				logger.Error(name+" stopped", "err", err)
				errMu.Lock()
				srcErrs = append(srcErrs, fmt.Errorf("%s: %w", name, err))
				errMu.Unlock()
				// One source failing (a port in use) stops the daemon:
				// running half-configured would hide the problem.
				stopSources()
			}
		})
	}

	if cfg.SMTP.Disabled {
		fmt.Fprintln(stdout, "deskmail: SMTP receiver disabled")
	} else {
		srv, err := receiver.New(receiver.Options{
			Config:    cfg.SMTP,
			Agents:    cfg.Agents,
			Addresses: rt.pipeline.Addresses(),
			Submitter: rt.pipeline,
			Logger:    logger,
			OnListen: func(a net.Addr, implicitTLS bool) {
				kind := "SMTP"
				if implicitTLS {
					kind = "SMTP (implicit TLS)"
				}
				fmt.Fprintf(stdout, "deskmail: %s listening on %s\n", kind, a)
			},
		})
		if err != nil {
			return err
		}
		source("smtp receiver", srv.ListenAndServe)
	}
	// TODO(outbound, imap): start the outbox worker
	// (outbound.New(cfg, rt.signer) then (*Outbox).Worker(st, logger).Run(ctx))
	// and the IMAP pollers here once those packages expose them; the
	// pollers are sources (source(...)), the worker may stop with ctx.

	logger.Info("deskmail serving", "database", cfg.Database)
	srcWG.Wait()
	stopPipeline()
	pipeWG.Wait()
	if len(srcErrs) > 0 {
		return errors.Join(srcErrs...)
	}
	logger.Info("deskmail stopped")
	return nil
}

// serveLogger builds the daemon's logger from the log configuration.
func serveLogger(lc config.LogConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lc.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: %w", lc.Level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
