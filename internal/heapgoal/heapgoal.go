// Package heapgoal paces the Go collector of a long-running daemon by
// its live heap: while the heap that survives collections is small, the
// collector lets garbage grow to a fixed headroom above it before the
// next cycle, instead of to GOGC=100's one live heap more; as the live
// heap grows the percent falls back to 100.
//
// Measured on `deskmail serve` with 16 SMTP connections of small mail
// (live heap about 25 MB): at GOGC=100 a cycle ran every few dozen
// messages and its marking and sweeping, with the idle-priority mark
// workers that fill every wait for an fsync, took 9-35% of the
// daemon's CPU; at 400 its peak RSS went from 73 to 142 MB. A fixed 400
// would let a heap swollen by large mail grow five times over (the
// peak RSS of 16 clients sending 20 MB each rose from 391 to 584 MB,
// over what the README promises), which this pacing does not: with
// hundreds of megabytes live the percent is 100, as before.
package heapgoal

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Bounds of the percent Run sets.
const (
	MinPercent = 100
	MaxPercent = 400
)

// Percent returns the GC percent that sets the heap goal headroom
// bytes above a live heap of live bytes, within [MinPercent,
// MaxPercent].
func Percent(live, headroom uint64) int {
	if live == 0 {
		return MaxPercent
	}
	p := headroom * 100 / live
	return int(min(max(p, MinPercent), MaxPercent))
}

// Run sets the GC percent from the live heap every interval until ctx
// is done, then puts back the percent it found. It changes the percent
// only when it moves by more than a tenth. A daemon whose operator set
// GOGC should not call it.
func Run(ctx context.Context, headroom uint64, interval time.Duration) {
	orig := Current()
	defer debug.SetGCPercent(orig)
	cur := orig
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if p := Percent(sample[0].Value.Uint64(), headroom); p*10 > cur*11 || p*10 < cur*9 {
				debug.SetGCPercent(p)
				cur = p
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Current returns the collector's GC percent (-1 when it is off).
func Current() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return MinPercent
	}
	if v := s[0].Value.Uint64(); v <= 1<<31 {
		return int(v)
	}
	return -1
}
