package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/client"
	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/config"
)

// signedIn dials replica i of cl as a signed-in user.
func signedIn(t *testing.T, cl *cluster, i int, room, uid, name, since string) *client.Conn {
	t.Helper()
	u := fmt.Sprintf("ws://%s/ws?room=%s&token=%s", cl.replicas[i].addr, room, hs(t, claims(uid, name)))
	if since != "" {
		u += "&since=" + since
	}
	return dial(t, u)
}

func do(t *testing.T, c *client.Conn, cmd map[string]any) (client.Ack, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return c.Do(ctx, cmd)
}

func must(t *testing.T, c *client.Conn, cmd map[string]any) client.Ack {
	t.Helper()
	ack, err := do(t, c, cmd)
	if err != nil {
		t.Fatalf("%v: %v", cmd, err)
	}
	return ack
}

func refusedWith(t *testing.T, err error, code string) {
	t.Helper()
	se, ok := err.(*client.ServerError)
	if !ok || se.Code != code {
		t.Fatalf("error %v, want %s", err, code)
	}
}

// nextEntry skips presence entries and returns the next other entry.
func nextEntry(t *testing.T, c *client.Conn) client.Event {
	t.Helper()
	for {
		ev := clienttest.Next(t, c)
		if ev.IsEntry() && ev.Type != "join" && ev.Type != "leave" {
			return ev
		}
	}
}

func history(t *testing.T, cl *cluster, room string) []redis.XMessage {
	t.Helper()
	msgs, err := cl.redis.Client().XRange(context.Background(), "chat:{"+room+"}:log", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// Typing reaches the room's other members on both replicas, never its
// sender (nor the sender's other tabs), is never stored or replayed, and 100 notices a second from one
// user come out as one.
func TestTypingAcrossReplicas(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { jwtMode(c); unlimited(c) })
	room := uniqueRoom("typing")
	alice := signedIn(t, cl, 0, room, "alice", "Alice", "")
	clienttest.UntilReady(t, alice)
	bob := signedIn(t, cl, 1, room, "bob", "Bob", "")
	clienttest.UntilReady(t, bob)
	carol := signedIn(t, cl, 0, room, "carol", "Carol", "")
	clienttest.UntilReady(t, carol)
	alice2 := signedIn(t, cl, 1, room, "alice", "Alice", "") // her second tab
	clienttest.UntilReady(t, alice2)

	ctx := context.Background()
	for range 100 {
		if err := alice.Typing(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice2.Typing(ctx); err != nil { // within 3 s of her first
		t.Fatal(err)
	}
	end := clienttest.Send(t, alice, "done typing")
	for _, c := range []*client.Conn{bob, carol} {
		typing := 0
		for {
			ev := clienttest.Next(t, c)
			if ev.Type == "typing" {
				if ev.From != "Alice" || ev.UID != "alice" || ev.Room != room {
					t.Fatalf("typing %+v", ev)
				}
				typing++
			}
			if ev.ID == end {
				break
			}
		}
		if typing != 1 {
			t.Fatalf("%d typing notices for 101 sent within 3 s, want 1", typing)
		}
	}
	for _, c := range []*client.Conn{alice, alice2} {
		for {
			ev := clienttest.Next(t, c)
			if ev.Type == "typing" {
				t.Fatalf("the sender got her own typing notice: %+v", ev)
			}
			if ev.ID == end {
				break
			}
		}
	}
	for _, m := range history(t, cl, room) {
		if m.Values["type"] == "typing" {
			t.Fatalf("a typing notice was stored: %+v", m)
		}
	}
	dave := signedIn(t, cl, 1, room, "dave", "Dave", "")
	_, replay, _ := clienttest.UntilReady(t, dave)
	for _, ev := range replay {
		if ev.Type == "typing" {
			t.Fatalf("a typing notice was replayed: %+v", ev)
		}
	}
	if len(replay) != 1 || replay[0].ID != end {
		t.Fatalf("replay %+v, want only the message", replay)
	}
}

// Edits and deletes by the author reach every member on both replicas in
// order, a later joiner's replay and history show messages as they are
// now, another user's attempt is forbidden and appends nothing, and a
// client that resumes from before an edit gets the edit entry once.
func TestEditAndDeleteAcrossReplicas(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { jwtMode(c); unlimited(c) })
	room := uniqueRoom("edit")
	alice := signedIn(t, cl, 0, room, "alice", "Alice", "")
	clienttest.UntilReady(t, alice)
	bob := signedIn(t, cl, 1, room, "bob", "Bob", "")
	clienttest.UntilReady(t, bob)
	eve := signedIn(t, cl, 1, room, "eve", "Eve", "")
	_, _, eveReady := clienttest.UntilReady(t, eve)

	m1 := clienttest.Send(t, alice, "helo")
	m2 := clienttest.Send(t, alice, "oops")
	if ev := nextEntry(t, bob); ev.ID != m1 {
		t.Fatalf("bob got %+v", ev)
	}
	if ev := nextEntry(t, bob); ev.ID != m2 {
		t.Fatalf("bob got %+v", ev)
	}
	for _, want := range []string{m1, m2} {
		if ev := nextEntry(t, alice); ev.ID != want {
			t.Fatalf("alice got %+v", ev)
		}
	}
	seen := m2 // where a client of bob's would resume from

	before := len(history(t, cl, room))
	_, err := do(t, bob, map[string]any{"type": "edit", "id": m1, "text": "hacked"})
	refusedWith(t, err, "forbidden")
	_, err = do(t, bob, map[string]any{"type": "delete", "id": m1})
	refusedWith(t, err, "forbidden")
	if n := len(history(t, cl, room)); n != before {
		t.Fatalf("refused changes appended %d entries", n-before)
	}

	edit := must(t, alice, map[string]any{"type": "edit", "id": m1, "text": "hello"})
	del := must(t, alice, map[string]any{"type": "delete", "id": m2})
	for _, c := range []*client.Conn{alice, bob} {
		ev := nextEntry(t, c)
		if ev.Type != "edit" || ev.ID != edit.ID || ev.Ref != m1 || ev.Text != "hello" || ev.UID != "alice" {
			t.Fatalf("edit entry %+v", ev)
		}
		ev = nextEntry(t, c)
		if ev.Type != "delete" || ev.ID != del.ID || ev.Ref != m2 || ev.Text != "" {
			t.Fatalf("delete entry %+v", ev)
		}
	}
	_, err = do(t, alice, map[string]any{"type": "edit", "id": m2, "text": "back"})
	refusedWith(t, err, "not_found")

	// A joiner, on either replica, sees the messages as they are now.
	for i := range 2 {
		carol := signedIn(t, cl, i, room, "carol", "Carol", "")
		_, replay, _ := clienttest.UntilReady(t, carol)
		if len(replay) != 2 {
			t.Fatalf("replay %+v, want the two messages only", replay)
		}
		if r := replay[0]; r.ID != m1 || r.Text != "hello" || r.EditedAt == "" || r.Deleted {
			t.Fatalf("edited message replayed as %+v", r)
		}
		if r := replay[1]; r.ID != m2 || !r.Deleted || r.Text != "" {
			t.Fatalf("deleted message replayed as %+v", r)
		}
		// Older history pages too.
		if err := carol.SendRaw(context.Background(), websocket.MessageText, []byte(`{"type":"history","limit":10}`)); err != nil {
			t.Fatal(err)
		}
		page := clienttest.NextOf(t, carol, "history")
		if len(page.Entries) != 2 || page.Entries[0].Text != "hello" || !page.Entries[1].Deleted {
			t.Fatalf("history page %+v", page.Entries)
		}
		carol.Close()
	}

	// Resuming from before the edit, on the other replica: the edit and
	// the delete come once each, in order, then ready.
	resumed := signedIn(t, cl, 0, room, "bob", "Bob", seen)
	hello, entries, _ := clienttest.UntilReady(t, resumed)
	if !hello.Resumed {
		t.Fatal("not resumed")
	}
	var got []string
	for _, ev := range entries {
		if ev.Type != "join" && ev.Type != "leave" {
			got = append(got, ev.Type+" "+ev.ID)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{"edit " + edit.ID, "delete " + del.ID}) {
		t.Fatalf("resumed with %v", got)
	}

	// Eve's whole sequence since ready, edits and deletes among the
	// messages, is the stream's, in order.
	end := clienttest.Send(t, alice, "end")
	var got2 []string
	for {
		ev := clienttest.Next(t, eve)
		if ev.IsEntry() {
			got2 = append(got2, ev.ID)
		}
		if ev.ID == end {
			break
		}
	}
	var truth []string
	for _, m := range history(t, cl, room) {
		if idLess(eveReady.Cursor, m.ID) && !idLess(end, m.ID) {
			truth = append(truth, m.ID)
		}
	}
	if fmt.Sprint(got2) != fmt.Sprint(truth) {
		t.Fatalf("eve's entries %v, the stream's %v", got2, truth)
	}
}

// Anonymous authors edit with their per-browser key: the same key on a new
// connection may, another key may not.
func TestAnonymousAuthorKey(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, unlimited)
	room := uniqueRoom("anon")
	key := "anon-author-key-0001"
	ann := dial(t, cl.replicas[0].wsURL(room, "ann", "")+"&client="+key)
	clienttest.UntilReady(t, ann)
	id := clienttest.Send(t, ann, "first")
	ann.Close()

	other := dial(t, cl.replicas[1].wsURL(room, "ann", "")+"&client=anon-author-key-0002")
	clienttest.UntilReady(t, other)
	_, err := do(t, other, map[string]any{"type": "edit", "id": id, "text": "not mine"})
	refusedWith(t, err, "forbidden")

	again := dial(t, cl.replicas[1].wsURL(room, "ann", "")+"&client="+key)
	clienttest.UntilReady(t, again)
	must(t, again, map[string]any{"type": "edit", "id": id, "text": "first, edited"})
	for _, m := range history(t, cl, room) {
		if v, ok := m.Values["ak"].(string); ok && (v == key || len(v) != 32) {
			t.Fatalf("the stream keeps %q, not a hash of the key", v)
		}
	}
}

// 50 users on two replicas react at once: no update is lost, each entry
// carries the count after it, and a joiner sees the count and its own.
func TestReactionsUnderConcurrentReactors(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { jwtMode(c); unlimited(c) })
	room := uniqueRoom("react")
	alice := signedIn(t, cl, 0, room, "alice", "Alice", "")
	clienttest.UntilReady(t, alice)
	msg := clienttest.Send(t, alice, "lunch?")
	if ev := nextEntry(t, alice); ev.ID != msg {
		t.Fatalf("alice got %+v", ev)
	}

	conns := make([]*client.Conn, 50)
	for i := range conns {
		conns[i] = signedIn(t, cl, i%2, room, fmt.Sprint("user", i), fmt.Sprint("User ", i), "")
		clienttest.UntilReady(t, conns[i])
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for _, c := range conns {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if _, err := c.Do(ctx, map[string]any{"type": "react", "id": msg, "emoji": "👍", "on": true}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Alice sees 50 reaction entries counting 1 to 50.
	for i := 1; i <= 50; i++ {
		ev := nextEntry(t, alice)
		if ev.Type != "react" || ev.Ref != msg || ev.Emoji != "👍" || ev.On != "true" || ev.Count != fmt.Sprint(i) {
			t.Fatalf("reaction %d: %+v", i, ev)
		}
	}
	// Taking one back, and repeating it, which changes nothing.
	must(t, conns[7], map[string]any{"type": "react", "id": msg, "emoji": "👍", "on": false})
	if ack := must(t, conns[7], map[string]any{"type": "react", "id": msg, "emoji": "👍", "on": false}); !ack.Duplicate {
		t.Fatalf("repeated reaction appended: %+v", ack)
	}
	if ev := nextEntry(t, alice); ev.Type != "react" || ev.On != "false" || ev.Count != "49" || ev.UID != "user7" {
		t.Fatalf("reaction taken back: %+v", ev)
	}
	for i, want := range map[int]bool{7: false, 8: true} {
		c := signedIn(t, cl, i%2, room, fmt.Sprint("user", i), "Again", "")
		_, replay, _ := clienttest.UntilReady(t, c)
		if len(replay) != 1 || len(replay[0].Reactions) != 1 {
			t.Fatalf("replay %+v", replay)
		}
		if r := replay[0].Reactions[0]; r.Emoji != "👍" || r.Count != 49 || r.Me != want {
			t.Fatalf("user%d's replay shows %+v", i, r)
		}
	}
}

// Read markers only move forward; the room list counts the unread
// messages of others from the stream, capped at 99+.
func TestReadMarkersAndRoomList(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { jwtMode(c); unlimited(c) })
	room := uniqueRoom("unread")
	alice := signedIn(t, cl, 0, room, "alice", "Alice", "")
	_, _, ready := clienttest.UntilReady(t, alice)
	if ready.Read != ready.Cursor {
		t.Fatalf("first join: read marker %q, want the cursor %q", ready.Read, ready.Cursor)
	}
	alice.Close()

	bob := signedIn(t, cl, 1, room, "bob", "Bob", "")
	clienttest.UntilReady(t, bob)
	var ids []string
	for i := range 120 {
		ids = append(ids, clienttest.Send(t, bob, fmt.Sprint("news ", i)))
	}
	list := func() map[string]any {
		t.Helper()
		got := apiCall(t, http.MethodGet, fmt.Sprintf("http://%s/api/me/rooms?token=%s", cl.replicas[1].addr, hs(t, claims("alice", "Alice"))), "", "")
		if got.status != http.StatusOK {
			t.Fatalf("rooms: %+v", got)
		}
		rooms := got.body["rooms"].([]any)
		if len(rooms) != 1 {
			t.Fatalf("rooms %+v", rooms)
		}
		return rooms[0].(map[string]any)
	}
	r := list()
	if r["room"] != room || r["unread"] != float64(chat.MaxUnread) || r["unread_label"] != "99+" || r["last"].(map[string]any)["text"] != "news 119" {
		t.Fatalf("room %+v", r)
	}

	alice = signedIn(t, cl, 1, room, "alice", "Alice", "")
	_, _, ready = clienttest.UntilReady(t, alice)
	if ready.Read != ids[0][:0]+r["read"].(string) {
		t.Fatalf("ready's marker %q, the list's %q", ready.Read, r["read"])
	}
	if ack := must(t, alice, map[string]any{"type": "read", "id": ids[99]}); ack.ID != ids[99] {
		t.Fatalf("marker %s", ack.ID)
	}
	if ack := must(t, alice, map[string]any{"type": "read", "id": ids[5]}); ack.ID != ids[99] {
		t.Fatalf("an older id moved the marker to %s", ack.ID)
	}
	if r := list(); r["unread"] != float64(20) || r["unread_label"] != "20" || r["read"] != ids[99] {
		t.Fatalf("after reading 100: %+v", r)
	}
	must(t, alice, map[string]any{"type": "read", "id": ids[119]})
	if r := list(); r["unread"] != float64(0) {
		t.Fatalf("all read: %+v", r)
	}
	if got := apiCall(t, http.MethodGet, fmt.Sprintf("http://%s/api/me/rooms", cl.replicas[0].addr), "", ""); got.status != http.StatusUnauthorized {
		t.Fatalf("rooms without a token: %+v", got)
	}
}
