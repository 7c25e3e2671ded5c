package codecserver

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter keeps one token bucket per key (an identity's subject, or a remote IP for failed authentication).
// Its memory is bounded: idle buckets are dropped when the map grows past maxKeys. For identities a token is one
// payload (a request costs at least one), so a client that decodes one payload per request (the temporal CLI) and
// one that sends a whole history in one request meet the same budget.
//
// K is the key's type: a comparable struct for identities (userKey) rather than a string built per request, whose
// concatenation was an allocation per request.
type limiter[K comparable] struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	buckets map[K]*bucket
}

type bucket struct {
	l    *rate.Limiter
	last time.Time
}

const maxLimiterKeys = 10000

func newLimiter[K comparable](limit rate.Limit, burst int) *limiter[K] {
	return &limiter[K]{limit: limit, burst: burst, buckets: map[K]*bucket{}}
}

// allow takes one token for key, or says how long until one is available.
func (l *limiter[K]) allow(key K, now time.Time) (bool, time.Duration) {
	return l.allowN(key, 1, now)
}

// allowN takes n tokens for key, or says how long until they are available (math.MaxInt64 if n exceeds the burst,
// which no wait can satisfy).
func (l *limiter[K]) allowN(key K, n int, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxLimiterKeys {
			l.sweep(now)
		}
		b = &bucket{l: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.last = now
	r := b.l.ReserveN(now, n)
	if !r.OK() {
		return false, time.Duration(math.MaxInt64)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// has says whether key has at least one token left, without taking it: the cheap check made before reading a body.
func (l *limiter[K]) has(key K, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return true, 0
	}
	if t := b.l.TokensAt(now); t < 1 {
		return false, time.Duration((1 - t) / float64(l.limit) * float64(time.Second))
	}
	return true, 0
}

// sweep drops buckets idle long enough to have refilled; if that frees nothing, it starts over (forgetting state is the lesser harm than unbounded memory).
func (l *limiter[K]) sweep(now time.Time) {
	refill := time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)) + time.Second
	for k, b := range l.buckets {
		if now.Sub(b.last) > refill {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxLimiterKeys {
		l.buckets = map[K]*bucket{}
	}
}
