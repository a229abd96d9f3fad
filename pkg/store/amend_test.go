package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/redistest"
)

func post(t *testing.T, s *Store, room string, e chat.Event) chat.ID {
	t.Helper()
	e.Room, e.Kind = room, chat.KindMessage
	if e.From == "" {
		e.From = "ann"
	}
	ack, err := s.Append(context.Background(), e, "")
	if err != nil {
		t.Fatal(err)
	}
	return ack.ID
}

func amend(s *Store, room string, kind chat.Kind, ref chat.ID, uid, author, text, emoji string, on bool) (chat.Ack, error) {
	return s.Amend(context.Background(), chat.Amendment{
		Event: chat.Event{Room: room, Kind: kind, From: "someone", UID: uid, Author: author, Text: text},
		Ref:   ref, Emoji: emoji, On: on,
	})
}

func wantCode(t *testing.T, err error, code chat.Code) {
	t.Helper()
	var ce *chat.Error
	if !errors.As(err, &ce) || ce.Code != code {
		t.Fatalf("error %v, want %s", err, code)
	}
}

func stateOf(t *testing.T, s *Store, room string, id chat.ID, uid, author string) *chat.State {
	t.Helper()
	events := []chat.Event{{ID: id, Room: room, Kind: chat.KindMessage}}
	if err := s.States(context.Background(), room, events, uid, author); err != nil {
		t.Fatal(err)
	}
	return events[0].State
}

// Only the author edits or deletes, signed in (uid) or not (author hash);
// a refusal appends nothing; the state follows every accepted change.
func TestEditAndDeleteByTheAuthorOnly(t *testing.T) {
	s, rdb := newStore(t, 2000)
	ctx := context.Background()
	alice := post(t, s, "r", chat.Event{UID: "alice", Text: "helo"})
	anon := post(t, s, "r", chat.Event{Author: chat.AuthorOf("c:key-of-anon-0001"), Text: "hi"})
	length := func() int64 { return rdb.XLen(ctx, s.LogKey("r")).Val() }
	before := length()

	for _, tt := range []struct {
		name        string
		ref         chat.ID
		uid, author string
	}{
		{"another user", alice, "bob", ""},
		{"anonymous on a signed-in message", alice, "", chat.AuthorOf("c:key-of-anon-0001")},
		{"another anonymous", anon, "", chat.AuthorOf("c:key-of-anon-0002")},
		{"signed in on an anonymous message", anon, "bob", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := amend(s, "r", chat.KindEdit, tt.ref, tt.uid, tt.author, "hacked", "", false)
			wantCode(t, err, chat.CodeForbidden)
			_, err = amend(s, "r", chat.KindDelete, tt.ref, tt.uid, tt.author, "", "", false)
			wantCode(t, err, chat.CodeForbidden)
		})
	}
	_, err := amend(s, "r", chat.KindEdit, chat.ID{Ms: 1}, "alice", "", "x", "", false)
	wantCode(t, err, chat.CodeNotFound)
	if n := length(); n != before {
		t.Fatalf("refusals appended %d entries", n-before)
	}
	if st := stateOf(t, s, "r", alice, "", ""); st != nil {
		t.Fatalf("refusals left a state: %+v", st)
	}

	ack, err := amend(s, "r", chat.KindEdit, alice, "alice", "", "hello", "", false)
	if err != nil {
		t.Fatal(err)
	}
	entries := rdb.XRange(ctx, s.LogKey("r"), ack.ID.String(), ack.ID.String()).Val()
	if len(entries) != 1 || entries[0].Values["type"] != "edit" || entries[0].Values["text"] != "hello" ||
		entries[0].Values["attrs"] != `"ref":"`+alice.String()+`"` {
		t.Fatalf("edit entry %+v", entries)
	}
	st := stateOf(t, s, "r", alice, "", "")
	if st == nil || st.Text != "hello" || st.EditedAt != chat.FormatTS(ack.ID.Time()) || st.Deleted {
		t.Fatalf("state after edit %+v", st)
	}
	if _, err := amend(s, "r", chat.KindEdit, anon, "", chat.AuthorOf("c:key-of-anon-0001"), "hi all", "", false); err != nil {
		t.Fatalf("anonymous author's edit: %v", err)
	}
	if _, err := amend(s, "r", chat.KindDelete, alice, "alice", "", "", "", false); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, s, "r", alice, "", ""); st == nil || !st.Deleted {
		t.Fatalf("state after delete %+v", st)
	}
	_, err = amend(s, "r", chat.KindEdit, alice, "alice", "", "again", "", false)
	wantCode(t, err, chat.CodeNotFound)
	_, err = amend(s, "r", chat.KindReact, alice, "bob", "", "", "👍", true)
	wantCode(t, err, chat.CodeNotFound)

	// A replay (Recent) shows messages, not the entries that changed them.
	recent, _, err := s.Recent(ctx, "r", 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.States(ctx, "r", recent, "", ""); err != nil {
		t.Fatal(err)
	}
	if len(recent) != 2 || !recent[0].State.Deleted || recent[1].State.Text != "hi all" {
		t.Fatalf("replay %+v", recent)
	}
	frame := string(chat.EncodeEvent(recent[0], true))
	if frame != `{"type":"message","id":"`+alice.String()+`","room":"r","from":"ann","uid":"alice","ts":"`+chat.FormatTS(alice.Time())+`","replay":true,"deleted":true}` {
		t.Fatalf("tombstone %s", frame)
	}
}

// Reactions toggle per user and emoji, and 50 users reacting at once lose
// no update: each entry's count is the count after it, and the last is 50.
func TestReactionsCountUnderConcurrentReactors(t *testing.T) {
	s, rdb := newStore(t, 2000)
	ctx := context.Background()
	msg := post(t, s, "r", chat.Event{UID: "alice", Text: "vote"})

	ack, err := amend(s, "r", chat.KindReact, msg, "bob", "", "", "👍", true)
	if err != nil || ack.Duplicate {
		t.Fatalf("first reaction: %+v %v", ack, err)
	}
	if ack, err := amend(s, "r", chat.KindReact, msg, "bob", "", "", "👍", true); err != nil || !ack.Duplicate {
		t.Fatalf("the same reaction again: %+v %v, want a duplicate that appends nothing", ack, err)
	}
	if _, err := amend(s, "r", chat.KindReact, msg, "bob", "", "", "👍", false); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, s, "r", msg, "bob", ""); st == nil || len(st.Reactions) != 0 {
		t.Fatalf("after bob took it back: %+v", st)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 50 {
		wg.Go(func() {
			for _, emoji := range []string{"🎉", "👍"} {
				if _, err := amend(s, "r", chat.KindReact, msg, fmt.Sprint("user", i), "", "", emoji, true); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := stateOf(t, s, "r", msg, "user7", "")
	if st == nil || len(st.Reactions) != 2 {
		t.Fatalf("state %+v", st)
	}
	for _, r := range st.Reactions {
		if r.Count != 50 || !r.Me {
			t.Fatalf("reaction %+v, want count 50 and me", r)
		}
	}
	if st := stateOf(t, s, "r", msg, "stranger", ""); st.Reactions[0].Me {
		t.Fatalf("a user who did not react sees me: %+v", st)
	}
	counts := map[string][]string{}
	for _, m := range rdb.XRange(ctx, s.LogKey("r"), "-", "+").Val() {
		if m.Values["type"] == "react" {
			attrs := chat.Attrs(m.Values["attrs"].(string)).Map()
			counts[attrs["emoji"]] = append(counts[attrs["emoji"]], attrs["count"])
		}
	}
	for _, emoji := range []string{"🎉", "👍"} {
		got := counts[emoji]
		if emoji == "👍" {
			got = got[2:] // bob's on and off
		}
		for i, c := range got {
			if c != fmt.Sprint(i+1) {
				t.Fatalf("%s counts %v: entry %d says %s, want %d", emoji, got, i, c, i+1)
			}
		}
		if len(got) != 50 {
			t.Fatalf("%s: %d entries", emoji, len(got))
		}
	}

	// A bounded set of emoji per message.
	for i := 0; i < chat.MaxReactionsPerMessage-2; i++ {
		if _, err := amend(s, "r", chat.KindReact, msg, "bob", "", "", string(rune(0x1F600+i)), true); err != nil {
			t.Fatal(err)
		}
	}
	_, err = amend(s, "r", chat.KindReact, msg, "bob", "", "", "🦀", true)
	wantCode(t, err, chat.CodeTooLarge)
}

// The states of messages trimmed out of the stream are deleted as later
// changes come.
func TestStatesOfTrimmedMessagesAreDeleted(t *testing.T) {
	s, rdb := newStore(t, 10)
	ctx := context.Background()
	old := post(t, s, "r", chat.Event{UID: "alice", Text: "old"})
	if _, err := amend(s, "r", chat.KindReact, old, "bob", "", "", "👍", true); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		post(t, s, "r", chat.Event{UID: "alice", Text: fmt.Sprint(i)})
	}
	recent := post(t, s, "r", chat.Event{UID: "alice", Text: "new"})
	if _, err := amend(s, "r", chat.KindReact, recent, "bob", "", "", "👍", true); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, s.MsgKey("r", old)).Val(); n != 0 {
		t.Fatal("the trimmed message's state is still there")
	}
	if rdb.ZScore(ctx, s.AmendedKey("r"), old.String()).Err() == nil {
		t.Fatal("the trimmed message is still indexed")
	}
}

// Read markers only move forward; the unread count is the messages of
// others after the marker, shown as 99+ past 99.
func TestReadMarkersAndUnreadCounts(t *testing.T) {
	s, _ := newStore(t, 2000)
	ctx := context.Background()
	first := post(t, s, "r", chat.Event{UID: "bob", Text: "before"})
	marker, err := s.Joined(ctx, "alice", "r", first)
	if err != nil || marker != first {
		t.Fatalf("first join: marker %v, %v", marker, err)
	}
	var ids []chat.ID
	for i := range 120 {
		ids = append(ids, post(t, s, "r", chat.Event{UID: "bob", From: "bob", Text: fmt.Sprint(i)}))
	}
	post(t, s, "r", chat.Event{UID: "alice", Text: "mine"}) // not unread
	if again, _ := s.Joined(ctx, "alice", "r", ids[119]); again != first {
		t.Fatalf("a later join moved the marker to %v", again)
	}
	same := func(string) string { return "r" }
	rooms, err := s.Rooms(ctx, "alice", same)
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms) != 1 || rooms[0].Unread != chat.MaxUnread || !rooms[0].More || rooms[0].Last == nil || rooms[0].Last.Text != "mine" {
		t.Fatalf("rooms %+v", rooms)
	}
	if m, err := s.MarkRead(ctx, "alice", "r", ids[99]); err != nil || m != ids[99] {
		t.Fatalf("mark read: %v %v", m, err)
	}
	if m, _ := s.MarkRead(ctx, "alice", "r", ids[10]); m != ids[99] {
		t.Fatalf("an older id moved the marker back to %v", m)
	}
	rooms, _ = s.Rooms(ctx, "alice", same)
	if rooms[0].Unread != 20 || rooms[0].More || rooms[0].Read != ids[99] {
		t.Fatalf("after reading to the 100th: %+v", rooms[0])
	}
	s.MarkRead(ctx, "alice", "r", ids[119])
	rooms, _ = s.Rooms(ctx, "alice", same)
	if rooms[0].Unread != 0 || rooms[0].Last.Text != "mine" {
		t.Fatalf("all read: %+v", rooms[0])
	}
}

// The embedded server runs the scripts of edits, reactions, typing and
// read markers too.
func TestAmendEmbedded(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, Options{})
	ctx := context.Background()
	msg := post(t, s, "r", chat.Event{UID: "alice", Text: "helo"})
	if _, err := amend(s, "r", chat.KindEdit, msg, "alice", "", "hello", "", false); err != nil {
		t.Fatal(err)
	}
	_, err := amend(s, "r", chat.KindEdit, msg, "bob", "", "x", "", false)
	wantCode(t, err, chat.CodeForbidden)
	for _, uid := range []string{"bob", "carol"} {
		if _, err := amend(s, "r", chat.KindReact, msg, uid, "", "", "👍", true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := amend(s, "r", chat.KindReact, msg, "bob", "", "", "👍", false); err != nil {
		t.Fatal(err)
	}
	st := stateOf(t, s, "r", msg, "carol", "")
	if st.Text != "hello" || len(st.Reactions) != 1 || st.Reactions[0].Count != 1 || !st.Reactions[0].Me {
		t.Fatalf("state %+v", st)
	}
	if sent, err := s.Typing(ctx, "r", "c1", "alice", "", []byte(`{"type":"typing"}`)); err != nil || !sent {
		t.Fatalf("typing: %v %v", sent, err)
	}
	if sent, _ := s.Typing(ctx, "r", "c1", "alice", "", []byte(`{"type":"typing"}`)); sent {
		t.Fatal("a second typing notice within the interval was sent")
	}
	if _, err := s.Joined(ctx, "alice", "r", msg); err != nil {
		t.Fatal(err)
	}
	if m, err := s.MarkRead(ctx, "alice", "r", chat.ID{Ms: 1}); err != nil || m != msg {
		t.Fatalf("mark read back: %v %v", m, err)
	}
}

// On a three-master cluster the amend script runs on the room's node,
// including the deletion of trimmed messages' states, whose keys it builds
// (they share the room's hash tag, so its slot).
func TestAmendOnCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: nodes})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, Options{Prefix: redistest.Prefix(t), MaxLen: 10})
	ctx := context.Background()
	for _, room := range []string{"a", "b", "c", "d"} {
		old := post(t, s, room, chat.Event{UID: "alice", Text: "old"})
		if _, err := amend(s, room, chat.KindReact, old, "bob", "", "", "👍", true); err != nil {
			t.Fatalf("room %s: %v", room, err)
		}
		for i := range 300 { // MAXLEN ~ trims whole nodes of 100 entries
			post(t, s, room, chat.Event{UID: "alice", Text: fmt.Sprint(i)})
		}
		recent := post(t, s, room, chat.Event{UID: "alice", Text: "new"})
		if _, err := amend(s, room, chat.KindEdit, recent, "alice", "", "newer", "", false); err != nil {
			t.Fatalf("room %s: %v", room, err)
		}
		if n := rdb.Exists(ctx, s.MsgKey(room, old)).Val(); n != 0 {
			t.Fatalf("room %s: the trimmed message's state is still there", room)
		}
		if st := stateOf(t, s, room, recent, "", ""); st == nil || st.Text != "newer" {
			t.Fatalf("room %s: state %+v", room, st)
		}
		if sent, err := s.Typing(ctx, room, "c1", "alice", "", []byte(`{"type":"typing"}`)); err != nil || !sent {
			t.Fatalf("room %s: typing %v %v", room, sent, err)
		}
		if _, err := s.Joined(ctx, "alice", room, recent); err != nil {
			t.Fatal(err)
		}
	}
	rooms, err := s.Rooms(ctx, "alice", func(n string) string { return n })
	if err != nil || len(rooms) != 4 {
		t.Fatalf("rooms on the cluster: %+v %v", rooms, err)
	}
}

// The room list reads every room's newest page in one pipeline, and goes
// further back only while a count is open: 50 messages behind 150 other
// entries count 50; past four pages the count is "more".
func TestRoomsPastTheFirstPage(t *testing.T) {
	s, _ := newStore(t, 100000)
	ctx := context.Background()
	for _, room := range []string{"quiet", "busy", "huge"} {
		if _, err := s.Joined(ctx, "alice", room, chat.ID{}); err != nil {
			t.Fatal(err)
		}
	}
	post(t, s, "quiet", chat.Event{UID: "bob", Text: "hi"})
	for range 50 {
		post(t, s, "busy", chat.Event{UID: "bob", Text: "news"})
	}
	appendN(t, s, "busy", chat.KindJoin, 150)
	appendN(t, s, "huge", chat.KindJoin, 900)
	rooms, err := s.Rooms(ctx, "alice", func(n string) string { return n })
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]chat.RoomSummary{}
	for _, r := range rooms {
		got[r.Room] = r
	}
	if r := got["quiet"]; r.Unread != 1 || r.More || r.Last == nil || r.Last.Text != "hi" {
		t.Fatalf("quiet: %+v", r)
	}
	if r := got["busy"]; r.Unread != 50 || r.More || r.Last == nil || r.Last.Text != "news" {
		t.Fatalf("busy: %+v", r)
	}
	if r := got["huge"]; r.Unread != 0 || !r.More || r.Last != nil {
		t.Fatalf("huge: %+v", r)
	}
}
