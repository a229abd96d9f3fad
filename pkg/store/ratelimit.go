package store

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// SendLimiter is a send budget per user shared by every replica: GCRA in
// Redis (go-redis/redis_rate), one key per user, so it works on Redis
// Cluster as on a single server.
type SendLimiter struct {
	l      *redis_rate.Limiter
	limit  redis_rate.Limit
	prefix string
}

// SendLimiter returns a limiter of rate sends per second, bursts of burst.
func (s *Store) SendLimiter(rate float64, burst int) *SendLimiter {
	// redis_rate counts whole events per period; a period of 1,000 s keeps
	// fractional rates (0.5/s) exact.
	return &SendLimiter{
		l:      redis_rate.NewLimiter(s.rdb),
		limit:  redis_rate.Limit{Rate: int(math.Round(rate * 1000)), Burst: burst, Period: 1000 * time.Second},
		prefix: s.prefix,
	}
}

// Key is the limiter's key of a user (redis_rate adds its "rate:" prefix).
func (l *SendLimiter) Key(userID string) string { return l.prefix + ":{u:" + userID + "}:sends" }

// Allow takes one send from the user's budget, and reports whether there
// was one.
func (l *SendLimiter) Allow(ctx context.Context, userID string) (bool, error) {
	res, err := l.l.Allow(ctx, l.Key(userID), l.limit)
	if err != nil {
		return false, fmt.Errorf("rate limit %s: %w", userID, err)
	}
	return res.Allowed > 0, nil
}
