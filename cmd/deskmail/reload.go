package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest/poller"
	"github.com/deskmail/deskmail/outbound"
	"github.com/deskmail/deskmail/store"
)

// reload reads the configuration file again and applies it to the
// running daemon (SIGHUP). It returns an error, after logging it, when
// the new configuration is refused; the running one is then kept
// unchanged.
//
// Applied at once:
//   - support addresses, channels, pipelines, statuses, agents and
//     threading settings: a new pipeline is built with
//     ingest.NewPipeline (which syncs them into the store) and swapped
//     in for new submissions; the receiver looks recipients up in its
//     address map from the next RCPT TO, also in sessions already
//     open. The previous pipeline's group committer stops once every
//     submission it took has its answer, so nothing queued is lost;
//   - outbound templates and per-channel sending switches (a new
//     outbound.Outbox); the outbox worker is restarted when a setting
//     it reads changed (outbound.DeliveryChanges: outbound.relay, its
//     credentials, connections and retries, smtp.hostname, a
//     channel's own relay or the addresses routed to it), so the next
//     delivery uses them — deliveries in flight are then interrupted
//     and retried, queued mail stays queued;
//   - IMAP pollers: pollers of changed or removed channels stop (after
//     their current batch) and pollers of new or changed channels
//     start; unchanged channels keep their connection;
//   - automation rules and webhooks (the webhook worker restarts;
//     queued deliveries stay queued);
//   - SLA policies: wireSLA recomputes the clocks of open tickets when
//     they changed, and the scheduler restarts with the new tracker;
//   - the HTTP API (agent scopes and groups) and /readyz;
//   - SMTP limits that can change live (receiver.Server.SetLimits);
//   - log.level.
//
// Needing a restart (logged, otherwise ignored): database, http.listen,
// log.format, smtp.disabled and the other smtp settings (listen
// addresses, TLS files, AUTH users, size and line limits, timeouts,
// hostname).
func (d *daemon) reload(ctx context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.ov.path == "" {
		d.log.Info("reload: running on the built-in defaults (no --config): nothing to reload")
		return nil
	}
	d.log.Info("reload: reading the configuration", "file", d.ov.path)
	cfg, err := d.ov.load()
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				d.log.Error("reload: configuration problem", "problem", p.String())
			}
			d.log.Error("reload refused: keeping the running configuration", "file", d.ov.path, "problems", len(ps))
		} else {
			d.log.Error("reload refused: keeping the running configuration", "file", d.ov.path, "err", err)
		}
		return fmt.Errorf("reload %s: %w", d.ov.path, err)
	}
	old := d.gen.Load()
	restart := keepRestartOnly(cfg, old.cfg)

	g, err := d.newGeneration(ctx, cfg)
	if err != nil {
		d.log.Error("reload failed: keeping the running configuration", "file", d.ov.path, "err", err)
		return fmt.Errorf("reload %s: %w", d.ov.path, err)
	}
	d.start(g)
	d.gen.Store(g)
	d.api.set(g.api)
	d.console.set(g.console)
	if d.recv != nil {
		if err := d.recv.SetAddresses(g.pipeline.Addresses()); err != nil {
			d.log.Error("reload: smtp addresses not changed", "err", err)
		}
		restart = append(restart, d.recv.SetLimits(cfg.SMTP)...)
	} else if !cfg.SMTP.Disabled {
		restart = append(restart, "smtp.disabled")
	}
	d.retire(old)
	// The scheduler recomputes clocks with the new policies.
	d.stopScheduler()
	d.startScheduler(g)
	d.stopWebhooks()
	d.startWebhooks(g)

	if err := d.level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		d.log.Error("reload: log.level not changed", "level", cfg.Log.Level, "err", err)
	}
	if changed := outbound.DeliveryChanges(old.cfg, cfg); len(changed) > 0 {
		// The worker keeps the relays it was built with: only a new
		// one delivers through the new settings.
		d.log.Info("reload: outbound delivery settings changed; restarting the outbox worker", "settings", changed)
		d.stopWorker()
		d.startWorker(g)
	} else {
		// Same relay: keep the worker (it only reads the queue).
		d.kick()
	}
	if err := d.pollers.apply(cfg); err != nil {
		d.log.Error("reload: imap pollers", "err", err)
	}
	slices.Sort(restart)
	restart = slices.Compact(restart)
	for _, s := range restart {
		d.log.Warn("reload: setting changed but needs a restart; still running with the old value", "setting", s)
	}
	d.log.Info("reload: configuration applied", "file", d.ov.path, "channels", len(cfg.Channels),
		"imap", d.pollers.folders(), "needs_restart", restart)
	return nil
}

// keepRestartOnly compares the settings that only a restart can change,
// puts the running values back into cfg (so the daemon's view matches
// what runs and every later reload warns again) and returns the names
// of those that differ. SMTP settings are compared by the receiver.
func keepRestartOnly(cfg, running *config.Config) []string {
	var out []string
	if cfg.Database != running.Database {
		out = append(out, "database")
		cfg.Database = running.Database
	}
	if cfg.HTTP.Listen != running.HTTP.Listen {
		out = append(out, "http.listen")
		cfg.HTTP.Listen = running.HTTP.Listen
	}
	if cfg.Log.Format != running.Log.Format {
		out = append(out, "log.format")
		cfg.Log.Format = running.Log.Format
	}
	if cfg.SMTP.Disabled != running.SMTP.Disabled {
		out = append(out, "smtp.disabled")
	}
	return out
}

// pollerSet runs the IMAP pollers of each channel as a unit, so a
// reload can stop and start one channel's pollers without touching the
// others. Its methods are called from one goroutine at a time (start-up,
// then reloads, then shutdown).
type pollerSet struct {
	ctx  context.Context
	st   *store.Store
	ing  poller.Ingester
	opts poller.Options

	mu      sync.Mutex
	running map[string]*channelPollers
	wg      sync.WaitGroup
}

// channelPollers is one channel's running pollers.
type channelPollers struct {
	ch     config.ChannelConfig
	p      *poller.Pollers
	cancel context.CancelFunc
}

// newPollerSet returns an empty set whose pollers run until ctx ends.
func newPollerSet(ctx context.Context, st *store.Store, ing poller.Ingester, opts poller.Options) *pollerSet {
	return &pollerSet{ctx: ctx, st: st, ing: ing, opts: opts, running: map[string]*channelPollers{}}
}

// apply makes the running pollers match cfg: a channel whose
// configuration is unchanged keeps its pollers; a removed or changed
// one is stopped (its batch in progress is committed and acknowledged
// first) and a new or changed one is started. Errors name the channels
// that could not start; the others run.
func (s *pollerSet) apply(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]config.ChannelConfig{}
	for _, ch := range cfg.Channels {
		if ch.IMAP != nil {
			want[ch.Name] = ch
		}
	}
	for name, cp := range s.running {
		if ch, ok := want[name]; ok && reflect.DeepEqual(ch, cp.ch) {
			continue
		}
		cp.cancel()
		cp.p.Wait()
		delete(s.running, name)
		s.opts.Logger.Info("imap: pollers stopped", "channel", name)
	}
	var errs []error
	for _, ch := range cfg.Channels {
		if ch.IMAP == nil || s.running[ch.Name] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		one := &config.Config{Channels: []config.ChannelConfig{ch}}
		p, err := poller.StartPollers(ctx, one, s.st, s.ing, s.opts)
		if err != nil {
			cancel()
			errs = append(errs, fmt.Errorf("channel %s: %w", ch.Name, err))
			continue
		}
		s.running[ch.Name] = &channelPollers{ch: ch, p: p, cancel: cancel}
		s.wg.Go(p.Wait)
		s.opts.Logger.Info("imap: pollers started", "channel", ch.Name, "folders", p.Folders())
	}
	return errors.Join(errs...)
}

// folders lists the running pollers as "channel/folder", sorted.
func (s *pollerSet) folders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{}
	for _, cp := range s.running {
		out = append(out, cp.p.Folders()...)
	}
	sort.Strings(out)
	return out
}

// wait blocks until every poller has stopped (after the set's context
// ended).
func (s *pollerSet) wait() { s.wg.Wait() }
