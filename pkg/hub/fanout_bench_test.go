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
// benchmark ends when every session's Next has returned every message.
// ns/delivery is the cost per message per session.
func BenchmarkFanOut(b *testing.B) {
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
		go func() {
			for {
				batch, err := s.Next(ctx)
				if err != nil {
					return
				}
				for _, e := range batch {
					// Messages only; joins are ignored. The frame is what a
					// connection would write.
					if len(e.Frame) > 0 && e.Frame[9] == 'm' && pending.Add(-1) == 0 {
						done <- struct{}{}
					}
				}
			}
		}()
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
