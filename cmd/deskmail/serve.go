package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/deskmail/deskmail/api"
	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/console"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/ingest/poller"
	"github.com/deskmail/deskmail/ingest/receiver"
	"github.com/deskmail/deskmail/internal/heapgoal"
	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/outbound"
	"github.com/deskmail/deskmail/sla"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/webhook"
)

// runServe runs the daemon: `deskmail serve [--config FILE]
// [--smtp-listen ADDR] [--http-listen ADDR]`.
//
// Without --config it runs on config.Default(): SQLite deskmail.db in
// the current directory, SMTP on 127.0.0.1:2525, one channel for
// support@localhost, HTTP (API, /healthz, /readyz, /metrics) on
// 127.0.0.1:8080. --smtp-listen and --http-listen override the listen
// addresses of the configuration (or of the defaults). The
// configuration is validated first and every problem is printed; the
// daemon does not start with any.
//
// Start-up: open the store, sync the configuration into it and build
// the pipeline, then start the group committer, the outbox worker and
// the sources — the SMTP receiver, the IMAP pollers and the HTTP API.
//
// SIGHUP reloads the configuration file (see daemon.reload): what can
// change live is applied, what cannot is logged as needing a restart,
// and a file with problems is refused — the running configuration is
// kept and every problem is logged as FILE:LINE: text.
//
// Shutdown on SIGINT/SIGTERM (ctx) runs the other way: the sources stop
// first (the receiver finishes the messages inside DATA, the pollers
// their batch, the HTTP server its requests), then the group committer,
// so every message a source is still waiting on is committed and
// acknowledged; the outbox worker stops last. Exit status 0 after a
// clean shutdown; a source that cannot start (a port in use) stops the
// whole daemon with status 1.
// heapHeadroom is what the Go heap may hold beyond smtp.max_memory
// before the collector works harder: the database's caches, the API,
// the IMAP pollers and the outbox.
const heapHeadroom = 96 << 20

// heapPaceEvery is how often the collector's percent follows the live
// heap (internal/heapgoal).
const heapPaceEvery = 100 * time.Millisecond

func runServe(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "[--config FILE] [--db PATH|URL] [--smtp-listen ADDR] [--http-listen ADDR]",
		"Runs the daemon: SMTP receiver, IMAP pollers, outbox worker, HTTP API, /healthz, /readyz and /metrics. SIGHUP reloads the configuration; SIGTERM stops cleanly.")
	var ov overrides
	fs.StringVar(&ov.path, "config", "", "configuration `FILE` (default: built-in defaults)")
	fs.StringVar(&ov.db, "db", "", "database: a SQLite `PATH` or a postgres:// URL, overriding database")
	fs.StringVar(&ov.smtpListen, "smtp-listen", "", "SMTP listen `ADDR`, overriding smtp.listen")
	fs.StringVar(&ov.httpListen, "http-listen", "", "HTTP listen `ADDR`, overriding http.listen")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}

	cfg, err := ov.load()
	if err != nil {
		// The same lines as check-config and a refused reload.
		if printProblems(stderr, ov.path, err) {
			fmt.Fprintln(stderr, "deskmail serve: not starting: fix the configuration (deskmail check-config "+ov.path+")")
			return errReported
		}
		return err
	}
	level := new(slog.LevelVar)
	logger, err := serveLogger(cfg.Log, level, stderr)
	if err != nil {
		return err
	}
	// The Go heap's soft limit follows smtp.max_memory (README,
	// "Memory"): as large mail fills the receiver's budget the
	// collector works harder, instead of letting garbage double the
	// heap. GOMEMLIMIT, when set, wins.
	if os.Getenv("GOMEMLIMIT") == "" && !cfg.SMTP.Disabled {
		debug.SetMemoryLimit(cfg.SMTP.MaxMemory + heapHeadroom)
	}
	tuneMalloc()
	if ownsProcess(ctx) && os.Getenv("GOGC") == "" {
		// The collector paced by the live heap (internal/heapgoal): up
		// to GOGC=400 while it is small, back to 100 as large mail fills
		// it. GOGC, when set, wins.
		pace, stop := context.WithCancel(ctx)
		paced := make(chan struct{})
		go func() {
			defer close(paced)
			heapgoal.Run(pace, heapHeadroom, heapPaceEvery)
		}()
		defer func() { stop(); <-paced }()
	}

	// Catch SIGHUP before anything starts, so an early reload request
	// is not taken for the default action (which ends the process).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// With a JSON log, the error that stops the daemon is logged too
	// (run would print it as a plain line); the exit status stays 1.
	failed := func(err error) error {
		if err == nil || cfg.Log.Format != "json" {
			return err
		}
		logger.Error("deskmail serve stopped", "err", err.Error())
		return withStatus(1, fmt.Errorf("%w: %w", errReported, err))
	}
	d, err := newDaemon(ctx, cfg, ov, logger, level)
	if err != nil {
		return failed(err)
	}
	defer d.st.Close()

	d.announce(stdout, "database "+d.st.Name(), "database", "path", d.st.Name(), "store", d.st.Kind())
	for _, ch := range cfg.Channels {
		d.announce(stdout, fmt.Sprintf("channel %s accepts mail for %s", ch.Name, strings.Join(ch.Addresses, ", ")),
			"channel", "channel", ch.Name, "addresses", ch.Addresses)
	}
	return failed(d.run(ctx, stdout, hup))
}

// announce reports a start-up fact. With log.format text it is a plain
// line on stdout ("deskmail: " + text) as it always was; with json it
// is one log record (msg and attrs) on stderr and stdout stays silent,
// so that everything a log collector reads from deskmail is JSON.
func (d *daemon) announce(stdout io.Writer, text, msg string, attrs ...any) {
	if d.jsonLog {
		d.log.Info(msg, attrs...)
		return
	}
	fmt.Fprintf(stdout, "deskmail: %s\n", text)
}

// overrides is where the configuration comes from and what the
// command line changes in it; a reload applies them again.
type overrides struct {
	path                   string
	db                     string
	smtpListen, httpListen string
}

// load reads the configuration file (defaults without one) and applies
// the command-line overrides.
func (o overrides) load() (*config.Config, error) {
	cfg := config.Default()
	if o.path != "" {
		var err error
		if cfg, err = config.Load(o.path); err != nil {
			return nil, err
		}
	}
	if o.db != "" {
		cfg.Database = o.db
	}
	if o.smtpListen != "" {
		cfg.SMTP.Listen = o.smtpListen
	}
	if o.httpListen != "" {
		cfg.HTTP.Listen = o.httpListen
	}
	return cfg, nil
}

// daemon is what `deskmail serve` runs. The store, the metrics and the
// logger live as long as the process; everything built from the
// configuration is a generation that a reload replaces.
type daemon struct {
	ov overrides
	st *store.Store
	// instance is this process among those sharing the database: the
	// owner of its IMAP folder leases (instances.go).
	instance store.Instance
	metrics  *metrics.Metrics
	log      *slog.Logger
	level    *slog.LevelVar
	// jsonLog: log.format is json, so start-up lines are log records
	// too (see announce).
	jsonLog bool

	// gen is the current generation: new submissions go to its
	// pipeline.
	gen atomic.Pointer[generation]
	// worker is the running outbox worker (Kick goes to it).
	worker atomic.Pointer[outbound.Worker]
	// api serves /api/ with the current generation's pipeline.
	api swapHandler
	// console serves the web console (/) with the current generation's
	// pipeline.
	console swapHandler
	// guard is the API's failed-login limiter, kept across reloads.
	guard *api.AuthGuard

	// Set by run.
	recv    *receiver.Server // nil when the receiver is disabled
	pollers *pollerSet
	// pipeCtx is the parent of every generation's group committer: it
	// outlives the sources (see run).
	pipeCtx context.Context
	pipeWG  sync.WaitGroup
	// workerCtx is the parent of the outbox workers.
	workerCtx  context.Context
	workerStop context.CancelFunc
	workerDone chan struct{}
	// schedStop and schedDone stop and wait for the SLA scheduler.
	schedStop context.CancelFunc
	schedDone chan struct{}
	// hookWorker delivers webhooks (kick wakes it too).
	hookWorker atomic.Pointer[webhook.Worker]
	hookStop   context.CancelFunc
	hookDone   chan struct{}

	// reloadMu serialises reloads.
	reloadMu sync.Mutex
}

// generation is everything built from one configuration: the token
// signer, the outbox (templates and sending switches), the pipeline
// and the API handler.
type generation struct {
	cfg      *config.Config
	outbox   *outbound.Outbox
	pipeline *ingest.Pipeline
	tracker  *sla.Tracker
	hooks    *webhook.Hooks
	api      http.Handler
	console  http.Handler

	// inflight is held for reading by every Submit to this
	// generation's pipeline; retiring takes it for writing, so the
	// group committer stops only once no submission waits on it.
	inflight sync.RWMutex
	retired  bool // guarded by inflight
	stop     context.CancelFunc
	done     chan struct{}
}

// newDaemon opens the store and builds the first generation.
func newDaemon(ctx context.Context, cfg *config.Config, ov overrides, logger *slog.Logger, level *slog.LevelVar) (*daemon, error) {
	st, err := openDatabase(ctx, cfg, store.Options{})
	if err != nil {
		return nil, err
	}
	d := &daemon{ov: ov, st: st, instance: newInstance(), metrics: metrics.New(), log: logger, level: level, jsonLog: cfg.Log.Format == "json",
		guard: api.NewAuthGuard(nil, 0)}
	d.api.m = d.metrics
	d.metrics.ReadStore(d.storeStats)
	g, err := d.newGeneration(ctx, cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	d.gen.Store(g)
	d.api.set(g.api)
	d.console.set(g.console)
	return d, nil
}

// newGeneration syncs cfg into the store (statuses, pipelines,
// channels, agents: ingest.NewPipeline) and builds what depends on
// it. Nothing runs yet.
func (d *daemon) newGeneration(ctx context.Context, cfg *config.Config) (*generation, error) {
	rt, err := buildRuntime(ctx, cfg, d.st, ingest.Env{Logger: d.log, Metrics: d.metrics, AfterCommit: d.kick})
	if err != nil {
		return nil, err
	}
	p := rt.pipeline
	proxies, err := cfg.HTTP.TrustedProxyPrefixes()
	if err != nil {
		return nil, fmt.Errorf("http.trusted_proxies: %w", err)
	}
	h, err := api.New(api.Options{Store: d.st, Pipeline: p, Config: cfg, Logger: d.log, Kick: d.kick, TrustedProxies: proxies,
		Guard: d.guard, Metrics: d.metrics, BaseURL: cfg.HTTP.PublicURL, RateLimit: cfg.HTTP.RateLimit, RoleRateLimits: cfg.HTTP.RoleRateLimits})
	if err != nil {
		return nil, fmt.Errorf("http api: %w", err)
	}
	con, err := console.New(console.Options{Store: d.st, Pipeline: p, Config: cfg, Guard: d.guard, TrustedProxies: proxies,
		SessionTimeout: cfg.HTTP.SessionTimeout.Duration, SecureCookies: strings.HasPrefix(cfg.HTTP.PublicURL, "https://"),
		Logger: d.log, Metrics: d.metrics, Kick: d.kick})
	if err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	return &generation{cfg: cfg, outbox: rt.outbox, pipeline: p, tracker: rt.tracker, hooks: rt.hooks, api: h, console: con}, nil
}

// start runs g's group committer until g is retired.
func (d *daemon) start(g *generation) {
	ctx, cancel := context.WithCancel(d.pipeCtx)
	g.stop, g.done = cancel, make(chan struct{})
	d.pipeWG.Go(func() {
		defer close(g.done)
		if err := g.pipeline.Run(ctx); err != nil {
			d.log.Error("pipeline stopped", "err", err)
		}
	})
}

// retire waits until no submission is in flight on g, then stops its
// group committer. Every message submitted to g has its answer by
// then: none is lost.
func (d *daemon) retire(g *generation) {
	g.inflight.Lock()
	g.retired = true
	g.inflight.Unlock()
	g.stop()
	<-g.done
}

// Submit implements receiver.Submitter through the current
// generation's pipeline; a submission that raced with a reload goes to
// the new one.
func (d *daemon) Submit(ctx context.Context, r ingest.Raw) (ingest.Result, error) {
	for {
		g := d.gen.Load()
		g.inflight.RLock()
		if g.retired {
			g.inflight.RUnlock()
			continue // d.gen already holds its successor
		}
		res, err := g.pipeline.Submit(ctx, r)
		g.inflight.RUnlock()
		return res, err
	}
}

// Ingest implements poller.Ingester through the current generation's
// pipeline (Ingest commits by itself, without the group committer).
func (d *daemon) Ingest(ctx context.Context, raws []ingest.Raw) ([]ingest.Result, error) {
	return d.gen.Load().pipeline.Ingest(ctx, raws)
}

// kick wakes the running outbox worker.
func (d *daemon) kick() {
	if w := d.worker.Load(); w != nil {
		w.Kick()
	}
	if w := d.hookWorker.Load(); w != nil {
		w.Kick()
	}
}

// startWorker runs an outbox worker built from g until the next
// stopWorker.
func (d *daemon) startWorker(g *generation) {
	w := g.outbox.Worker(d.st, d.log).WithMetrics(d.metrics).WithOwner(d.instance.ID)
	ctx, cancel := context.WithCancel(d.workerCtx)
	done := make(chan struct{})
	d.workerStop, d.workerDone = cancel, done
	d.worker.Store(w)
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			d.log.Error("outbox worker stopped", "err", err)
		}
	}()
	w.Kick()
}

// stopWorker stops the running outbox worker and waits for it; mail
// it was delivering stays queued and is retried.
func (d *daemon) stopWorker() {
	if d.workerStop != nil {
		d.workerStop()
		<-d.workerDone
	}
}

// run serves until ctx ends (see runServe for the order); a value on
// hup reloads the configuration.
func (d *daemon) run(ctx context.Context, stdout io.Writer, hup <-chan os.Signal) error {
	cfg, logger := d.gen.Load().cfg, d.log
	stdout = &lockedWriter{w: stdout}

	// The group committers and the outbox worker outlive the sources.
	pctx, stopPipelines := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPipelines()
	d.pipeCtx = pctx
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()
	d.workerCtx = wctx
	d.start(d.gen.Load())
	d.startWorker(d.gen.Load())
	d.startScheduler(d.gen.Load())
	d.startWebhooks(d.gen.Load())

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
		d.announce(stdout, "SMTP receiver disabled", "SMTP receiver disabled")
	} else {
		srv, err := receiver.New(receiver.Options{
			Config:           cfg.SMTP,
			Agents:           cfg.Agents,
			Addresses:        d.gen.Load().pipeline.Addresses(),
			Submitter:        d,
			Logger:           logger,
			Metrics:          d.metrics,
			MaxBufferedBytes: cfg.SMTP.MaxMemory,
			OnListen: func(a net.Addr, implicitTLS bool) {
				kind := "SMTP"
				if implicitTLS {
					kind = "SMTP (implicit TLS)"
				}
				d.announce(stdout, kind+" listening on "+a.String(), kind+" listening", "addr", a.String())
			},
		})
		if err != nil {
			failed("smtp receiver", err)
		} else {
			d.recv = srv
			source("smtp receiver", srv.ListenAndServe)
		}
	}

	beatCtx, stopBeat := context.WithCancel(ctx)
	beatDone := make(chan struct{})
	go func() {
		defer close(beatDone)
		d.heartbeat(beatCtx)
	}()
	d.pollers = newPollerSet(srcCtx, d.st, d, poller.Options{Logger: logger, Metrics: d.metrics, Instance: d.instance.ID})
	if err := d.pollers.apply(cfg); err != nil {
		failed("imap pollers", err)
	} else if f := d.pollers.folders(); len(f) > 0 {
		d.announce(stdout, "IMAP polling "+strings.Join(f, ", "), "IMAP polling", "folders", f)
	}

	mux := healthMux(func() *config.Config { return d.gen.Load().cfg }, d.st, d.metrics, &d.api, &d.console)
	source("http server", func(ctx context.Context) error {
		return serveHTTP(ctx, cfg.HTTP.Listen, mux, func(a net.Addr) {
			d.announce(stdout, "HTTP listening on "+a.String(), "HTTP listening", "addr", a.String())
		}, logger)
	})

	logger.Info("deskmail serving", "database", store.Redact(cfg.Database), "config", d.ov.path)
	srcDone := make(chan struct{})
	go func() {
		srcWG.Wait()
		close(srcDone)
	}()
wait:
	for {
		select {
		case <-hup:
			if srcCtx.Err() == nil {
				d.reload(srcCtx)
			}
		case <-srcDone:
			break wait
		}
	}
	stopSources()
	d.pollers.wait()
	stopBeat()
	<-beatDone
	d.stopInstance()
	d.retire(d.gen.Load())
	stopPipelines()
	d.pipeWG.Wait()
	d.stopScheduler()
	d.stopWebhooks()
	d.stopWorker()
	if len(srcErrs) > 0 {
		return errors.Join(srcErrs...)
	}
	logger.Info("deskmail stopped")
	return nil
}

// storeStats reads the database gauges of /metrics (see
// metrics.ReadStore): the outbox, and mail kept or set aside after a
// failure.
func (d *daemon) storeStats(ctx context.Context) (metrics.StoreStats, error) {
	s := metrics.StoreStats{Conflicts: d.st.Conflicts()}
	err := d.st.Read(ctx, func(tx *store.Tx) error {
		ob, err := tx.OutboxStats()
		if err != nil {
			return err
		}
		s.OutboxQueued, s.OutboxFailed = ob.Queued, ob.Failed
		if ob.OldestQueued != nil {
			s.OutboxOldestQueued = max(0, time.Since(*ob.OldestQueued))
		}
		if s.FailedMessages, err = tx.CountRaw("failed"); err != nil {
			return err
		}
		s.IMAPSetAside, err = tx.CountIMAPSetAside()
		return err
	})
	if err != nil && ctx.Err() == nil {
		d.log.Warn("metrics: reading the database gauges failed", "err", err.Error())
	}
	return s, err
}

// swapHandler serves the API with the handler last set (a reload sets
// a new one while requests in progress finish on the old) and counts
// responses by status code.
type swapHandler struct {
	h atomic.Pointer[http.Handler]
	m *metrics.Metrics
}

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

// ServeHTTP implements http.Handler.
func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	(*s.h.Load()).ServeHTTP(sw, r)
	s.m.APIRequest(sw.code)
}

// statusWriter remembers the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveHTTP serves the API, health and metrics until ctx ends, then
// lets requests in progress finish (at most 10 seconds).
func serveHTTP(ctx context.Context, addr string, h http.Handler, onListen func(net.Addr), logger *slog.Logger) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	onListen(ln.Addr())
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// Bounds a client that sends a request body byte by byte; an
		// upload of 30 MB (the multipart limit) fits well inside.
		ReadTimeout: 5 * time.Minute,
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
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

// serveLogger builds the daemon's logger from the log configuration;
// its level is level's, so a reload can change it.
func serveLogger(lc config.LogConfig, level *slog.LevelVar, w io.Writer) (*slog.Logger, error) {
	if err := level.UnmarshalText([]byte(lc.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: %w", lc.Level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
