package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/deskmail/deskmail/api"
	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/ingest/poller"
	"github.com/deskmail/deskmail/ingest/receiver"
	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/outbound"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// runServe runs the daemon: `deskmail serve [--config FILE]`.
//
// Without --config it runs on config.Default(): SQLite deskmail.db in
// the current directory, SMTP on 127.0.0.1:2525, one channel for
// support@localhost, HTTP (API, /healthz, /readyz, /metrics) on
// 127.0.0.1:8080. The configuration is validated first and every
// problem is printed; the daemon does not start with any.
//
// Start-up: open the store, sync the configuration into it and build
// the pipeline, then start the group committer, the outbox worker and
// the sources — the SMTP receiver, the IMAP pollers and the HTTP API.
//
// Shutdown on SIGINT/SIGTERM (ctx) runs the other way: the sources stop
// first (the receiver finishes the messages inside DATA, the pollers
// their batch, the HTTP server its requests), then the group committer,
// so every message a source is still waiting on is committed and
// acknowledged; the outbox worker stops last. Exit status 0 after a
// clean shutdown; a source that cannot start (a port in use) stops the
// whole daemon with status 1.
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

	d, err := newDaemon(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer d.rt.Close()

	fmt.Fprintf(stdout, "deskmail: database %s\n", cfg.Database)
	for _, ch := range cfg.Channels {
		fmt.Fprintf(stdout, "deskmail: channel %s accepts mail for %s\n", ch.Name, strings.Join(ch.Addresses, ", "))
	}
	return d.run(ctx, stdout)
}

// daemon is what `deskmail serve` runs.
type daemon struct {
	rt      *runtime
	worker  *outbound.Worker
	metrics *metrics.Metrics
	log     *slog.Logger
}

// newDaemon opens the store and builds the pipeline like openRuntime,
// with what only the daemon has: metrics, and the outbox worker kicked
// after every commit so confirmations leave at once.
func newDaemon(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*daemon, error) {
	st, err := store.Open(ctx, cfg.Database, store.Options{})
	if err != nil {
		return nil, err
	}
	d := &daemon{rt: &runtime{cfg: cfg, st: st, logger: logger}, metrics: metrics.New(), log: logger}
	fail := func(err error) (*daemon, error) {
		st.Close()
		return nil, err
	}
	secret, err := tokenSecret(ctx, cfg, st)
	if err != nil {
		return fail(err)
	}
	d.rt.signer = threading.NewSigner(secret, cfg.Threading.TokenTTL.Duration)
	env := ingest.Env{
		Config:      cfg,
		Signer:      d.rt.signer,
		Logger:      logger,
		Metrics:     d.metrics,
		AfterCommit: func() { d.worker.Kick() },
	}
	if err := wireOutbound(d.rt, &env); err != nil {
		return fail(err)
	}
	d.worker = d.rt.outbox.Worker(st, logger)
	if d.rt.pipeline, err = ingest.NewPipeline(ctx, st, env); err != nil {
		return fail(err)
	}
	return d, nil
}

// run serves until ctx ends (see runServe for the order).
func (d *daemon) run(ctx context.Context, stdout io.Writer) error {
	cfg, logger := d.rt.cfg, d.log
	stdout = &lockedWriter{w: stdout}

	// The group committer and the outbox worker outlive the sources.
	pctx, stopPipeline := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPipeline()
	wctx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	var pipeWG, workerWG sync.WaitGroup
	pipeWG.Go(func() {
		if err := d.rt.pipeline.Run(pctx); err != nil {
			logger.Error("pipeline stopped", "err", err)
		}
	})
	workerWG.Go(func() {
		if err := d.worker.Run(wctx); err != nil {
			logger.Error("outbox worker stopped", "err", err)
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
	// One source failing stops the daemon: running half-configured
	// would hide the problem.
	failed := func(name string, err error) {
		logger.Error(name+" stopped", "err", err)
		errMu.Lock()
		srcErrs = append(srcErrs, fmt.Errorf("%s: %w", name, err))
		errMu.Unlock()
		stopSources()
	}
	source := func(name string, run func(context.Context) error) {
		srcWG.Go(func() {
			if err := run(srcCtx); err != nil {
				failed(name, err)
			}
		})
	}

	if cfg.SMTP.Disabled {
		fmt.Fprintln(stdout, "deskmail: SMTP receiver disabled")
	} else {
		srv, err := receiver.New(receiver.Options{
			Config:    cfg.SMTP,
			Agents:    cfg.Agents,
			Addresses: d.rt.pipeline.Addresses(),
			Submitter: d.rt.pipeline,
			Logger:    logger,
			Metrics:   d.metrics,
			OnListen: func(a net.Addr, implicitTLS bool) {
				kind := "SMTP"
				if implicitTLS {
					kind = "SMTP (implicit TLS)"
				}
				fmt.Fprintf(stdout, "deskmail: %s listening on %s\n", kind, a)
			},
		})
		if err != nil {
			failed("smtp receiver", err)
		} else {
			source("smtp receiver", srv.ListenAndServe)
		}
	}

	pollers, err := poller.StartPollers(srcCtx, cfg, d.rt.st, d.rt.pipeline, poller.Options{Logger: logger})
	if err != nil {
		failed("imap pollers", err)
	} else {
		if f := pollers.Folders(); len(f) > 0 {
			fmt.Fprintf(stdout, "deskmail: IMAP polling %s\n", strings.Join(f, ", "))
		}
		srcWG.Go(pollers.Wait)
	}

	apiHandler, err := api.New(api.Options{Store: d.rt.st, Pipeline: d.rt.pipeline, Config: cfg, Logger: logger, Kick: d.worker.Kick})
	if err != nil {
		failed("http api", err)
	} else {
		mux := healthMux(func() *config.Config { return cfg }, d.rt.st, d.metrics, apiHandler)
		source("http server", func(ctx context.Context) error {
			return serveHTTP(ctx, cfg.HTTP.Listen, mux, stdout, logger)
		})
	}

	logger.Info("deskmail serving", "database", cfg.Database)
	srcWG.Wait()
	stopPipeline()
	pipeWG.Wait()
	stopWorker()
	workerWG.Wait()
	if len(srcErrs) > 0 {
		return errors.Join(srcErrs...)
	}
	logger.Info("deskmail stopped")
	return nil
}

// serveHTTP serves the API, health and metrics until ctx ends, then
// lets requests in progress finish (at most 10 seconds).
func serveHTTP(ctx context.Context, addr string, h http.Handler, stdout io.Writer, logger *slog.Logger) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	fmt.Fprintf(stdout, "deskmail: HTTP listening on %s\n", ln.Addr())
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// lockedWriter serialises writes from the goroutines that report
// their listen addresses.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
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
