package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/client"
	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/config"
	"github.com/streamchat/streamchat/pkg/redistest"
)

// waitFor bounds every wait so a broken test fails instead of hanging; it
// is never an assertion about speed.
const waitFor = 20 * time.Second

var modes = []string{config.TailShared, config.TailDirect}

// setups are the replica setups the conversation tests run on: each tail
// mode, and shared mode with appends gathered by a linger
// (CHAT_APPEND_LINGER), whose batches must keep every guarantee.
var setups = []struct {
	name, mode string
	linger     time.Duration
}{
	{config.TailShared, config.TailShared, 0},
	{config.TailDirect, config.TailDirect, 0},
	{"shared-linger", config.TailShared, 5 * time.Millisecond},
}

// unlimited lifts the per-connection rate limit for tests that send fast.
func unlimited(c *config.Config) { c.Rate, c.Burst = 1000, 1000 }

// replica is one gateway started with run, as main would, on 127.0.0.1:0.
type replica struct {
	t      *testing.T
	id     string
	cfg    config.Config
	addr   string
	cancel context.CancelFunc
	done   chan error
	logs   *logWriter
}

// logWriter keeps the JSON log and reports the address of the "listening" line.
type logWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	addrc chan string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	var line struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal(p, &line) == nil && line.Msg == "listening" {
		w.addrc <- line.Addr
	}
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func testConfig(redisURL, id, mode string) config.Config {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.RedisURL = redisURL
	cfg.ReplicaID = id
	cfg.TailMode = mode
	cfg.ShutdownGrace = 5 * time.Second
	return cfg
}

func startReplica(t *testing.T, cfg config.Config) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{t: t, id: cfg.ReplicaID, cfg: cfg, cancel: cancel, done: make(chan error, 1), logs: &logWriter{addrc: make(chan string, 1)}}
	go func() { r.done <- run(ctx, cfg, r.logs) }()
	select {
	case r.addr = <-r.logs.addrc:
	case err := <-r.done:
		t.Fatalf("replica %s exited at start: %v\n%s", cfg.ReplicaID, err, r.logs)
	case <-time.After(waitFor):
		t.Fatalf("replica %s did not start\n%s", cfg.ReplicaID, r.logs)
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("log of replica %s:\n%s", r.id, r.logs)
		}
	})
	return r
}

// stop is SIGTERM: cancel run's context and wait for it to return.
func (r *replica) stop() {
	r.t.Helper()
	if r.done == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("replica %s: run: %v", r.id, err)
		}
	case <-time.After(waitFor):
		r.t.Errorf("replica %s did not stop", r.id)
	}
	r.done = nil
}

func (r *replica) wsURL(room, name, since string) string {
	u := fmt.Sprintf("ws://%s/ws?room=%s&name=%s", r.addr, room, name)
	if since != "" {
		u += "&since=" + since
	}
	return u
}

// cluster is a set of replicas sharing one Redis.
type cluster struct {
	redis    *redistest.Server
	replicas []*replica
}

func startCluster(t *testing.T, n int, mode string, tweak func(*config.Config)) *cluster {
	t.Helper()
	c := &cluster{redis: redistest.Start(t)}
	for i := range n {
		cfg := testConfig(c.redis.URL(), fmt.Sprintf("%c", 'A'+i), mode)
		if tweak != nil {
			tweak(&cfg)
		}
		c.replicas = append(c.replicas, startReplica(t, cfg))
	}
	return c
}

func uniqueRoom(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// dial connects with a deep event buffer: these tests read in bursts.
func dial(t *testing.T, url string) *client.Conn {
	t.Helper()
	return clienttest.Dial(t, url, &client.Options{Buffer: 4096})
}

func ids(evs []client.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

func TestThreeReplicasShareOneConversation(t *testing.T) {
	for _, setup := range setups {
		t.Run(setup.name, func(t *testing.T) {
			cl := startCluster(t, 3, setup.mode, func(c *config.Config) { unlimited(c); c.AppendLinger = setup.linger })
			room := uniqueRoom("share")
			var conns []*client.Conn
			for i, r := range cl.replicas {
				c := dial(t, r.wsURL(room, fmt.Sprint("user", i), ""))
				clienttest.UntilReady(t, c)
				conns = append(conns, c)
			}
			const each = 10
			acked := make(chan string, each*len(conns))
			var wg sync.WaitGroup
			for i, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range each {
						id, err := c.Send(context.Background(), fmt.Sprintf("from %d #%d", i, j))
						if err != nil {
							t.Errorf("send: %v", err)
							return
						}
						acked <- id
					}
				}()
			}
			wg.Wait()
			close(acked)
			want := map[string]bool{}
			for id := range acked {
				want[id] = true
			}
			var first []string
			for i, c := range conns {
				got := ids(clienttest.Messages(t, c, each*len(conns)))
				for _, id := range got {
					if !want[id] {
						t.Fatalf("client %d got unknown message %s", i, id)
					}
				}
				if i == 0 {
					first = got
				} else if fmt.Sprint(got) != fmt.Sprint(first) {
					t.Fatalf("client %d saw another order:\n%v\n%v", i, got, first)
				}
			}
			if len(first) != len(want) {
				t.Fatalf("got %d messages, want %d distinct", len(first), len(want))
			}
		})
	}
}

func TestJoinReplaysLast50(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			cl := startCluster(t, 2, mode, unlimited)
			room := uniqueRoom("replay")
			writer := dial(t, cl.replicas[0].wsURL(room, "writer", ""))
			clienttest.UntilReady(t, writer)
			for i := range 60 {
				clienttest.Send(t, writer, fmt.Sprint("m", i))
			}
			joiner := dial(t, cl.replicas[1].wsURL(room, "joiner", ""))
			hello, replay, ready := clienttest.UntilReady(t, joiner)
			if hello.Resumed {
				t.Fatal("hello.resumed on a fresh join")
			}
			if len(replay) != 50 {
				t.Fatalf("replayed %d entries, want 50", len(replay))
			}
			for i, ev := range replay {
				if ev.Type != "message" || !ev.Replay || ev.Text != fmt.Sprint("m", i+10) {
					t.Fatalf("replay[%d] = %+v, want message m%d with replay:true", i, ev, i+10)
				}
			}
			if ready.Cursor != replay[49].ID || fmt.Sprint(ready.Online) != "[joiner writer]" {
				t.Fatalf("ready = %+v", ready)
			}
			if ev := clienttest.Next(t, joiner); ev.Type != "join" || ev.From != "joiner" {
				t.Fatalf("first live event = %+v, want own join", ev)
			}
		})
	}
}

func TestResumeOnAnotherReplica(t *testing.T) {
	for _, setup := range setups {
		t.Run(setup.name, func(t *testing.T) {
			cl := startCluster(t, 3, setup.mode, func(c *config.Config) { unlimited(c); c.AppendLinger = setup.linger })
			room := uniqueRoom("resume")
			talker := dial(t, cl.replicas[0].wsURL(room, "talker", ""))
			clienttest.UntilReady(t, talker)
			reader := dial(t, cl.replicas[1].wsURL(room, "reader", ""))
			clienttest.UntilReady(t, reader)
			clienttest.Send(t, talker, "before")
			last := clienttest.Messages(t, reader, 1)[0].ID
			reader.CloseNow() // a dropped network, not a goodbye

			var missed []string
			for i := range 20 {
				missed = append(missed, clienttest.Send(t, talker, fmt.Sprint("missed ", i)))
			}
			back := dial(t, cl.replicas[2].wsURL(room, "reader", last))
			hello, entries, ready := clienttest.UntilReady(t, back)
			if !hello.Resumed {
				t.Fatal("hello.resumed = false")
			}
			var got []string
			for _, ev := range entries {
				if ev.Replay {
					t.Fatalf("resumed entry marked replay: %+v", ev)
				}
				if ev.Type == "message" {
					got = append(got, ev.ID)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(missed) {
				t.Fatalf("resumed messages:\n%v\nwant\n%v", got, missed)
			}
			if ready.Cursor != entries[len(entries)-1].ID {
				t.Fatalf("ready.cursor = %s, want last entry sent %s", ready.Cursor, entries[len(entries)-1].ID)
			}
			id := clienttest.Send(t, talker, "after")
			if ev := clienttest.Messages(t, back, 1)[0]; ev.ID != id {
				t.Fatalf("live after resume = %+v", ev)
			}
		})
	}
}

// While writers append continuously, clients join at random moments on
// random replicas. Each client must get exactly the history before its
// cursor and every entry after it: no gap, no duplicate, stream order.
func TestJoinRace(t *testing.T) {
	for _, setup := range setups {
		t.Run(setup.name, func(t *testing.T) {
			cl := startCluster(t, 3, setup.mode, func(c *config.Config) {
				c.Rate, c.Burst = 1000, 1000
				c.AppendLinger = setup.linger
				c.StreamMaxlen = 1_000_000 // the whole run stays in the stream as ground truth
			})
			room := uniqueRoom("race")
			const writers, perWriter, joiners = 5, 80, 50
			var writerConns []*client.Conn
			for i := range writers {
				c := dial(t, cl.replicas[i%3].wsURL(room, fmt.Sprint("writer", i), ""))
				clienttest.UntilReady(t, c)
				writerConns = append(writerConns, c)
			}
			type joined struct {
				c      *client.Conn
				replay []client.Event
				ready  client.Event
			}
			results := make(chan joined, joiners)
			var wg sync.WaitGroup
			for i, w := range writerConns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range perWriter {
						if _, err := w.Send(context.Background(), fmt.Sprintf("w%d-%d", i, j)); err != nil {
							t.Errorf("writer %d: %v", i, err)
							return
						}
					}
				}()
			}
			for i := range joiners {
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(randInt(400)) * time.Millisecond)
					r := cl.replicas[randInt(3)]
					ctx, cancel := context.WithTimeout(context.Background(), waitFor)
					defer cancel()
					c, _, err := client.Dial(ctx, r.wsURL(room, fmt.Sprint("joiner", i), ""), &client.Options{Buffer: 8192})
					if err != nil {
						t.Errorf("dial: %v", err)
						return
					}
					t.Cleanup(func() { _ = c.Close() })
					_, replay, ready := untilReadyAsync(t, c)
					results <- joined{c, replay, ready}
				}()
			}
			wg.Wait()
			close(results)
			marker := clienttest.Send(t, writerConns[0], "the end")

			rdb := cl.redis.Client()
			truth, err := rdb.XRange(context.Background(), "chat:{"+room+"}:log", "-", marker).Result()
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for j := range results {
				n++
				checkClient(t, truth, j.c, j.replay, j.ready, marker)
			}
			if n != joiners {
				t.Fatalf("%d of %d joiners got ready", n, joiners)
			}
		})
	}
}

func untilReadyAsync(t *testing.T, c *client.Conn) (client.Event, []client.Event, client.Event) {
	var hello, ready client.Event
	var entries []client.Event
	for ev := range c.Events() {
		switch {
		case hello.Type == "":
			hello = ev
		case ev.Type == "ready":
			return hello, entries, ev
		default:
			entries = append(entries, ev)
		}
	}
	t.Errorf("connection ended before ready: %v", c.Err())
	return hello, entries, ready
}

func checkClient(t *testing.T, truth []redis.XMessage, c *client.Conn, replay []client.Event, ready client.Event, marker string) {
	t.Helper()
	cursor := ready.Cursor
	// Expected replay: the last ≤50 messages at or before the cursor.
	var before []string
	var after []string
	for _, m := range truth {
		if !idLess(cursor, m.ID) {
			if m.Values["type"] == "message" {
				before = append(before, m.ID)
			}
		} else {
			after = append(after, m.ID)
		}
	}
	if len(before) > 50 {
		before = before[len(before)-50:]
	}
	if got := ids(replay); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("cursor %s: replay\n%v\nwant\n%v", cursor, got, before)
	}
	var live []string
	for len(live) == 0 || live[len(live)-1] != marker {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended: %v", c.Err())
			}
			if ev.IsEntry() {
				live = append(live, ev.ID)
			}
		case <-time.After(waitFor):
			t.Fatalf("cursor %s: marker never arrived; got %d live entries, want %d", cursor, len(live), len(after))
		}
	}
	if fmt.Sprint(live) != fmt.Sprint(after) {
		t.Fatalf("cursor %s: live entries\n%v\nwant\n%v", cursor, live, after)
	}
}

func idLess(a, b string) bool {
	var am, as, bm, bs uint64
	fmt.Sscanf(a, "%d-%d", &am, &as)
	fmt.Sscanf(b, "%d-%d", &bm, &bs)
	return am < bm || (am == bm && as < bs)
}

func randInt(n int) int {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return (int(b[0])<<8 | int(b[1])) % n
}

func TestRedisOutageAndRecovery(t *testing.T) {
	cl := startCluster(t, 1, config.TailShared, unlimited)
	r := cl.replicas[0]
	room := uniqueRoom("outage")
	a := dial(t, r.wsURL(room, "ann", ""))
	clienttest.UntilReady(t, a)
	b := dial(t, r.wsURL(room, "bob", ""))
	clienttest.UntilReady(t, b)

	cl.redis.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := a.Send(ctx, "into the void")
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != "unavailable" {
		t.Fatalf("send while Redis is down: %v, want unavailable", err)
	}
	waitReady(t, r, http.StatusServiceUnavailable)
	// A newcomer meanwhile is told to come back later.
	late := dial(t, r.wsURL(room, "late", ""))
	if ev := clienttest.Next(t, late); ev.Type != "error" || ev.Code != "unavailable" {
		t.Fatalf("join while Redis is down: %+v", ev)
	}
	for range late.Events() {
	}
	if code := websocket.CloseStatus(late.Err()); code != websocket.StatusTryAgainLater {
		t.Fatalf("close code = %v, want 1013", code)
	}

	cl.redis.Restart()
	waitReady(t, r, http.StatusOK)
	id := clienttest.Send(t, a, "back again")
	for {
		ev := clienttest.Next(t, b)
		if ev.Type == "message" {
			if ev.ID != id || ev.Text != "back again" {
				t.Fatalf("after recovery got %+v", ev)
			}
			break
		}
	}
}

func waitReady(t *testing.T, r *replica, want int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		resp, err := http.Get("http://" + r.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered %d", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestShutdownClosesWith1001(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, nil)
	room := uniqueRoom("shutdown")
	leaving := cl.replicas[0]
	a := dial(t, leaving.wsURL(room, "ann", ""))
	b := dial(t, leaving.wsURL(room, "bob", ""))
	clienttest.UntilReady(t, a)
	clienttest.UntilReady(t, b)
	stay := dial(t, cl.replicas[1].wsURL(room, "cat", ""))
	clienttest.UntilReady(t, stay)

	leaving.stop()
	for _, c := range []*client.Conn{a, b} {
		for range c.Events() {
		}
		if code := websocket.CloseStatus(c.Err()); code != websocket.StatusGoingAway {
			t.Fatalf("close code = %v (%v), want 1001", code, c.Err())
		}
	}
	left := map[string]bool{}
	for len(left) < 2 {
		if ev := clienttest.Next(t, stay); ev.Type == "leave" {
			left[ev.From] = true
		}
	}
	if !left["ann"] || !left["bob"] {
		t.Fatalf("leaves seen = %v", left)
	}
}

// Shared mode holds one blocking Redis connection per active room, however
// many users; direct mode holds one per user.
func TestRedisConnectionsFollowRooms(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			cl := startCluster(t, 1, mode, nil)
			room := uniqueRoom("conns")
			const users = 40
			for i := range users {
				clienttest.UntilReady(t, dial(t, cl.replicas[0].wsURL(room, fmt.Sprint("u", i), "")))
			}
			info, err := cl.redis.Client().Info(context.Background(), "clients").Result()
			if err != nil {
				t.Fatal(err)
			}
			var connected int
			for _, line := range strings.Split(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
					fmt.Sscan(v, &connected)
				}
			}
			t.Logf("%s mode: %d users in one room, Redis connected_clients = %d", mode, users, connected)
			if mode == config.TailShared && connected > 12 {
				t.Fatalf("shared mode: %d Redis connections for one room", connected)
			}
			if mode == config.TailDirect && connected < users {
				t.Fatalf("direct mode: %d Redis connections for %d users", connected, users)
			}
		})
	}
}

// A replica with 500 active rooms reads all of them through one
// subscription to their bells, and every room's messages arrive: Redis
// connections follow Redis nodes, not rooms.
func TestManyRoomsFewRedisConnections(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { unlimited(c); c.MaxConnsPerIP = 0 })
	const rooms = 500
	prefix := uniqueRoom("many")
	readers := make([]*client.Conn, rooms)
	for i := range rooms {
		readers[i] = dial(t, cl.replicas[0].wsURL(fmt.Sprintf("%s-%d", prefix, i), "reader", ""))
		clienttest.UntilReady(t, readers[i])
	}
	// Messages through the other replica, so they reach the readers only
	// through Redis.
	writer := make([]*client.Conn, 0, rooms)
	for i := range rooms {
		w := dial(t, cl.replicas[1].wsURL(fmt.Sprintf("%s-%d", prefix, i), "writer", ""))
		clienttest.UntilReady(t, w)
		writer = append(writer, w)
	}
	sent := make([]string, rooms)
	for i, w := range writer {
		sent[i] = clienttest.Send(t, w, fmt.Sprint("hello room ", i))
	}
	for i, r := range readers {
		if got := clienttest.Messages(t, r, 1)[0]; got.ID != sent[i] {
			t.Fatalf("room %d: got %+v, want %s", i, got, sent[i])
		}
	}
	subs, all := redisClients(t, cl, "subscribe"), redisClients(t, cl, "")
	t.Logf("%d rooms on each of 2 replicas: %d subscriptions, %d Redis connections in all", rooms, subs, all)
	// One subscription per replica; the rest are the command pools (at
	// most 64 each) and this test's own client.
	if subs != 2 || all > 2+2*64+1 {
		t.Fatalf("%d subscriptions and %d connections for 2 replicas with %d rooms each", subs, all, rooms)
	}
}

// redisClients counts the Redis connections whose last command was cmd
// (every connection for "").
func redisClients(t *testing.T, cl *cluster, cmd string) int {
	t.Helper()
	list, err := cl.redis.Client().ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.TrimSpace(line) != "" && (cmd == "" || strings.Contains(line, " cmd="+cmd+" ")) {
			n++
		}
	}
	return n
}

// With no CHAT_REDIS_URL the gateway runs on its embedded server.
func TestEmbeddedDefault(t *testing.T) {
	r := startReplica(t, testConfig("", "solo", config.TailShared))
	room := uniqueRoom("embedded")
	a := dial(t, r.wsURL(room, "ann", ""))
	clienttest.UntilReady(t, a)
	clienttest.Send(t, a, "one")
	last := clienttest.Messages(t, a, 1)[0].ID
	a.CloseNow()
	b := dial(t, r.wsURL(room, "bob", ""))
	clienttest.UntilReady(t, b)
	clienttest.Send(t, b, "two")
	back := dial(t, r.wsURL(room, "ann", last))
	hello, entries, _ := clienttest.UntilReady(t, back)
	var texts []string
	for _, ev := range entries {
		if ev.Type == "message" {
			texts = append(texts, ev.Text)
		}
	}
	if !hello.Resumed || fmt.Sprint(texts) != "[two]" {
		t.Fatalf("resume on the embedded server: resumed=%v texts=%v", hello.Resumed, texts)
	}

	// The conversation features run there too: typing, an edit, a
	// reaction, and a joiner's replay in the current state.
	if err := back.Typing(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ev := clienttest.NextOf(t, b, "typing"); ev.From != "ann" {
		t.Fatalf("typing %+v", ev)
	}
	two := clienttest.Send(t, b, "tow")
	must(t, b, map[string]any{"type": "edit", "id": two, "text": "two, again"})
	must(t, back, map[string]any{"type": "react", "id": two, "emoji": "🎉", "on": true})
	if ev := clienttest.NextOf(t, back, "react"); ev.Ref != two || ev.Count != "1" {
		t.Fatalf("reaction %+v", ev)
	}
	c := dial(t, r.wsURL(room, "cy", ""))
	_, replay, _ := clienttest.UntilReady(t, c)
	if got := replay[len(replay)-1]; got.ID != two || got.Text != "two, again" || len(got.Reactions) != 1 {
		t.Fatalf("replay on the embedded server ends with %+v", got)
	}
}

// A connection's log lines name the replica once, beside the connection's
// own fields.
func TestConnectionLogLines(t *testing.T) {
	c := startCluster(t, 1, config.TailShared, nil)
	r := c.replicas[0]
	conn := dial(t, r.wsURL("logs", "ann", ""))
	clienttest.UntilReady(t, conn)
	_ = conn.Close()
	deadline := time.Now().Add(waitFor)
	for !strings.Contains(r.logs.String(), `"connection closed"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no connection closed line:\n%s", r.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if !strings.Contains(line, `"connection `) {
			continue
		}
		if n := strings.Count(line, `"replica":`); n != 1 {
			t.Errorf("%d replica keys in %s", n, line)
		}
		for _, key := range []string{`"conn_id":`, `"room":"logs"`, `"name":"ann"`} {
			if !strings.Contains(line, key) {
				t.Errorf("no %s in %s", key, line)
			}
		}
	}
}
