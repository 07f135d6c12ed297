package receiver

import (
	"errors"
	"reflect"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/threading"
)

// SetAddresses replaces the support addresses the receiver accepts
// (a configuration reload). Sessions already open use the new map from
// their next RCPT TO; recipients accepted before keep their channel.
// The Submitter is not changed here: to submit through a new pipeline,
// give New a Submitter that forwards to the current one.
func (s *Server) SetAddresses(a *threading.Addresses) error {
	if a == nil {
		return errors.New("receiver: no support addresses")
	}
	s.addrs.Store(a)
	return nil
}

// SetLimits applies the SMTP settings of c that can change while the
// receiver serves, for new connections and new transactions:
// max_connections, max_connections_per_ip and rate_per_minute (when
// it stays above zero; turning rate limiting on or off needs a
// restart). It returns the names of the other settings that differ
// from the running ones; those take effect only after a restart.
func (s *Server) SetLimits(c config.SMTPConfig) (needRestart []string) {
	s.conns.mu.Lock()
	s.conns.max, s.conns.maxIP = c.MaxConnections, c.MaxConnectionsPerIP
	s.conns.mu.Unlock()

	cur := s.opts.Config // as configured, before New filled defaults
	rateLive := (cur.RatePerMinute > 0) == (c.RatePerMinute > 0)
	if rateLive && c.RatePerMinute > 0 {
		for _, r := range []*rateLimiter{s.ipRate, s.from} {
			r.mu.Lock()
			r.rate, r.burst = float64(c.RatePerMinute)/60, max(float64(c.RatePerMinute), 1)
			r.mu.Unlock()
		}
	}

	// Compare what is left with the running configuration.
	live, want := cur, c
	live.MaxConnections, live.MaxConnectionsPerIP = 0, 0
	want.MaxConnections, want.MaxConnectionsPerIP = 0, 0
	if rateLive {
		live.RatePerMinute, want.RatePerMinute = 0, 0
	}
	lv, wv := reflect.ValueOf(live), reflect.ValueOf(want)
	for i := range lv.NumField() {
		if !reflect.DeepEqual(lv.Field(i).Interface(), wv.Field(i).Interface()) {
			name := lv.Type().Field(i).Tag.Get("yaml")
			if name == "" {
				name = lv.Type().Field(i).Name
			}
			needRestart = append(needRestart, "smtp."+name)
		}
	}
	return needRestart
}
