package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/redistest"
)

func msg(nonce, text string) chat.Event {
	return chat.Event{Room: "r", Kind: chat.KindMessage, From: "ann", Text: text, Nonce: nonce}
}

func streamLen(t *testing.T, rdb redis.Cmdable, s *Store, room string) int64 {
	t.Helper()
	n, err := rdb.XLen(context.Background(), s.LogKey(room)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return n
}

// A repeated (room, sender, nonce) is stored once, and the repeat returns
// the first entry's ID; another sender's same nonce, and a message with no
// sender or no nonce, are new entries.
func TestAppendDedupe(t *testing.T) {
	s, rdb := newStore(t, 2000)
	ctx := context.Background()
	first, err := s.Append(ctx, msg("n1", "hello"), "c:ann")
	if err != nil || first.Duplicate {
		t.Fatalf("first append: %+v %v", first, err)
	}
	again, err := s.Append(ctx, msg("n1", "hello"), "c:ann")
	if err != nil || !again.Duplicate || again.ID != first.ID {
		t.Fatalf("repeat: %+v %v, want duplicate of %s", again, err, first.ID)
	}
	// The repeat's text does not matter: the nonce names the message.
	if changed, _ := s.Append(ctx, msg("n1", "other text"), "c:ann"); !changed.Duplicate || changed.ID != first.ID {
		t.Fatalf("repeat with other text: %+v", changed)
	}
	bob, err := s.Append(ctx, msg("n1", "hello"), "c:bob")
	if err != nil || bob.Duplicate || bob.ID == first.ID {
		t.Fatalf("another sender's nonce: %+v %v", bob, err)
	}
	// The length prefix keeps "c:a" + "b:n1" apart from "c:a:b" + "n1".
	if a, _ := s.Append(ctx, msg("b:n1", "x"), "c:a"); a.Duplicate {
		t.Fatal("sender/nonce split collided")
	}
	if b, _ := s.Append(ctx, msg("n1", "x"), "c:a:b"); b.Duplicate {
		t.Fatal("sender/nonce split collided")
	}
	for range 2 {
		if a, _ := s.Append(ctx, msg("", "no nonce"), "c:ann"); a.Duplicate {
			t.Fatal("a message without nonce was deduplicated")
		}
		if a, _ := s.Append(ctx, msg("n9", "no sender"), ""); a.Duplicate {
			t.Fatal("a message without sender was deduplicated")
		}
	}
	if n := streamLen(t, rdb, s, "r"); n != 8 {
		t.Fatalf("stream holds %d entries, want 8", n)
	}
	// The record lives under the room's hash tag, with the window as TTL.
	ttl, err := rdb.PTTL(ctx, s.SentKey("r", "c:ann", "n1")).Result()
	if err != nil || ttl <= 4*time.Minute || ttl > 5*time.Minute {
		t.Fatalf("record TTL %v %v, want about the 5 minute default", ttl, err)
	}
	// A script flushed from Redis (a restart, SCRIPT FLUSH) is loaded again.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Append(ctx, msg("n1", "hello"), "c:ann"); err != nil || !a.Duplicate || a.ID != first.ID {
		t.Fatalf("after SCRIPT FLUSH: %+v %v", a, err)
	}
}

// After the window a nonce is free again: the same one makes a new entry.
func TestAppendDedupeWindow(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	s := New(rdb, Options{Prefix: redistest.Prefix(t), DedupeWindow: 200 * time.Millisecond})
	ctx := context.Background()
	first, err := s.Append(ctx, msg("n1", "hello"), "c:ann")
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Append(ctx, msg("n1", "hello"), "c:ann"); !a.Duplicate {
		t.Fatal("a repeat within the window was stored")
	}
	// Wait for Redis to expire the record: the window's end, as Redis sees it.
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Exists(ctx, s.SentKey("r", "c:ann", "n1")).Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the dedupe record did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
	later, err := s.Append(ctx, msg("n1", "hello"), "c:ann")
	if err != nil || later.Duplicate || later.ID == first.ID {
		t.Fatalf("after the window: %+v %v, want a new entry", later, err)
	}
	if n := streamLen(t, rdb, s, "r"); n != 2 {
		t.Fatalf("stream holds %d entries, want 2", n)
	}
}

// Redis stalls for longer than the caller waits: the append times out, the
// caller retries, and Redis runs both the late original and the retries
// once it wakes. One entry; every later retry gets its ID.
func TestAppendDedupeLateOriginal(t *testing.T) {
	srv := redistest.Start(t)
	// As the gateway configures it: the caller's deadline bounds each call.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	s := New(rdb, Options{Prefix: redistest.Prefix(t)})
	ctx := context.Background()
	if _, err := s.Append(ctx, msg("warm", "loads the script"), "c:ann"); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	for range 3 {
		tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := s.Append(tctx, msg("n1", "hello"), "c:ann")
		cancel()
		if err == nil {
			t.Fatal("append answered while Redis was stopped")
		}
	}
	srv.Resume()
	var ack chat.Ack
	deadline := time.Now().Add(10 * time.Second)
	for {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		a, err := s.Append(tctx, msg("n1", "hello"), "c:ann")
		cancel()
		if err == nil {
			ack = a
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("append after resume: %v", err)
		}
	}
	entries, err := rdb.XRange(ctx, s.LogKey("r"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var withNonce []string
	for _, m := range entries {
		if m.Values["nonce"] == "n1" {
			withNonce = append(withNonce, m.ID)
		}
	}
	if len(withNonce) != 1 || withNonce[0] != ack.ID.String() {
		t.Fatalf("entries with nonce n1: %v; ack %+v", withNonce, ack)
	}
	// Redis ran the queued original when it woke: the retry after it was a
	// duplicate. (Had it not, this test would not have tried the late case.)
	if !ack.Duplicate {
		t.Fatalf("the append after Redis woke stored the entry itself: %+v; the queued ones did not run", ack)
	}
}

// With AckReplicas an append returns once a replica has the entry; with
// the replica stalled it fails with ErrNotReplicated, and a retry of the
// same nonce once the replica is back appends nothing and succeeds.
func TestAppendWaitsForReplicas(t *testing.T) {
	// The replica's first sync starts at once instead of after 5 s.
	primary := redistest.StartWith(t, "--repl-diskless-sync-delay", "0")
	replica := redistest.StartReplica(t, primary)
	rdb := primary.Client()
	s := New(rdb, Options{Prefix: redistest.Prefix(t), AckReplicas: 1, AckTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	ack, err := s.Append(ctx, msg("n1", "hello"), "c:ann")
	if err != nil {
		t.Fatalf("append with a live replica: %v", err)
	}
	// Acknowledged means the replica has it, now.
	if n := streamLen(t, replica.Client(), s, "r"); n != 1 {
		t.Fatalf("replica holds %d entries after the ack, want 1", n)
	}
	if _, err := s.Append(ctx, msg("", "no nonce"), "c:ann"); err != nil {
		t.Fatalf("append without nonce with a live replica: %v", err)
	}

	replica.Pause()
	stalled, err := s.Append(ctx, msg("n2", "while the replica is stopped"), "c:ann")
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("append with the replica stopped: %+v %v, want ErrNotReplicated", stalled, err)
	}
	replica.Resume()
	retry, err := s.Append(ctx, msg("n2", "while the replica is stopped"), "c:ann")
	if err != nil || !retry.Duplicate || retry.ID != stalled.ID {
		t.Fatalf("retry after the replica is back: %+v %v, want the duplicate of %s", retry, err, stalled.ID)
	}
	if n := streamLen(t, replica.Client(), s, "r"); n != 3 {
		t.Fatalf("replica holds %d entries, want 3", n)
	}
	if n := streamLen(t, rdb, s, "r"); n != 3 {
		t.Fatalf("primary holds %d entries, want 3", n)
	}
	if ack.Duplicate {
		t.Fatalf("first append: %+v", ack)
	}
}

// The embedded server (go run ./cmd/gateway with no CHAT_REDIS_URL) runs
// the append script too.
func TestAppendDedupeEmbedded(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, Options{})
	ctx := context.Background()
	first, err := s.Append(ctx, msg("n1", "hello"), "c:ann")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Append(ctx, msg("n1", "hello"), "c:ann")
	if err != nil || !again.Duplicate || again.ID != first.ID {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	recent, _, err := s.Recent(ctx, "r", 10)
	if err != nil || len(recent) != 1 || recent[0].Text != "hello" || recent[0].Nonce != "n1" || recent[0].From != "ann" {
		t.Fatalf("stream: %+v %v", recent, err)
	}
}

// A cursor naming an entry the stream has not got, lost in a crash, is a
// gap even when newer entries follow it: what came before it is unknown.
func TestAfterCursorNotInStream(t *testing.T) {
	s, rdb := newStore(t, 2000)
	ctx := context.Background()
	// Redis saw 1-1, 2-1 (lost with the last second of the AOF), then after
	// its restart 3-1: the stream holds 1-1 and 3-1 and no trace of 2-1.
	for _, id := range []string{"1-1", "3-1"} {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.LogKey("r"), ID: id, Values: []any{"type", "message", "from", "w", "text", id}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.After(ctx, "r", chat.ID{Ms: 2, Seq: 1}, 10); !errors.Is(err, chat.ErrGap) {
		t.Fatalf("After(2-1), an ID the stream lost: %v, want ErrGap", err)
	}
	if ev, _, err := s.After(ctx, "r", chat.ID{Ms: 1, Seq: 1}, 10); err != nil || len(ev) != 1 || ev[0].ID != (chat.ID{Ms: 3, Seq: 1}) {
		t.Fatalf("After(1-1): %+v, %v", ev, err)
	}
	if ev, _, err := s.After(ctx, "r", chat.ID{}, 10); err != nil || len(ev) != 2 {
		t.Fatalf("After(0-0): %+v, %v", ev, err)
	}
}
