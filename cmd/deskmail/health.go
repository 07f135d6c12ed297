package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/store"
)

// readiness is the body of /readyz.
type readiness struct {
	Ready    bool            `json:"ready"`
	Store    string          `json:"store"`
	Channels []channelHealth `json:"channels"`
	// Instances are the deskmail instances serving this database and
	// the IMAP folders each holds; UnheldFolders have no live holder
	// (its instance died; another takes them over within 20s).
	Instances     []instanceStatus `json:"instances"`
	UnheldFolders []string         `json:"unheld_folders"`
}

type channelHealth struct {
	Channel    string     `json:"channel"`
	Ready      bool       `json:"ready"`
	LastPollAt *time.Time `json:"last_poll_at"`
	LastError  string     `json:"last_error"`
}

// healthMux serves /healthz (the process answers), /readyz (the store
// takes writes and every IMAP channel's last poll succeeded) and
// /metrics; api, when non-nil, is mounted at /api/.
func healthMux(cfg func() *config.Config, st *store.Store, m *metrics.Metrics, api, console http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	probe := &writeProbe{st: st, ttl: probeTTL, timeout: probeTimeout}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rep := checkReady(r.Context(), cfg(), st, probe)
		w.Header().Set("Content-Type", "application/json")
		if !rep.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(rep)
	})
	mux.Handle("GET /metrics", m.Handler())
	if api != nil {
		mux.Handle("/api/", api)
	}
	if console != nil {
		mux.Handle("/", console)
	}
	return mux
}

// Readiness write probe: a result is reused for probeTTL, and a write
// that has not committed after probeTimeout counts as failed.
const (
	probeTTL     = 2 * time.Second
	probeTimeout = 3 * time.Second
)

// writeProbe runs store.ProbeWrite at most once per ttl; concurrent
// callers share one probe.
type writeProbe struct {
	st           *store.Store
	ttl, timeout time.Duration

	mu  sync.Mutex
	at  time.Time
	err error
}

// check returns the last probe's result, probing again once it is
// older than ttl.
func (p *writeProbe) check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && time.Since(p.at) < p.ttl {
		return p.err
	}
	p.err = p.st.ProbeWrite(ctx, p.timeout)
	p.at = time.Now()
	return p.err
}

// checkReady reports whether the store takes writes (probe) and every
// IMAP channel's last poll succeeded.
func checkReady(ctx context.Context, cfg *config.Config, st *store.Store, probe *writeProbe) readiness {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rep := readiness{Ready: true, Store: "ok", Channels: []channelHealth{}, Instances: []instanceStatus{}, UnheldFolders: []string{}}
	if err := probe.check(ctx); err != nil {
		rep.Ready, rep.Store = false, notWritable(err)
	}
	err := st.Read(ctx, func(tx *store.Tx) error {
		for _, ch := range cfg.Channels {
			if ch.IMAP == nil {
				continue
			}
			c := channelHealth{Channel: ch.Name}
			h, err := tx.ChannelHealth(ch.Name)
			switch {
			case errors.Is(err, store.ErrNotFound):
				c.LastError = "not polled yet"
			case err != nil:
				return err
			default:
				c.LastPollAt, c.LastError = h.LastPollAt, h.LastError
				c.Ready = h.ConsecutiveFailures == 0 && h.LastOKAt != nil
				if c.Ready {
					c.LastError = ""
				}
			}
			if !c.Ready {
				rep.Ready = false
			}
			rep.Channels = append(rep.Channels, c)
		}
		var err error
		rep.Instances, rep.UnheldFolders, err = instancesView(tx, time.Now())
		return err
	})
	if err != nil {
		rep.Ready, rep.Store = false, "not readable: "+errText(err)
	}
	return rep
}

// notWritable is the store field of a failed write probe.
func notWritable(err error) string {
	return "not writable: " + strings.TrimPrefix(errText(err), store.ErrUnavailable.Error()+": ")
}

func errText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}
