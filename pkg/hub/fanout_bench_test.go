package hub_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/store"
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
			benchFanOut(b, mode == "follow", 0, appendEach(chat.Event{Room: "bench", Kind: chat.KindMessage, From: "w", Text: text}))
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
	b.Run("message", func(b *testing.B) { benchFanOut(b, true, 0, appendEach(msg)) })
	b.Run("file", func(b *testing.B) { benchFanOut(b, true, 0, appendEach(file)) })
}

// BenchmarkFanOutConversation compares what a room's members are sent
// besides messages with a short message: a typing notice (pub/sub, never
// stored) and a reaction (a stream entry carrying its count). Each op is
// another user's, as the typing throttle and the one-reaction-per-user
// rule would otherwise drop it. All three go at one pace, an op every
// 500 µs, longer than any of them takes: on this machine a process's CPU
// grows with the time it waits (timers, the scheduler, the runtime's
// monitor), and an op that waits longer on Redis (a reaction's script)
// would otherwise be charged for the wait; unpaced, a message followed by
// a 180 µs sleep costs 2.4× the CPU per delivery of one without.
func BenchmarkFanOutConversation(b *testing.B) {
	const pace = 500 * time.Microsecond
	short := chat.Event{Room: "bench", Kind: chat.KindMessage, From: "Ada", UID: "ada", Text: "on my way"}
	b.Run("message", func(b *testing.B) { benchFanOut(b, true, pace, appendEach(short)) })
	b.Run("typing", func(b *testing.B) {
		frame := chat.EncodeTyping("bench", "Ada", "ada")
		benchFanOut(b, true, pace, func(ctx context.Context, st *store.Store, i int) error {
			_, err := st.Typing(ctx, "bench", "typist", fmt.Sprint("u", i), "", frame)
			return err
		})
	})
	b.Run("react", func(b *testing.B) {
		var target chat.ID
		benchFanOut(b, true, pace, func(ctx context.Context, st *store.Store, i int) error {
			if i < 0 { // before the sessions join: the message reacted to
				ack, err := st.Append(ctx, short, "")
				target = ack.ID
				return err
			}
			_, err := st.Amend(ctx, chat.Amendment{
				Event: chat.Event{Room: "bench", Kind: chat.KindReact, From: "Ada", UID: fmt.Sprint("u", i)},
				Ref:   target, Emoji: "👍", On: true,
			})
			return err
		})
	})
}

// appendEach sends e once per op.
func appendEach(e chat.Event) func(ctx context.Context, st *store.Store, i int) error {
	return func(ctx context.Context, st *store.Store, i int) error {
		if i < 0 {
			return nil
		}
		_, err := st.Append(ctx, e, "")
		return err
	}
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

// benchFanOut runs send(i) for each op i, after send(-1) before the
// sessions join; with a pace, op i starts no sooner than i paces after the
// first.
func benchFanOut(b *testing.B, follow bool, pace time.Duration, send func(ctx context.Context, st *store.Store, i int) error) {
	const sessions = 1000
	// No presence refresh and no sweep during the run: they cost CPU by
	// the second, not by the op, and would charge an op that waits longer
	// on Redis for the wait.
	h, st, _ := setup(b, 1_000_000, hub.Options{Block: time.Minute, PresenceTTL: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := send(ctx, st, -1); err != nil {
		b.Fatal(err)
	}
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
	// Settle: the joins' entries have sent some sessions to catch up; one
	// message that everyone gets, and a moment, bring them all back to
	// following. A typing notice offered meanwhile would be missed, as it
	// may be in the product, and the count would never close.
	pending.Store(sessions)
	if _, err := st.Append(ctx, chat.Event{Room: "bench", Kind: chat.KindMessage, From: "w", Text: "settle"}, ""); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("the settling message: %d deliveries missing", pending.Load())
	}
	time.Sleep(200 * time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime(b)
	pending.Store(int64(b.N) * sessions)
	for i := range b.N {
		if wait := time.Until(start.Add(time.Duration(i) * pace)); wait > 0 {
			time.Sleep(wait)
		}
		if err := send(ctx, st, i); err != nil {
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
	// This process's CPU (the hub and the Redis client, not Redis): what
	// the fan-out costs a replica, whatever the Redis round trips add to
	// the wall time.
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N*sessions), "cpu-ns/delivery")
	cancel()
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
