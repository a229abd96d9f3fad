package hub_test

import (
	"context"
	"fmt"
	"strings"
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
	text := "0123456789012345678901234567890123456789012345678901234567890123"
	for _, mode := range []string{"follow", "next"} {
		b.Run(mode, func(b *testing.B) {
			benchFanOut(b, mode == "follow", chat.Event{Room: "bench", Kind: chat.KindMessage, From: "w", Text: text})
		})
	}
}

// BenchmarkFanOutFile compares a file entry with a message whose text is
// as long as the file's metadata: a file costs the fan-out what a short
// message does, because its bytes are never in the stream, only its url.
func BenchmarkFanOutFile(b *testing.B) {
	attrs, cerr := chat.NewAttrs(map[string]string{
		"name": "holiday-photo.png", "mime": "image/png", "size": "1843200", "width": "1600", "height": "1200",
		"url": "/files/bench/q3Jx0Vd9Ew2c5Lh1Zr8sYA",
	})
	if cerr != nil {
		b.Fatal(cerr)
	}
	file := chat.Event{Room: "bench", Kind: chat.KindFile, From: "w", Attrs: attrs}
	msg := chat.Event{Room: "bench", Kind: chat.KindMessage, From: "w", Text: strings.Repeat("x", len(attrs))}
	b.Run("message", func(b *testing.B) { benchFanOut(b, true, msg) })
	b.Run("file", func(b *testing.B) { benchFanOut(b, true, file) })
}

// counter is a follower that counts the messages it is sent; in "next"
// mode it is not a follower but a reader goroutine on Next.
type counter struct {
	s       *hub.Session
	pending *atomic.Int64
	done    chan struct{}
}

func (c *counter) TryWrite(payloads [][]byte) (int, bool) {
	c.count(payloads)
	return len(payloads), true
}

func (c *counter) Write(payloads ...[]byte) error {
	c.count(payloads)
	return nil
}

func (c *counter) count(payloads [][]byte) {
	for _, p := range payloads {
		// Messages and files only; joins and leaves are ignored. The
		// payload is what a connection would send: {"type":"...
		if len(p) > 9 && p[9] != 'j' && p[9] != 'l' && c.pending.Add(-1) == 0 {
			c.done <- struct{}{}
		}
	}
}

// read reads with Next for ever, as a goroutine per connection would.
func (c *counter) read(ctx context.Context) {
	var payloads [][]byte
	for {
		batch, err := c.s.Next(ctx)
		if err != nil {
			return
		}
		payloads = payloads[:0]
		for i := range batch {
			payloads = append(payloads, batch[i].Payload)
		}
		c.count(payloads)
	}
}

func benchFanOut(b *testing.B, follow bool, e chat.Event) {
	const sessions = 1000
	h, st, _ := setup(b, 1_000_000, hub.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pending atomic.Int64
	done := make(chan struct{}, 1)
	for i := range sessions {
		s, _, err := h.Join(ctx, hub.JoinRequest{Room: "bench", Name: fmt.Sprint("u", i), Conn: fmt.Sprint("c", i)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _, _ = s.Leave(context.Background()) })
		c := &counter{s: s, pending: &pending, done: done}
		if follow {
			s.Start(c, func(error) {})
		} else {
			go c.read(ctx)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	pending.Store(int64(b.N) * sessions)
	for range b.N {
		if _, err := st.Append(ctx, e, ""); err != nil {
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
