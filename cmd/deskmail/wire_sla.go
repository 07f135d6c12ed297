package main

import (
	"context"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/sla"
	"github.com/deskmail/deskmail/store"
)

// slaSpec turns the configuration's SLA policies and pipelines'
// close_resolved_after into the form the sla package keeps.
func slaSpec(cfg *config.Config) sla.Spec {
	spec := sla.Spec{CloseResolvedAfter: map[string]time.Duration{}}
	hours := map[string]config.BusinessHoursConfig{}
	for _, b := range cfg.SLA.BusinessHours {
		hours[b.Name] = b
	}
	for _, p := range cfg.SLA.Policies {
		ps := sla.PolicySpec{Name: p.Name, Priorities: p.Priorities, Channels: p.Channels,
			FirstResponse: p.FirstResponse.Duration, Resolution: p.Resolution.Duration}
		if b, ok := hours[p.BusinessHours]; ok && p.BusinessHours != "" {
			ps.Hours = &sla.HoursSpec{Name: b.Name, TimeZone: b.TimeZone, Hours: b.Hours, Holidays: b.Holidays}
		}
		spec.Policies = append(spec.Policies, ps)
	}
	for _, p := range cfg.Pipelines {
		if p.CloseResolvedAfter.Duration > 0 {
			spec.CloseResolvedAfter[p.Name] = p.CloseResolvedAfter.Duration
		}
	}
	return spec
}

// wireSLA keeps the SLA spec in the database (or, without a
// configuration file, reads the one kept there) and installs the
// tracker that recomputes every ticket's clock as it is written.
func wireSLA(ctx context.Context, rt *runtime, keep bool) error {
	spec, changed, err := sla.Sync(ctx, rt.st, slaSpec(rt.cfg), keep)
	if err != nil {
		return err
	}
	tr, err := sla.NewTracker(ctx, rt.st, spec)
	if err != nil {
		return err
	}
	rt.tracker = tr
	rt.st.SetTicketHook(store.TicketHook(tr.Hook))
	if changed {
		// New policies apply to the open tickets now (a reload, or the
		// first command on a new configuration), not at their next
		// change.
		start := time.Now()
		n, err := tr.Recompute(ctx, rt.st, start)
		if err != nil {
			return err
		}
		rt.logger.Info("sla: policies changed; clocks of open tickets recomputed", "tickets", n, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
