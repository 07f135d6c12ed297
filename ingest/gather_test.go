package ingest

import (
	"context"
	"testing"
	"time"
)

func jobs(n int) []*job {
	js := make([]*job, n)
	for i := range js {
		js[i] = &job{}
	}
	return js
}

// A lone sender's message is committed at once: no recent batch was
// larger than one message, so nothing is waited for.
func TestGatherLoneSenderDoesNotWait(t *testing.T) {
	g := gatherer{}
	g.done(1, time.Hour)
	start := time.Now()
	batch := g.gather(context.Background(), &job{}, make(chan *job), 256)
	if len(batch) != 1 || time.Since(start) > time.Second {
		t.Fatalf("batch of %d after %v, want 1 at once", len(batch), time.Since(start))
	}
}

// After batches of 4, a batch that starts with 1 waits for the 3
// others (and no longer: the wait ends at the target, not the timer).
func TestGatherWaitsForRecentBatchSize(t *testing.T) {
	g := gatherer{maxWait: time.Hour}
	g.done(4, time.Hour)
	queue := make(chan *job, 8)
	go func() {
		for _, j := range jobs(3) {
			time.Sleep(time.Millisecond)
			queue <- j
		}
	}()
	start := time.Now()
	batch := g.gather(context.Background(), &job{}, queue, 256)
	if len(batch) != 4 || time.Since(start) > time.Minute {
		t.Fatalf("batch of %d after %v, want the 4 recent batches held", len(batch), time.Since(start))
	}
}

// The wait lasts at most as long as the last commit took: a sender
// that does not come is not waited for longer.
func TestGatherWaitIsBounded(t *testing.T) {
	g := gatherer{}
	g.done(16, 20*time.Millisecond) // above maxGatherWait: capped
	start := time.Now()
	batch := g.gather(context.Background(), &job{}, make(chan *job), 256)
	took := time.Since(start)
	if len(batch) != 1 {
		t.Fatalf("batch of %d, want 1", len(batch))
	}
	if took < maxGatherWait || took > 5*time.Second {
		t.Fatalf("waited %v, want about maxGatherWait (%v)", took, maxGatherWait)
	}
}

// Everything already waiting is taken, up to the limit, without a
// wait; shutdown ends a wait at once.
func TestGatherTakesWaitingAndStopsOnShutdown(t *testing.T) {
	g := gatherer{}
	queue := make(chan *job, 16)
	for _, j := range jobs(10) {
		queue <- j
	}
	if batch := g.gather(context.Background(), &job{}, queue, 8); len(batch) != 8 {
		t.Fatalf("batch of %d, want the limit 8", len(batch))
	}
	if batch := g.gather(context.Background(), &job{}, queue, 8); len(batch) != 4 {
		t.Fatalf("batch of %d, want the 3 left and the first", len(batch))
	}
	g.done(8, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if batch := g.gather(ctx, &job{}, make(chan *job), 8); len(batch) != 1 || time.Since(start) >= maxGatherWait {
		t.Fatalf("batch of %d after %v on shutdown, want 1 at once", len(batch), time.Since(start))
	}
}
