package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/outbound"
	"github.com/deskmail/deskmail/rules"
	"github.com/deskmail/deskmail/sla"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
	"github.com/deskmail/deskmail/webhook"
)

// runtime is what most subcommands share: the configuration, the open
// store, the token signer and the pipeline.
type runtime struct {
	cfg      *config.Config
	st       *store.Store
	signer   *threading.Signer
	pipeline *ingest.Pipeline
	outbox   *outbound.Outbox
	tracker  *sla.Tracker
	hooks    *webhook.Hooks
	logger   *slog.Logger
}

// openRuntime loads the configuration (defaults when cfgPath is empty),
// opens the database (dbPath overrides the configured one) and builds
// the pipeline. implicit makes each message's first To address a
// support address, as `deskmail ingest` does without a configuration.
func openRuntime(ctx context.Context, cfgPath, dbPath string, implicit bool, logger *slog.Logger) (*runtime, error) {
	cfg := config.Default()
	if cfgPath != "" {
		var err error
		if cfg, err = config.Load(cfgPath); err != nil {
			return nil, err
		}
	}
	if dbPath != "" {
		cfg.Database = dbPath
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// One-shot commands: several may run at once (an MTA's pipe runs
	// one ingest per mail), and none waits for the others at exit.
	st, err := openDatabase(ctx, cfg, store.Options{ShortLived: true})
	if err != nil {
		return nil, err
	}
	rt, err := buildRuntime(ctx, cfg, st, ingest.Env{Logger: logger, ImplicitSupport: implicit, KeepStored: cfgPath == ""})
	if err != nil {
		st.Close()
		return nil, err
	}
	return rt, nil
}

// buildRuntime builds the signer, the outbox and the pipeline for cfg on
// an open store. env carries the caller's pipeline settings (logger,
// metrics, hooks); Config, Signer and Notify are filled in here.
func buildRuntime(ctx context.Context, cfg *config.Config, st *store.Store, env ingest.Env) (*runtime, error) {
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	rt := &runtime{cfg: cfg, st: st, logger: env.Logger}
	secret, err := tokenSecret(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	rt.signer = threading.NewSigner(secret, cfg.Threading.TokenTTL.Duration)
	env.Config, env.Signer = cfg, rt.signer
	if rt.hooks, err = webhookHooks(cfg); err != nil {
		return nil, err
	}
	if err := wireOutbound(rt, &env); err != nil {
		return nil, err
	}
	specs, err := syncRules(ctx, st, ruleSpecs(cfg), env.KeepStored)
	if err != nil {
		return nil, err
	}
	env.Rules = rules.New(specs, env.Logger)
	if rt.pipeline, err = ingest.NewPipeline(ctx, st, env); err != nil {
		return nil, err
	}
	// After the pipeline: it syncs the pipelines and channels the SLA
	// policies refer to.
	if err := wireSLA(ctx, rt, env.KeepStored); err != nil {
		return nil, err
	}
	return rt, nil
}

// tokenSecret is the configured threading secret, or the one kept in
// the database.
func tokenSecret(ctx context.Context, cfg *config.Config, st *store.Store) ([]byte, error) {
	if !cfg.Threading.Secret.IsZero() {
		v, err := cfg.Threading.Secret.Value()
		if err != nil {
			return nil, fmt.Errorf("threading.secret: %w", err)
		}
		if v != "" {
			return []byte(v), nil
		}
	}
	return st.Secret(ctx)
}

func (rt *runtime) Close() error { return rt.st.Close() }

// requireDatabase fails, in one line, when the database a command
// would open does not exist: only serve, ingest and agents add create
// a database, so a mistyped --db never leaves an empty one behind.
// The path is --db, else the configuration's database (cfgPath loaded
// for it), else the default.
func requireDatabase(db, cfgPath string) error {
	path := db
	if path == "" {
		cfg := config.Default()
		if cfgPath != "" {
			var err error
			if cfg, err = config.Load(cfgPath); err != nil {
				return err
			}
		}
		path = cfg.Database
	}
	if store.IsPostgres(path) {
		return nil // the server says, at open, whether it exists
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("database %s does not exist (deskmail serve, ingest and agents add create one; check --db or database: in the configuration)", path)
	}
	return nil
}

// stderrLogger logs warnings and errors to stderr for one-shot commands.
func stderrLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
