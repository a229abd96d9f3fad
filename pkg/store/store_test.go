package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/redistest"
)

func newStore(t *testing.T, maxLen int64) (*Store, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	return New(rdb, Options{Prefix: redistest.Prefix(t), MaxLen: maxLen}), rdb
}

func appendN(t *testing.T, s *Store, room string, kind chat.Kind, n int) []chat.ID {
	t.Helper()
	ids := make([]chat.ID, n)
	for i := range ids {
		ack, err := s.Append(context.Background(), chat.Event{Room: room, Kind: kind, From: "ann", Text: fmt.Sprint("m", i)}, "")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = ack.ID
	}
	return ids
}

func TestKeysShareHashTag(t *testing.T) {
	s := New(nil, Options{})
	if got := s.LogKey("lobby"); got != "chat:{lobby}:log" {
		t.Fatalf("LogKey = %q", got)
	}
	if got := s.OnlineKey("lobby"); got != "chat:{lobby}:online" {
		t.Fatalf("OnlineKey = %q", got)
	}
}

func TestRecentSkipsPresenceAndFixesBoundary(t *testing.T) {
	s, _ := newStore(t, 2000)
	ctx := context.Background()

	events, boundary, err := s.Recent(ctx, "empty", 50)
	if err != nil || len(events) != 0 || !boundary.IsZero() {
		t.Fatalf("empty room: %v, %v, %v", events, boundary, err)
	}

	msgs := appendN(t, s, "r", chat.KindMessage, 60)
	// Many presence entries after the messages: the replay must look past them.
	joins := appendN(t, s, "r", chat.KindJoin, 300)
	events, boundary, err = s.Recent(ctx, "r", 50)
	if err != nil {
		t.Fatal(err)
	}
	if boundary != joins[len(joins)-1] {
		t.Fatalf("boundary = %v, want the newest entry %v", boundary, joins[len(joins)-1])
	}
	if len(events) != 50 {
		t.Fatalf("got %d events, want 50", len(events))
	}
	for i, e := range events {
		if e.ID != msgs[10+i] || e.Kind != chat.KindMessage || e.Text != fmt.Sprint("m", 10+i) || e.Room != "r" {
			t.Fatalf("event %d = %+v, want message %v", i, e, msgs[10+i])
		}
	}
}

func TestAfterContinuity(t *testing.T) {
	ctx := context.Background()
	t.Run("empty room resumes from 0-0", func(t *testing.T) {
		s, _ := newStore(t, 2000)
		if ev, _, err := s.After(ctx, "r", chat.ID{}, 10); err != nil || len(ev) != 0 {
			t.Fatalf("After(0-0) on a missing stream = %v, %v", ev, err)
		}
		if _, _, err := s.After(ctx, "r", chat.ID{Ms: 1}, 10); !errors.Is(err, chat.ErrGap) {
			t.Fatalf("After(1-0) on a missing stream: err = %v, want ErrGap", err)
		}
	})
	t.Run("untrimmed stream resumes from anywhere", func(t *testing.T) {
		s, _ := newStore(t, 2000)
		ids := appendN(t, s, "r", chat.KindMessage, 30)
		ev, last, err := s.After(ctx, "r", chat.ID{}, 100)
		if err != nil || len(ev) != 30 || last != ids[29] {
			t.Fatalf("After(0-0) = %d events, last %v, %v", len(ev), last, err)
		}
		ev, _, err = s.After(ctx, "r", ids[9], 5)
		if err != nil || len(ev) != 5 || ev[0].ID != ids[10] {
			t.Fatalf("After(ids[9]) = %+v, %v", ev, err)
		}
	})
	t.Run("newer than generated is a gap", func(t *testing.T) {
		s, _ := newStore(t, 2000)
		ids := appendN(t, s, "r", chat.KindMessage, 3)
		future := chat.ID{Ms: ids[2].Ms + 1000}
		if _, _, err := s.After(ctx, "r", future, 10); !errors.Is(err, chat.ErrGap) {
			t.Fatalf("err = %v, want ErrGap", err)
		}
	})
	t.Run("trimmed is a gap", func(t *testing.T) {
		s, _ := newStore(t, 100)
		ids := appendN(t, s, "r", chat.KindMessage, 400)
		if _, _, err := s.After(ctx, "r", chat.ID{}, 10); !errors.Is(err, chat.ErrGap) {
			t.Fatalf("After(0-0) after trimming: err = %v, want ErrGap", err)
		}
		if _, _, err := s.After(ctx, "r", ids[0], 10); !errors.Is(err, chat.ErrGap) {
			t.Fatalf("After(first) after trimming: err = %v, want ErrGap", err)
		}
		ev, _, err := s.After(ctx, "r", ids[398], 10)
		if err != nil || len(ev) != 1 || ev[0].ID != ids[399] {
			t.Fatalf("After(recent) = %+v, %v", ev, err)
		}
	})
	t.Run("deleted after the id is a gap", func(t *testing.T) {
		s, rdb := newStore(t, 2000)
		ids := appendN(t, s, "r", chat.KindMessage, 10)
		if err := rdb.XDel(ctx, s.LogKey("r"), ids[5].String()).Err(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.After(ctx, "r", ids[2], 10); !errors.Is(err, chat.ErrGap) {
			t.Fatalf("err = %v, want ErrGap", err)
		}
		if _, _, err := s.After(ctx, "r", ids[6], 10); err != nil {
			t.Fatalf("after the deleted entry: err = %v", err)
		}
	})
}

// The embedded server has no deletion bookkeeping; After falls back to
// checking that the ID's own entry exists.
func TestAfterEmbeddedFallback(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, Options{MaxLen: 100})
	ctx := context.Background()
	ids := appendN(t, s, "r", chat.KindMessage, 10)
	if ev, _, err := s.After(ctx, "r", chat.ID{}, 100); err != nil || len(ev) != 10 {
		t.Fatalf("After(0-0) = %d, %v", len(ev), err)
	}
	if ev, _, err := s.After(ctx, "r", ids[4], 100); err != nil || len(ev) != 5 {
		t.Fatalf("After(ids[4]) = %d, %v", len(ev), err)
	}
	if _, _, err := s.After(ctx, "r", chat.ID{Ms: ids[4].Ms, Seq: ids[4].Seq + 1}, 100); !errors.Is(err, chat.ErrGap) && ids[5] != (chat.ID{Ms: ids[4].Ms, Seq: ids[4].Seq + 1}) {
		t.Fatalf("unknown id: err = %v, want ErrGap", err)
	}
	appendN(t, s, "r", chat.KindMessage, 200)
	if _, _, err := s.After(ctx, "r", ids[0], 100); !errors.Is(err, chat.ErrGap) {
		t.Fatalf("trimmed id: err = %v, want ErrGap", err)
	}
}

func TestReadBlocksThenDelivers(t *testing.T) {
	s, _ := newStore(t, 2000)
	ctx := context.Background()
	ev, err := s.Read(ctx, "r", chat.ID{}, 10, 50*time.Millisecond)
	if err != nil || len(ev) != 0 {
		t.Fatalf("Read on an empty stream = %v, %v", ev, err)
	}
	done := make(chan []chat.Event)
	go func() {
		ev, err := s.Read(ctx, "r", chat.ID{}, 10, 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- ev
	}()
	ids := appendN(t, s, "r", chat.KindMessage, 1)
	if ev := <-done; len(ev) != 1 || ev[0].ID != ids[0] {
		t.Fatalf("Read = %+v, want %v", ev, ids[0])
	}
}

func TestPresenceLeaveExactlyOnce(t *testing.T) {
	s, rdb := newStore(t, 2000)
	ctx := context.Background()
	ann := chat.Member{Conn: "c1", Name: "ann"}
	bob := chat.Member{Conn: "c2", Name: "bob"}
	bob2 := chat.Member{Conn: "c3", Name: "bob"}
	for _, m := range []chat.Member{ann, bob, bob2} {
		if _, _, err := s.Join(ctx, "r", m, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if names := online(t, s, "r"); fmt.Sprint(names) != "[ann bob]" {
		t.Fatalf("online = %v", names)
	}
	for i, want := range []bool{true, false} {
		left, err := s.Leave(ctx, "r", ann)
		if err != nil || left != want {
			t.Fatalf("Leave #%d = %v, %v; want %v", i, left, err, want)
		}
	}
	msgs, _ := rdb.XRange(ctx, s.LogKey("r"), "-", "+").Result()
	leaves := 0
	for _, m := range msgs {
		if m.Values["type"] == "leave" {
			leaves++
		}
	}
	if len(msgs) != 4 || leaves != 1 {
		t.Fatalf("stream has %d entries with %d leaves, want 3 joins and 1 leave", len(msgs), leaves)
	}
}

func TestRefreshReapsExpired(t *testing.T) {
	s, rdb := newStore(t, 2000)
	ctx := context.Background()
	dead := chat.Member{Conn: "d1", Name: "ghost"}
	live := chat.Member{Conn: "l1", Name: "ann"}
	if _, _, err := s.Join(ctx, "r", dead, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Join(ctx, "r", live, time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the dead member's replica stopped refreshing
	n, err := s.Refresh(ctx, "r", []chat.Member{live}, time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("Refresh reaped %d, %v; want 1", n, err)
	}
	if n, _ := s.Refresh(ctx, "r", nil, time.Minute); n != 0 {
		t.Fatalf("second reap appended %d leaves", n)
	}
	names := online(t, s, "r")
	if fmt.Sprint(names) != "[ann]" {
		t.Fatalf("Online = %v", names)
	}
	last, _ := rdb.XRevRangeN(ctx, s.LogKey("r"), "+", "-", 1).Result()
	if last[0].Values["type"] != "leave" || last[0].Values["from"] != "ghost" {
		t.Fatalf("last entry = %v, want ghost's leave", last[0].Values)
	}
}

// online reads the distinct names of unexpired members straight from Redis.
func online(t *testing.T, s *Store, room string) []string {
	t.Helper()
	members, err := s.rdb.ZRangeByScore(context.Background(), s.OnlineKey(room),
		&redis.ZRangeBy{Min: "(" + msScore(time.Now()), Max: "+inf"}).Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range distinctPeople(members) {
		names = append(names, p.Name)
	}
	return names
}

// An event's attributes are stored with it and come back from every read,
// and an entry without any carries none.
func TestAttrsRoundTrip(t *testing.T) {
	s, _ := newStore(t, 2000)
	ctx := context.Background()
	want := map[string]string{"name": "cat.png", "size": "12345", "url": "/files/r/x"}
	attrs, cerr := chat.NewAttrs(want)
	if cerr != nil {
		t.Fatal(cerr)
	}
	ack, err := s.Append(ctx, chat.Event{Room: "r", Kind: "file", From: "ann", Nonce: "n", Attrs: attrs}, "c:ann")
	id := ack.ID
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "r", chat.KindMessage, 1)
	recent, _, err := s.Recent(ctx, "r", 10)
	if err != nil {
		t.Fatal(err)
	}
	after, _, err := s.After(ctx, "r", chat.ID{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	read, err := s.Read(ctx, "r", chat.ID{}, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]chat.Event{"Recent": recent, "After": after, "Read": read} {
		if len(got) != 2 || got[0].ID != id || got[0].Kind != "file" || got[0].Nonce != "n" || got[0].Attrs != attrs || fmt.Sprint(got[0].Attrs.Map()) != fmt.Sprint(want) {
			t.Fatalf("%s: %+v", name, got)
		}
		if got[1].Attrs != "" {
			t.Fatalf("%s: a message got attributes %v", name, got[1].Attrs)
		}
	}
}

func TestStat(t *testing.T) {
	s, _ := newStore(t, 2000)
	ctx := context.Background()
	if st, err := s.Stat(ctx, "new"); err != nil || st != (chat.RoomStat{}) {
		t.Fatalf("new room: %+v, %v", st, err)
	}
	ids := appendN(t, s, "r", chat.KindMessage, 4)
	if st, err := s.Stat(ctx, "r"); err != nil || st != (chat.RoomStat{Length: 4, LastID: ids[3]}) {
		t.Fatalf("Stat = %+v, %v; want 4 entries, last %s", st, err, ids[3])
	}
}

// Signed-in members count by user id, and their join and leave entries —
// their own or a reaping replica's — carry the id, whatever it holds.
func TestPresenceOfUsers(t *testing.T) {
	s, rdb := newStore(t, 2000)
	ctx := context.Background()
	tab1 := chat.Member{Conn: "c1", Name: "Ann", UID: "auth0|ann:1"}
	tab2 := chat.Member{Conn: "c2", Name: "Ann", UID: "auth0|ann:1"}
	sam1 := chat.Member{Conn: "c3", Name: "Sam", UID: "sam-1"}
	sam2 := chat.Member{Conn: "c4", Name: "Sam", UID: "sam-2"}
	anon := chat.Member{Conn: "c5", Name: "Sam"}
	var people []chat.Member
	for _, m := range []chat.Member{tab1, tab2, sam1, anon} {
		var err error
		if _, people, err = s.Join(ctx, "r", m, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Join(ctx, "r", sam2, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(people) != "[{ Ann auth0|ann:1} { Sam } { Sam sam-1}]" {
		t.Fatalf("people = %v", people)
	}
	if _, err := s.Leave(ctx, "r", tab1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // sam2's replica stopped refreshing
	if n, err := s.Refresh(ctx, "r", nil, time.Minute); err != nil || n != 1 {
		t.Fatalf("reaped %d, %v", n, err)
	}
	msgs, _ := rdb.XRange(ctx, s.LogKey("r"), "-", "+").Result()
	var got []string
	for _, m := range msgs {
		got = append(got, fmt.Sprintf("%s %s %v", m.Values["type"], m.Values["from"], m.Values["uid"]))
	}
	want := "[join Ann auth0|ann:1 join Ann auth0|ann:1 join Sam sam-1 join Sam <nil> join Sam sam-2 leave Ann auth0|ann:1 leave Sam sam-2]"
	if fmt.Sprint(got) != want {
		t.Fatalf("entries\n%v\nwant\n%v", got, want)
	}
}
