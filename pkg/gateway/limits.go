package gateway

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
)

// SendLimiter decides whether a user may send one more frame. The
// implementation behind it is shared by every replica (a Redis rate
// limiter), so a user with ten tabs on three replicas has one budget.
type SendLimiter interface {
	// Allow reports whether the user may send now; an error means the
	// limiter could not tell, and the frame is allowed.
	Allow(ctx context.Context, userID string) (bool, error)
}

// frameLimiter is one connection's budget: the shared one for a signed-in
// user when the server has a SendLimiter, the connection's own otherwise.
type frameLimiter struct {
	local  *rate.Limiter
	shared SendLimiter
	user   string
}

func (l frameLimiter) allow(ctx context.Context) bool {
	if l.shared != nil && l.user != "" {
		ok, err := l.shared.Allow(ctx, l.user)
		if err == nil {
			return ok
		}
		// Redis trouble must not silence everyone: fall back to the
		// connection's own budget.
	}
	return l.local.Allow()
}

// addrCounter caps the open websockets per client address on this replica.
type addrCounter struct {
	max   int
	mu    sync.Mutex
	conns map[string]int
}

func newAddrCounter(max int) *addrCounter {
	return &addrCounter{max: max, conns: make(map[string]int)}
}

// acquire takes a slot for addr and returns the function that gives it
// back, or false when addr already holds max.
func (a *addrCounter) acquire(addr string) (release func(), ok bool) {
	if a.max <= 0 {
		return func() {}, true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conns[addr] >= a.max {
		return nil, false
	}
	a.conns[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.conns[addr]--; a.conns[addr] <= 0 {
				delete(a.conns, addr)
			}
		})
	}, true
}
