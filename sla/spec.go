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
// when there is one.
func Sync(ctx context.Context, st *store.Store, spec Spec, keep bool) (Spec, error) {
	out := spec
	err := st.Write(ctx, func(tx *store.Tx) error {
		if keep {
			v, ok, err := tx.Setting(settingKey)
			if err != nil || !ok {
				return err
			}
			var stored Spec
			if err := json.Unmarshal([]byte(v), &stored); err != nil {
				return fmt.Errorf("sla: stored settings: %w", err)
			}
			out = stored
			return nil
		}
		b, err := json.Marshal(spec)
		if err != nil {
			return fmt.Errorf("sla: %w", err)
		}
		return tx.PutSetting(settingKey, string(b))
	})
	return out, err
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
