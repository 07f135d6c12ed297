package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/rules"
	"github.com/deskmail/deskmail/store"
)

// ruleSpecs turns the configuration's rules into the rules package's
// form (priorities as numbers, names filled in).
func ruleSpecs(cfg *config.Config) []rules.Rule {
	out := make([]rules.Rule, 0, len(cfg.Rules))
	for i, r := range cfg.Rules {
		rr := rules.Rule{Name: cfg.RuleName(i), On: r.On, Channels: r.If.Channel, From: r.If.From,
			SubjectContains: r.If.SubjectContains, Statuses: r.If.Status, Tags: r.If.Tags,
			Status: strings.TrimSpace(r.Then.Status), Priority: strings.TrimSpace(r.Then.Priority),
			Assign: strings.TrimSpace(r.Then.Assign), Group: strings.TrimSpace(r.Then.Group),
			AddTags: r.Then.AddTags, RemoveTags: r.Then.RemoveTags, Note: r.Then.Note, Notify: r.Then.Notify,
			Webhook: r.Then.Webhook}
		for _, p := range r.If.Priority {
			if n, ok := config.ParsePriority(p); ok {
				rr.Priorities = append(rr.Priorities, n)
			}
		}
		out = append(out, rr)
	}
	return out
}

const rulesSetting = "rules"

// syncRules keeps the configuration's rules in the database, so that a
// command run without a configuration file (deskmail tickets update
// --db) runs the rules the daemon runs; with keep it returns the
// stored ones instead, when there are any. Like sla.Sync it reads
// first and writes (a synced transaction) only when they differ:
// behind an MTA, deskmail ingest - starts once per mail.
func syncRules(ctx context.Context, st *store.Store, specs []rules.Rule, keep bool) ([]rules.Rule, error) {
	want, err := json.Marshal(specs)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	out, done := specs, false
	err = st.Read(ctx, func(tx *store.Tx) error {
		v, ok, err := tx.Setting(rulesSetting)
		switch {
		case err != nil:
			return err
		case keep && ok:
			var kept []rules.Rule
			if err := json.Unmarshal([]byte(v), &kept); err != nil {
				return fmt.Errorf("rules: stored settings: %w", err)
			}
			out, done = kept, true
		case keep:
			done = true
		default:
			done = ok && v == string(want)
		}
		return nil
	})
	if err != nil || done {
		return out, err
	}
	return specs, st.Write(ctx, func(tx *store.Tx) error { return tx.PutSetting(rulesSetting, string(want)) })
}
