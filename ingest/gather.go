package ingest

import (
	"context"
	"time"
)

// maxGatherWait bounds how long the group committer holds a batch open
// for more messages (see gatherer).
const maxGatherWait = 10 * time.Millisecond

// gatherer decides how many messages the group committer takes into
// its next batch. It takes every message already waiting; then, when
// recent batches were larger than what is waiting — several senders
// at once, some of them a moment behind — it waits for more, until the
// batch is as large as the largest of them, for at most as long as the
// last commit took (and maxGatherWait).
//
// Why wait: a commit costs mostly what every batch rewrites whatever
// its size (the last page of each table and index, in the WAL on
// SQLite; the round trips and the WAL flush on PostgreSQL), so a batch
// of 14 costs little more than one of 7. Without the wait, 16 SMTP
// connections split into two groups taking turns — one committing
// while the other sends its next mail — and every commit held about
// half of them (BenchmarkServeSMTP: 7.3 messages per commit; with the
// wait 13.8, and 10% less CPU per message at the same rate). A lone
// sender never waits: its recent batches were of one message.
type gatherer struct {
	recent [8]int
	next   int
	// last is how long the last commit took.
	last time.Duration
	// maxWait, when set, replaces maxGatherWait (tests).
	maxWait time.Duration
}

// target is the size the next batch waits for: the largest of the
// recent ones, at most limit.
func (g *gatherer) target(limit int) int {
	n := 0
	for _, r := range g.recent {
		n = max(n, r)
	}
	return min(n, limit)
}

// done records a committed batch of n messages that took d.
func (g *gatherer) done(n int, d time.Duration) {
	g.recent[g.next%len(g.recent)] = n
	g.next++
	g.last = d
}

// gather returns a batch that starts with first and takes from queue
// every message waiting, then waits as the gatherer says, up to limit
// messages. It returns early when ctx ends (the batch is committed
// all the same).
func (g *gatherer) gather(ctx context.Context, first *job, queue <-chan *job, limit int) []*job {
	batch := []*job{first}
waiting:
	for len(batch) < limit {
		select {
		case j := <-queue:
			batch = append(batch, j)
		default:
			break waiting
		}
	}
	target := g.target(limit)
	most := maxGatherWait
	if g.maxWait > 0 {
		most = g.maxWait
	}
	wait := min(g.last, most)
	if len(batch) >= target || wait <= 0 {
		return batch
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for len(batch) < target {
		select {
		case j := <-queue:
			batch = append(batch, j)
		case <-timer.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}
