package api

import (
	"sync"
	"time"
)

// limiter counts requests per key in fixed one-minute windows, as
// Freshdesk's per-minute limits do. It is safe for concurrent use; a
// key's window is forgotten once it has ended.
type limiter struct {
	now func() time.Time
	mu  sync.Mutex
	win map[string]*window
}

type window struct {
	start time.Time
	used  int
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, win: map[string]*window{}}
}

// take counts one request of key against limit. It returns the
// requests left in the window, and when the limit is exceeded, false
// with the seconds until the window ends.
func (l *limiter) take(key string, limit int) (remaining, retryAfter int, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.win[key]
	if w == nil || now.Sub(w.start) >= time.Minute {
		if len(l.win) > 10000 {
			for k, v := range l.win {
				if now.Sub(v.start) >= time.Minute {
					delete(l.win, k)
				}
			}
		}
		w = &window{start: now}
		l.win[key] = w
	}
	if w.used >= limit {
		retry := int((time.Minute - now.Sub(w.start) + time.Second - 1) / time.Second)
		return 0, max(retry, 1), false
	}
	w.used++
	return limit - w.used, 0, true
}

// blocked reports whether key has used all of limit in its current
// window, without counting a request, and the seconds until it ends.
func (l *limiter) blocked(key string, limit int) (retryAfter int, blocked bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.win[key]
	if w == nil || now.Sub(w.start) >= time.Minute || w.used < limit {
		return 0, false
	}
	retry := int((time.Minute - now.Sub(w.start) + time.Second - 1) / time.Second)
	return max(retry, 1), true
}
