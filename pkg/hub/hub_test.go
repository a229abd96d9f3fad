package hub_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/redistest"
	"github.com/streamchat/streamchat/pkg/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 15 * time.Second

func setup(t testing.TB, maxLen int64, opts hub.Options) (*hub.Hub, *store.Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	st := store.New(srv.Client(), store.Options{Prefix: redistest.Prefix(t), MaxLen: maxLen})
	if opts.Block == 0 {
		opts.Block = 100 * time.Millisecond
	}
	opts.OpenBells = hub.OpenWith(st.NewBells)
	h := hub.New(st, zaptest.NewLogger(t), opts)
	t.Cleanup(h.Close)
	return h, st, srv
}

func join(t testing.TB, h *hub.Hub, room, name string) *hub.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, _, err := h.Join(ctx, hub.JoinRequest{Room: room, Name: name, Conn: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = s.Leave(context.Background()) })
	return s
}

func post(t *testing.T, st *store.Store, room string, n int) []chat.ID {
	t.Helper()
	ids := make([]chat.ID, n)
	for i := range ids {
		ack, err := st.Append(context.Background(), chat.Event{Room: room, Kind: chat.KindMessage, From: "w", Text: fmt.Sprint(i)}, "")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = ack.ID
	}
	return ids
}

// collect calls Next until it has n entries.
func collect(t *testing.T, s *hub.Session, n int) []chat.ID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var got []chat.ID
	for len(got) < n {
		batch, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d entries %v: %v", len(got), got, err)
		}
		for _, e := range batch {
			got = append(got, e.ID())
		}
	}
	return got
}

// A session far behind a small window reads the gap from Redis and then
// continues from the window, each entry once and in order.
func TestSlowSessionReadsBehindTheWindow(t *testing.T) {
	h, st, _ := setup(t, 100000, hub.Options{Window: 4, Batch: 3})
	fast := join(t, h, "r", "fast")
	slow := join(t, h, "r", "slow")
	want := post(t, st, "r", 50)
	// fast sees both joins first, slow only its own, then the 50 messages.
	gotFast := collect(t, fast, 52)[2:]
	gotSlow := collect(t, slow, 51)[1:]
	if fmt.Sprint(gotFast) != fmt.Sprint(want) || fmt.Sprint(gotSlow) != fmt.Sprint(want) {
		t.Fatalf("fast %v\nslow %v\nwant %v", gotFast, gotSlow, want)
	}
}

// When the entries after a session's cursor have been trimmed away, Next
// says so instead of skipping them.
func TestLaggedWhenTrimmed(t *testing.T) {
	h, st, _ := setup(t, 100, hub.Options{Window: 4})
	s := join(t, h, "r", "slow")
	post(t, st, "r", 500)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, hub.ErrLagged) {
		t.Fatalf("Next = %v, want ErrLagged", err)
	}
}

func TestRoomStopsWhenIdle(t *testing.T) {
	h, _, _ := setup(t, 2000, hub.Options{IdleTimeout: 20 * time.Millisecond})
	s := join(t, h, "r", "ann")
	if h.Rooms() != 1 {
		t.Fatalf("rooms = %d", h.Rooms())
	}
	if _, err := s.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitFor)
	for h.Rooms() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("room still active after its last session left")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHealthyNoticesAStuckTail(t *testing.T) {
	h, _, srv := setup(t, 2000, hub.Options{Block: 50 * time.Millisecond})
	join(t, h, "r", "ann")
	deadline := time.Now().Add(waitFor)
	for h.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Healthy = %v with Redis up", h.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Stop()
	for h.Healthy() == nil {
		if time.Now().After(deadline) {
			t.Fatal("Healthy never reported the failing tail")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Restart()
	for h.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Healthy = %v after Redis came back", h.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseEndsSessions(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprint("direct=", direct), func(t *testing.T) {
			h, _, _ := setup(t, 2000, hub.Options{Direct: direct})
			s := join(t, h, "r", "ann")
			collect(t, s, 1) // own join
			errc := make(chan error, 1)
			go func() {
				_, err := s.Next(context.Background())
				errc <- err
			}()
			h.Close()
			if err := <-errc; !errors.Is(err, hub.ErrClosed) {
				t.Fatalf("Next = %v, want ErrClosed", err)
			}
			if _, _, err := h.Join(context.Background(), hub.JoinRequest{Room: "r", Name: "bob", Conn: "b"}); !errors.Is(err, hub.ErrClosed) {
				t.Fatalf("Join after Close = %v", err)
			}
		})
	}
}
