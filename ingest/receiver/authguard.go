package receiver

import (
	"sync"
	"time"
)

// authGuard slows and then stops password guessing. It counts failed
// AUTH attempts per key — the user name, and the client address — so
// that guesses spread over many addresses still add up for one user,
// and one address guessing many users adds up too. Each failure after
// the first delays the next answer for that key exponentially
// (base·2^(n-2), at most maxDelay); after lockAfter failures the key is
// locked for lockFor: AUTH for it is refused without looking at the
// password, except that a correct password from a trusted relay lifts
// a user's lock. A lock expires by itself; a success clears the
// failures of its user and address.
//
// Memory is bounded by maxKeys: when the map is full, records whose
// lock expired or whose last failure is older than lockFor are
// dropped first, then arbitrary ones (which can only make the guard
// more lenient for those keys).
type authGuard struct {
	mu        sync.Mutex
	now       func() time.Time
	base      time.Duration
	maxDelay  time.Duration
	lockAfter int
	lockFor   time.Duration
	maxKeys   int
	recs      map[string]*authRecord
}

type authRecord struct {
	failures int
	last     time.Time // last failure
	until    time.Time // locked until (zero: not locked)
}

func newAuthGuard(lockAfter int, lockFor, base time.Duration, now func() time.Time) *authGuard {
	return &authGuard{now: now, base: base, maxDelay: 30 * time.Second, lockAfter: lockAfter, lockFor: lockFor,
		maxKeys: 100_000, recs: map[string]*authRecord{}}
}

// get returns key's record as of now, forgetting failures that are
// older than lockFor or whose lock has expired. g.mu must be held.
func (g *authGuard) get(key string, now time.Time) *authRecord {
	r, ok := g.recs[key]
	if !ok {
		return nil
	}
	if !r.until.IsZero() && !now.Before(r.until) || r.until.IsZero() && now.Sub(r.last) >= g.lockFor {
		delete(g.recs, key)
		return nil
	}
	return r
}

// locked reports whether key is locked now, and until when.
func (g *authGuard) locked(key string) (bool, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.get(key, g.now())
	if r == nil || r.until.IsZero() {
		return false, time.Time{}
	}
	return true, r.until
}

// delay is how long to wait before answering the next attempt for key.
func (g *authGuard) delay(key string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.get(key, g.now())
	if r == nil || r.failures < 2 {
		return 0
	}
	d := g.base
	for i := 2; i < r.failures && d < g.maxDelay; i++ {
		d *= 2
	}
	return min(d, g.maxDelay)
}

// fail counts a failure for key and reports whether it locked the key
// (this failure reached lockAfter).
func (g *authGuard) fail(key string) (failures int, lockedNow bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	r := g.get(key, now)
	if r == nil {
		if len(g.recs) >= g.maxKeys {
			g.evict(now)
		}
		r = &authRecord{}
		g.recs[key] = r
	}
	r.failures++
	r.last = now
	if g.lockAfter > 0 && r.failures >= g.lockAfter && r.until.IsZero() {
		r.until = now.Add(g.lockFor)
		return r.failures, true
	}
	return r.failures, false
}

// clear forgets key's failures and lock.
func (g *authGuard) clear(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.recs, key)
}

// evict makes room in a full map. g.mu must be held.
func (g *authGuard) evict(now time.Time) {
	for k := range g.recs {
		g.get(k, now)
	}
	target := g.maxKeys * 9 / 10
	for k := range g.recs {
		if len(g.recs) <= target {
			break
		}
		delete(g.recs, k)
	}
}
