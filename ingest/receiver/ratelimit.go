package receiver

import (
	"sync"
	"time"
)

// rateLimiter is a set of token buckets, one per key (client address
// or sender), refilled lazily when a key is looked at: no goroutine
// and no timer per key. Each bucket holds at most one minute's worth
// of tokens (the burst) and refills at perMinute/60 tokens a second.
//
// Memory is bounded by maxKeys. When the map is full, buckets that
// have refilled completely are dropped (forgetting them changes
// nothing: a new bucket starts full); if that is not enough, arbitrary
// buckets are dropped, which can only make the limiter more lenient
// for those keys.
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	maxKeys int
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(perMinute float64, maxKeys int, now func() time.Time) *rateLimiter {
	return &rateLimiter{
		rate:    perMinute / 60,
		burst:   max(perMinute, 1),
		maxKeys: maxKeys,
		now:     now,
		buckets: map[string]*bucket{},
	}
}

// allow takes one token for key and reports whether there was one.
func (r *rateLimiter) allow(key string) bool {
	return r.take(key, 1, true)
}

// ready reports whether key has a token, without taking it.
func (r *rateLimiter) ready(key string) bool {
	return r.take(key, 1, false)
}

// penalize takes n tokens from key (failed AUTH attempts), going no
// lower than zero.
func (r *rateLimiter) penalize(key string, n float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.get(key, r.now())
	b.tokens = max(0, b.tokens-n)
}

func (r *rateLimiter) take(key string, n float64, consume bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if !consume {
		b, ok := r.buckets[key]
		if !ok {
			return true
		}
		return r.level(b, now) >= n
	}
	b := r.get(key, now)
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

// level is b's token count at now, without storing it.
func (r *rateLimiter) level(b *bucket, now time.Time) float64 {
	el := now.Sub(b.last).Seconds()
	if el < 0 {
		el = 0
	}
	return min(r.burst, b.tokens+el*r.rate)
}

// get returns key's bucket refilled up to now, creating it (full) if
// needed. r.mu must be held.
func (r *rateLimiter) get(key string, now time.Time) *bucket {
	if b, ok := r.buckets[key]; ok {
		b.tokens = r.level(b, now)
		b.last = now
		return b
	}
	if len(r.buckets) >= r.maxKeys {
		r.evict(now)
	}
	b := &bucket{tokens: r.burst, last: now}
	r.buckets[key] = b
	return b
}

// evict makes room in a full map. r.mu must be held.
func (r *rateLimiter) evict(now time.Time) {
	for k, b := range r.buckets {
		if r.level(b, now) >= r.burst {
			delete(r.buckets, k)
		}
	}
	target := r.maxKeys * 9 / 10
	for k := range r.buckets {
		if len(r.buckets) <= target {
			break
		}
		delete(r.buckets, k)
	}
}

// size returns the number of buckets kept.
func (r *rateLimiter) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}
