package sla

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/deskmail/deskmail/calendar"
	"github.com/deskmail/deskmail/store"
)

// Spec is the SLA configuration in a form kept in the database, so
// that a command run without the configuration file (deskmail tickets
// update --db) keeps the clocks the daemon keeps.
type Spec struct {
	Policies []PolicySpec `json:"policies"`
	// CloseResolvedAfter is, per pipeline name, how long a ticket may
	// stay resolved before it is closed automatically.
	CloseResolvedAfter map[string]time.Duration `json:"close_resolved_after"`
}

// PolicySpec is one SLA policy.
type PolicySpec struct {
	Name string `json:"name"`
	// Priorities and Channels select tickets (empty: all).
	Priorities    []int         `json:"priorities"`
	Channels      []string      `json:"channels"`
	FirstResponse time.Duration `json:"first_response"`
	Resolution    time.Duration `json:"resolution"`
	// Hours, when set, is the business-hours calendar.
	Hours *HoursSpec `json:"hours"`
}

// HoursSpec is a business-hours calendar (see calendar.New).
type HoursSpec struct {
	Name     string   `json:"name"`
	TimeZone string   `json:"time_zone"`
	Hours    []string `json:"hours"`
	Holidays []string `json:"holidays"`
}

// Empty reports whether the spec asks for no clock at all.
func (s Spec) Empty() bool {
	for _, d := range s.CloseResolvedAfter {
		if d > 0 {
			return false
		}
	}
	return len(s.Policies) == 0
}

const settingKey = "sla_spec"

// Sync stores spec in the database and returns it; with keep (a command
// run without a configuration file) it returns the stored spec instead,
// when there is one. The stored spec is read first and written — a
// write transaction, synced to disk — only when it differs: behind an
// MTA, `deskmail ingest -` starts once per mail with the same spec.
// changed reports that spec replaced a different stored one (the
// clocks of open tickets are then out of date: see Tracker.Recompute).
func Sync(ctx context.Context, st *store.Store, spec Spec, keep bool) (out Spec, changed bool, err error) {
	want, err := json.Marshal(spec)
	if err != nil {
		return spec, false, fmt.Errorf("sla: %w", err)
	}
	out, done, stored := spec, false, false
	err = st.Read(ctx, func(tx *store.Tx) error {
		v, ok, err := tx.Setting(settingKey)
		stored = ok
		switch {
		case err != nil:
			return err
		case keep && ok:
			var kept Spec
			if err := json.Unmarshal([]byte(v), &kept); err != nil {
				return fmt.Errorf("sla: stored settings: %w", err)
			}
			out, done = kept, true
		case keep:
			done = true // nothing stored: the given spec, unstored
		default:
			done = ok && v == string(want)
		}
		return nil
	})
	if err != nil || done {
		return out, false, err
	}
	return spec, stored, st.Write(ctx, func(tx *store.Tx) error {
		return tx.PutSetting(settingKey, string(want))
	})
}

// policy is a PolicySpec with its calendar built.
type policy struct {
	PolicySpec
	cal *calendar.Calendar
}

func (p *policy) matches(priority int, channel string) bool {
	if len(p.Priorities) > 0 && !slices.Contains(p.Priorities, priority) {
		return false
	}
	return len(p.Channels) == 0 || slices.Contains(p.Channels, channel)
}
