package receiver

import (
	"sync"
	"time"
)

// memoryCost is what one byte of a received message costs in memory
// until its Submit returns. Measured with `deskmail serve` (VmHWM),
// one mail with a 20 MB attachment (27.4 MB raw) raises the peak RSS
// by 151 MB, 5.5 times its size: the raw bytes (1×), the decoded
// attachment (0.73×) and the decoder's chunks before it joins them
// (0.73×), and SQLite's copies while it writes the raw message and the
// blob (the bound value and the record built from it, 2× the raw
// message at the worst moment); 6 leaves a margin for the garbage the
// collector has not yet reclaimed (TestConcurrentLargeMailMemory).
const memoryCost = 6

// budget is the memory the messages in flight may take together
// (Options.MaxBufferedBytes), in bytes of real cost (memoryCost per
// raw byte). take never waits: a session reading a message whose size
// it does not know takes its bytes as they come and gives up (452) if
// they do not fit. reserve waits, holding nothing meanwhile, until
// the whole cost of a message of announced size fits: sessions never
// hold part of the budget while waiting for more, so they cannot
// deadlock each other.
type budget struct {
	mu    sync.Mutex
	max   int64
	used  int64
	freed chan struct{} // closed and replaced whenever bytes are released
}

func newBudget(max int64) *budget {
	return &budget{max: max, freed: make(chan struct{})}
}

// take adds n to the budget if it fits and reports whether it did.
func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

// reserve waits until n fits (at most wait) and takes it; it reports
// false when the wait ran out or done was closed.
func (b *budget) reserve(n int64, wait time.Duration, done <-chan struct{}) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		if b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return true
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-timer.C:
			return false
		case <-done:
			return false
		}
	}
}

// release gives n back and wakes the sessions waiting in reserve.
func (b *budget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// inUse returns the cost currently taken.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
