package hub_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
)

// Rooms joining and leaving a shared read, while another room of the same
// read has steady traffic: every room gets each of its entries once and in
// order, the busy room included.
func TestRoomsComeAndGoUnderTraffic(t *testing.T) {
	h, st, _ := setup(t, 100000, hub.Options{IdleTimeout: time.Millisecond})
	steady := join(t, h, "steady", "ann")
	const n = 400
	var (
		wg   sync.WaitGroup
		want []chat.ID
	)
	wg.Go(func() {
		for i := range n {
			ack, err := st.Append(context.Background(), chat.Event{Room: "steady", Kind: chat.KindMessage, From: "w", Text: fmt.Sprint(i)}, "")
			if err != nil {
				t.Error(err)
				return
			}
			want = append(want, ack.ID)
			if i%8 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	for i := range 40 {
		room := fmt.Sprint("visit", i)
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		s, _, err := h.Join(ctx, hub.JoinRequest{Room: room, Name: "bob", Conn: fmt.Sprint("bob", i)})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ids := post(t, st, room, 3)
		if got := collect(t, s, 4)[1:]; fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("room %s: got %v, want %v", room, got, ids)
		}
		if _, err := s.Leave(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	got := collect(t, steady, n+1)[1:] // its own join first
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the busy room: %d entries, want %d, in order and once each\ngot  %v\nwant %v", len(got), len(want), got, want)
	}
}

// A session whose cursor the stream trimmed away learns it (ErrLagged)
// when its room shares reads with others, and the others go on.
func TestTrimmedCursorInASharedRead(t *testing.T) {
	h, st, _ := setup(t, 100, hub.Options{Window: 4})
	a := join(t, h, "a", "ann")
	slow := join(t, h, "b", "slow")
	c := join(t, h, "c", "cat")
	post(t, st, "b", 500)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := slow.Next(ctx); !errors.Is(err, hub.ErrLagged) {
		t.Fatalf("Next = %v, want ErrLagged", err)
	}
	for _, s := range []struct {
		room string
		s    *hub.Session
	}{{"a", a}, {"c", c}} {
		ids := post(t, st, s.room, 3)
		got := collect(t, s.s, 4)
		if fmt.Sprint(got[len(got)-3:]) != fmt.Sprint(ids) {
			t.Fatalf("room %s after the trim of b: %v, want %v at the end", s.room, got, ids)
		}
	}
}

// Messages whose bells bring them are delivered without reading the
// stream: a follower gets every one, in order, while the replica's reads
// of the stream stay at the sweeps'.
func TestCarriedBellsSaveReads(t *testing.T) {
	h, st, srv := setup(t, 100000, hub.Options{Block: time.Second})
	s := join(t, h, "quiet", "ann")
	collect(t, s, 1) // its join
	rdb := srv.Client()
	if err := rdb.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	const n = 200
	want := make([]chat.ID, n)
	for i := range want {
		ack, err := st.Append(context.Background(), chat.Event{Room: "quiet", Kind: chat.KindMessage, From: "w", Text: fmt.Sprint(i), Nonce: fmt.Sprint("n", i)}, "w")
		if err != nil {
			t.Fatal(err)
		}
		want[i] = ack.ID
	}
	if got := collect(t, s, n); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	stats, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	reads := commandCalls(stats, "xread")
	if reads > 10 {
		t.Fatalf("%d XREADs for %d messages whose bells carried them, want only the sweeps'", reads, n)
	}
}

// An entry appended without a bell (or whose bell was lost) is still
// delivered, in order: the next bell's entry does not follow the room's
// cursor, so the room is read from its cursor.
func TestEntryWithoutABellIsStillRead(t *testing.T) {
	h, st, srv := setup(t, 100000, hub.Options{Block: time.Hour}) // no sweep to help
	s := join(t, h, "r", "ann")
	collect(t, s, 1)
	silent, err := srv.Client().XAdd(context.Background(), &redis.XAddArgs{Stream: st.LogKey("r"), Values: []any{"type", "message", "from", "x", "text", "unrung"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	ack, err := st.Append(context.Background(), chat.Event{Room: "r", Kind: chat.KindMessage, From: "w", Text: "rung", Nonce: "n"}, "w")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(collect(t, s, 2)), fmt.Sprint([]chat.ID{chat.MustParseID(silent), ack.ID}); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// commandCalls is the number of calls of cmd in INFO commandstats.
func commandCalls(stats, cmd string) int {
	for _, line := range strings.Split(stats, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}
