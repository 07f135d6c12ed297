package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/store"
)

// errProbe rolls back the readiness write probe.
var errProbe = errors.New("probe")

// readiness is the body of /readyz.
type readiness struct {
	Ready    bool            `json:"ready"`
	Store    string          `json:"store"`
	Channels []channelHealth `json:"channels"`
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
func healthMux(cfg func() *config.Config, st *store.Store, m *metrics.Metrics, api http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rep := checkReady(r.Context(), cfg(), st)
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
	return mux
}

func checkReady(ctx context.Context, cfg *config.Config, st *store.Store) readiness {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rep := readiness{Ready: true, Store: "ok", Channels: []channelHealth{}}
	err := st.Write(ctx, func(tx *store.Tx) error {
		if err := tx.WriteProbe(); err != nil {
			return err
		}
		return errProbe
	})
	if !errors.Is(err, errProbe) {
		rep.Ready, rep.Store = false, "not writable: "+errText(err)
	}
	err = st.Read(ctx, func(tx *store.Tx) error {
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
		return nil
	})
	if err != nil {
		rep.Ready, rep.Store = false, "not readable: "+errText(err)
	}
	return rep
}

func errText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}
