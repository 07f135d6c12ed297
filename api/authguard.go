package api

import (
	"context"
	"sync"
	"time"
)

// Failed-login limits (see AuthGuard).
const (
	// maxAuthFailures is how many failed logins a client address may
	// make in a minute.
	maxAuthFailures = 30
	// keyPrefixLen is how much of a presented key names it for the
	// per-key limit: enough to tell keys apart, too little to matter if
	// a mistyped key reaches the log.
	keyPrefixLen = 8
	// keyFreeFailures failures of one key prefix are answered at once;
	// each further one waits twice as long as the one before, from
	// DefaultLoginDelay up to maxLoginDelay.
	keyFreeFailures = 3
	// keyLockFailures failures of one key prefix lock it for
	// keyLockout.
	keyLockFailures = 10
	keyLockout      = 15 * time.Minute
	// keyForget: a prefix without a failure for this long starts over.
	keyForget     = 15 * time.Minute
	maxLoginDelay = 5 * time.Second
	// maxTrackedKeys bounds the per-key table; past it (after expired
	// entries are dropped) new prefixes are limited per address only.
	maxTrackedKeys = 100000
)

// DefaultLoginDelay is the first delay of a failed login with a key
// prefix that already failed keyFreeFailures times.
const DefaultLoginDelay = 100 * time.Millisecond

// AuthGuard limits failed API logins per client address and per key
// prefix (the first 8 characters of the presented key):
//
//   - a client address with 30 failures in a minute gets 429 for the
//     rest of that minute, whatever key it sends;
//   - a key prefix answers its first 3 failures at once, then each
//     failure waits twice as long as the one before (100 ms, 200 ms, …,
//     at most 5 s), and the 10th locks the prefix for 15 minutes: a
//     wrong key with that prefix then gets 429 at once, from any
//     address, until the lock expires. A valid key is always accepted
//     (it is checked first), so nobody can lock an agent out by
//     guessing at her key's prefix; a valid key clears its prefix.
//
// One AuthGuard outlives reloads (the daemon passes the same one to
// every generation's API), so a SIGHUP lifts no lock. It is safe for
// concurrent use.
type AuthGuard struct {
	now   func() time.Time
	delay time.Duration
	addr  *limiter

	mu   sync.Mutex
	keys map[string]*keyFailures
}

type keyFailures struct {
	n           int
	last        time.Time
	lockedUntil time.Time
}

// NewAuthGuard returns a guard on clock now (nil: time.Now) whose
// first per-key delay is delay (0: DefaultLoginDelay).
func NewAuthGuard(now func() time.Time, delay time.Duration) *AuthGuard {
	if now == nil {
		now = time.Now
	}
	if delay <= 0 {
		delay = DefaultLoginDelay
	}
	return &AuthGuard{now: now, delay: delay, addr: newLimiter(now), keys: map[string]*keyFailures{}}
}

// addressBlocked reports whether addr has used its failures for this
// minute, and the seconds until it may try again.
func (g *AuthGuard) addressBlocked(addr string) (retryAfter int, blocked bool) {
	return g.addr.blocked(addr, maxAuthFailures)
}

// keyVerdict is what a failed login leads to.
type keyVerdict struct {
	// failures is the prefix's count of failures, this one included
	// (0 when the prefix is not tracked).
	failures int
	// delay is how long to wait before answering 401.
	delay time.Duration
	// locked: answer 429 now, retry after retryAfter seconds.
	locked     bool
	retryAfter int
	// lockedNow: this failure set the key prefix's lock;
	// addressLockedNow: it used the address's last failure of the minute.
	lockedNow, addressLockedNow bool
}

// fail records a failed login from addr with key (the presented
// credential; "" when none was sent).
func (g *AuthGuard) fail(addr, key string) keyVerdict {
	left, _, _ := g.addr.take(addr, maxAuthFailures)
	v := g.failKey(key)
	v.addressLockedNow = left == 0
	return v
}

func (g *AuthGuard) failKey(key string) keyVerdict {
	if key == "" {
		return keyVerdict{}
	}
	return g.failID(prefixOf(key))
}

// failID counts a failure of id (a key prefix or an account).
func (g *AuthGuard) failID(p string) keyVerdict {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.keys[p]
	if f != nil && now.Before(f.lockedUntil) {
		f.last = now
		return keyVerdict{failures: f.n, locked: true, retryAfter: secondsUntil(now, f.lockedUntil)}
	}
	if f == nil || now.Sub(f.last) >= keyForget {
		if f == nil && len(g.keys) >= maxTrackedKeys {
			g.prune(now)
			if len(g.keys) >= maxTrackedKeys {
				return keyVerdict{}
			}
		}
		f = &keyFailures{}
		g.keys[p] = f
	}
	f.n++
	f.last = now
	v := keyVerdict{failures: f.n}
	switch {
	case f.n >= keyLockFailures:
		f.lockedUntil = now.Add(keyLockout)
		v.locked, v.lockedNow, v.retryAfter = true, true, secondsUntil(now, f.lockedUntil)
	case f.n > keyFreeFailures:
		v.delay = min(g.delay<<(f.n-keyFreeFailures-1), maxLoginDelay)
	}
	return v
}

// succeed forgets the failures of a valid key's prefix.
func (g *AuthGuard) succeed(key string) {
	p := prefixOf(key)
	g.mu.Lock()
	delete(g.keys, p)
	g.mu.Unlock()
}

// prune drops prefixes neither locked nor failed within keyForget.
func (g *AuthGuard) prune(now time.Time) {
	for p, f := range g.keys {
		if !now.Before(f.lockedUntil) && now.Sub(f.last) >= keyForget {
			delete(g.keys, p)
		}
	}
}

// prefixOf is the part of a key the per-key limit counts.
func prefixOf(key string) string {
	if len(key) > keyPrefixLen {
		return key[:keyPrefixLen]
	}
	return key
}

func secondsUntil(now, t time.Time) int {
	return max(int((t.Sub(now)+time.Second-1)/time.Second), 1)
}

// wait sleeps for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Password sign-ins (the web console) are limited by the same guard as
// API keys: the client address shares its 30 failures a minute with
// bad keys, and each account (its address, in full) is counted like a
// key prefix — delayed after 3 failures, locked for 15 minutes at the
// 10th. Unlike a key, a locked account refuses even the right
// password until the lock expires: a password is guessable, and
// answering a right guess differently would let the guessing go on.

// SignInVerdict is what a failed sign-in leads to.
type SignInVerdict struct {
	// Delay is how long to wait before answering.
	Delay time.Duration
	// Locked: the account (or the address) is locked; answer 429 with
	// Retry-After RetryAfter seconds.
	Locked     bool
	RetryAfter int
	// Failures counts the account's failures, this one included.
	Failures int
}

func accountKey(account string) string { return "account:" + account }

// SignInBlocked reports whether a sign-in to account from addr must be
// refused before the password is checked: the address used its
// failures of the minute, or the account is locked.
func (g *AuthGuard) SignInBlocked(addr, account string) (retryAfter int, blocked bool) {
	if retry, blocked := g.addressBlocked(addr); blocked {
		return retry, true
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.keys[accountKey(account)]; f != nil && now.Before(f.lockedUntil) {
		return secondsUntil(now, f.lockedUntil), true
	}
	return 0, false
}

// SignInFailed records a failed sign-in to account from addr.
func (g *AuthGuard) SignInFailed(addr, account string) SignInVerdict {
	left, _, _ := g.addr.take(addr, maxAuthFailures)
	v := g.failID(accountKey(account))
	out := SignInVerdict{Delay: v.delay, Locked: v.locked, RetryAfter: v.retryAfter, Failures: v.failures}
	if left == 0 && !out.Locked {
		out.Locked, out.RetryAfter, out.Delay = true, 60, 0
	}
	return out
}

// SignInSucceeded forgets an account's failures.
func (g *AuthGuard) SignInSucceeded(account string) {
	g.mu.Lock()
	delete(g.keys, accountKey(account))
	g.mu.Unlock()
}

// Wait sleeps for d or until ctx ends (the delay of a failed login).
func Wait(ctx context.Context, d time.Duration) { wait(ctx, d) }
