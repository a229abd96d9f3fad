package hub_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
)

// BenchmarkFanOut measures one room's fan-out to 1,000 local sessions in
// shared mode, Redis included: each op appends one 64-byte message, and the
// benchmark ends when every session has been handed every message.
// ns/delivery is the cost per message per session. "follow" is how the
// gateway's connections that keep up are served (the tailer hands them each
// batch); "next" is a reader goroutine per session, as a connection that
// is catching up reads.
func BenchmarkFanOut(b *testing.B) {
	for _, mode := range []string{"follow", "next"} {
		b.Run(mode, func(b *testing.B) { benchFanOut(b, mode == "follow") })
	}
}

// counter is a follower that counts the messages it is handed.
type counter struct {
	s       *hub.Session
	pending *atomic.Int64
	done    chan struct{}
	wake    chan struct{}
}

func (c *counter) Offer(entries []hub.Entry) (int, bool) {
	c.count(entries)
	return len(entries), true
}

func (c *counter) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *counter) count(entries []hub.Entry) {
	for _, e := range entries {
		// Messages only; joins are ignored. The frame is what a connection
		// would write.
		if len(e.Frame) > 0 && e.Frame[9] == 'm' && c.pending.Add(-1) == 0 {
			c.done <- struct{}{}
		}
	}
}

// read reads on by itself (follow: until nothing is ready, then follows
// and waits to be woken; otherwise: with Next, for ever).
func (c *counter) read(ctx context.Context, follow bool) {
	for {
		var batch []hub.Entry
		var err error
		if follow {
			batch, err = c.s.TryNext(ctx)
		} else {
			batch, err = c.s.Next(ctx)
		}
		if err != nil {
			return
		}
		c.count(batch)
		if follow && len(batch) == 0 {
			c.s.Follow(c)
			select {
			case <-c.wake:
			case <-ctx.Done():
				return
			}
		}
	}
}

func benchFanOut(b *testing.B, follow bool) {
	const sessions = 1000
	h, st, _ := setup(b, 1_000_000, hub.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pending atomic.Int64
	done := make(chan struct{}, 1)
	for i := range sessions {
		s, err := h.Join(ctx, hub.JoinRequest{Room: "bench", Name: fmt.Sprint("u", i), Conn: fmt.Sprint("c", i)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _, _ = s.Leave(context.Background()) })
		c := &counter{s: s, pending: &pending, done: done, wake: make(chan struct{}, 1)}
		go c.read(ctx, follow)
	}
	text := "0123456789012345678901234567890123456789012345678901234567890123"
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	pending.Store(int64(b.N) * sessions)
	for range b.N {
		if _, err := st.Append(ctx, chat.Event{Room: "bench", Kind: chat.KindMessage, From: "w", Text: text}); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("%d deliveries missing", pending.Load())
	}
	b.StopTimer()
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*sessions), "ns/delivery")
	cancel()
}
