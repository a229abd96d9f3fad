package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/client"
	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/gateway"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/metrics"
	"github.com/streamchat/streamchat/pkg/redistest"
	"github.com/streamchat/streamchat/pkg/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait so a broken test fails instead of hanging; it
// is never an assertion about speed.
const waitFor = 15 * time.Second

type env struct {
	t     *testing.T
	redis *redistest.Server
	store *store.Store
	hub   *hub.Hub
	gw    *gateway.Server
	http  *httptest.Server
}

func newEnv(t *testing.T, hopts hub.Options, gopts gateway.Options) *env {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	log := zaptest.NewLogger(t)
	st := store.New(rdb, store.Options{Prefix: redistest.Prefix(t)})
	if hopts.Block == 0 {
		// A short XREAD block makes each test's shutdown quick; production
		// keeps the default.
		hopts.Block = 250 * time.Millisecond
	}
	hopts.OpenBells = hub.OpenWith(st.NewBells)
	h := hub.New(st, log, hopts)
	gw := gateway.New(gateway.FromHub(h), st, http.NotFoundHandler(), log, gopts)
	t.Cleanup(h.Close) // after the gateway's own cleanup
	ts := serve(t, gw)
	return &env{t: t, redis: srv, store: st, hub: h, gw: gw, http: ts}
}

// serve runs gw on a test server until the test ends, then drains it.
func serve(t *testing.T, gw *gateway.Server) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(gw.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		ts.Close()
		if err := gw.Drain(ctx); err != nil {
			t.Errorf("drain: %v", err)
		}
	})
	return ts
}

func (e *env) wsURL(query string) string {
	return "ws" + strings.TrimPrefix(e.http.URL, "http") + "/ws?" + query
}

// dialRaw opens a bare websocket that reads only when the test does.
func (e *env) dialRaw(query string) *websocket.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, e.wsURL(query), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { ws.CloseNow() })
	return ws
}

func (e *env) dial(query string) *client.Conn {
	e.t.Helper()
	return clienttest.Dial(e.t, e.wsURL(query), nil)
}

// untilReady reads hello ... ready and returns them all.
func untilReady(t *testing.T, c *client.Conn) []client.Event {
	t.Helper()
	hello, entries, ready := clienttest.UntilReady(t, c)
	return append(append([]client.Event{hello}, entries...), ready)
}

// expectMessage reads until a message with text arrives.
func expectMessage(t *testing.T, c *client.Conn, text string) client.Event {
	t.Helper()
	for {
		ev := clienttest.Next(t, c)
		if ev.Type == "message" && ev.Text == text {
			return ev
		}
		if ev.Type == "message" {
			t.Fatalf("got message %q, want %q", ev.Text, text)
		}
	}
}

func TestHelloReplayReady(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{Replica: "r1"})
	a := e.dial("room=r1&name=ann")
	evs := untilReady(t, a)
	hello, ready := evs[0], evs[len(evs)-1]
	if hello.Type != "hello" || hello.Room != "r1" || hello.You != "ann" || hello.Replica != "r1" || hello.Resumed ||
		hello.Limits == nil || hello.Limits.MaxText != 4000 || hello.Limits.MaxFrame != 65536 || hello.Limits.Rate != 5 || hello.Limits.Burst != 10 {
		t.Fatalf("hello = %+v", hello)
	}
	if len(evs) != 2 || ready.Cursor != "0-0" || fmt.Sprint(ready.Online) != "[ann]" {
		t.Fatalf("events = %+v", evs)
	}
	join := clienttest.Next(t, a)
	if join.Type != "join" || join.From != "ann" || join.Room != "r1" || join.Replay {
		t.Fatalf("first live event = %+v, want ann's join", join)
	}
	if _, err := time.Parse(time.RFC3339Nano, join.TS); err != nil || !strings.HasSuffix(join.TS, "Z") || len(join.TS) != len("2006-01-02T15:04:05.000Z") {
		t.Fatalf("ts %q is not RFC 3339 UTC with milliseconds", join.TS)
	}
	id := clienttest.Send(t, a, "  hello  ")
	msg := expectMessage(t, a, "hello")
	if msg.ID != id || msg.From != "ann" {
		t.Fatalf("echo = %+v, ack id %s", msg, id)
	}
}

func TestNameFromCookie(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{})
	c := clienttest.Dial(t, e.wsURL("room=r1"), &client.Options{Header: http.Header{"Cookie": {"username=" + url.QueryEscape("Zoë B")}}})
	if hello := clienttest.Next(t, c); hello.You != "Zoë B" || hello.Room != "r1" {
		t.Fatalf("hello = %+v", hello)
	}
	d := e.dial("name=dan")
	if hello := clienttest.Next(t, d); hello.Room != "lobby" {
		t.Fatalf("default room = %q", hello.Room)
	}
}

func TestBadHandshake(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{})
	tests := []struct {
		name, query string
		code        string
	}{
		{"bad room", "room=Bad!&name=ann", "bad_room"},
		{"room too long", "room=" + strings.Repeat("a", 65) + "&name=ann", "bad_room"},
		{"no name", "room=r1", "bad_name"},
		{"empty name", "room=r1&name=+++", "bad_name"},
		{"long name", "room=r1&name=" + strings.Repeat("x", 33), "bad_name"},
		{"control in name", "room=r1&name=a%07b", "bad_name"},
		{"invalid utf8 name", "room=r1&name=%ff", "bad_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(tt.query)
			ev := clienttest.Next(t, c)
			if ev.Type != "error" || ev.Code != tt.code || ev.Message == "" {
				t.Fatalf("first event = %+v, want error %s", ev, tt.code)
			}
			if code := clienttest.CloseCode(t, c); code != websocket.StatusPolicyViolation {
				t.Fatalf("close code = %v, want 1008", code)
			}
		})
	}
	// The refused handshakes changed nothing: the room has no entries.
	c := e.dial("room=r1&name=ann")
	if evs := untilReady(t, c); evs[len(evs)-1].Cursor != "0-0" {
		t.Fatalf("bad handshakes wrote to the stream: %+v", evs)
	}
}

func TestOriginCheck(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{AllowedOrigins: []string{"chat.example.com"}})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, resp, err := client.Dial(ctx, e.wsURL("room=r1&name=ann"), &client.Options{Header: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin handshake: err=%v resp=%v, want 403", err, resp)
	}
	for _, origin := range []string{"https://chat.example.com", e.http.URL} {
		c := clienttest.Dial(t, e.wsURL("room=r1&name=ann"), &client.Options{Header: http.Header{"Origin": {origin}}})
		if ev := clienttest.Next(t, c); ev.Type != "hello" {
			t.Fatalf("origin %s: first event %+v", origin, ev)
		}
	}
}

// Every bad frame gets its exact error event, and the connection and the
// room keep working afterwards.
func TestBadFrames(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{MaxText: 10, Burst: 100, Rate: 100})
	watcher := e.dial("room=r1&name=watch")
	untilReady(t, watcher)
	tests := []struct {
		name  string
		typ   websocket.MessageType
		frame string
		code  string
		nonce string
	}{
		{"invalid json", websocket.MessageText, `{"type":"message",`, "bad_request", ""},
		{"unknown type", websocket.MessageText, `{"type":"shout","nonce":"n1"}`, "bad_request", "n1"},
		{"edit without an id", websocket.MessageText, `{"type":"edit","text":"x","nonce":"n4"}`, "bad_request", "n4"},
		{"edit of no message", websocket.MessageText, `{"type":"edit","id":"1-1","text":"x","nonce":"n5"}`, "not_found", "n5"},
		{"edit with empty text", websocket.MessageText, `{"type":"edit","id":"1-1","text":" ","nonce":"n6"}`, "bad_request", "n6"},
		{"delete of a bad id", websocket.MessageText, `{"type":"delete","id":"yesterday","nonce":"n7"}`, "bad_request", "n7"},
		{"reaction not an emoji", websocket.MessageText, `{"type":"react","id":"1-1","emoji":"<b>","on":true,"nonce":"n8"}`, "bad_request", "n8"},
		{"reaction too long", websocket.MessageText, `{"type":"react","id":"1-1","emoji":"` + strings.Repeat("👍", 9) + `","on":true,"nonce":"n9"}`, "bad_request", "n9"},
		{"reaction without on", websocket.MessageText, `{"type":"react","id":"1-1","emoji":"👍","nonce":"n10"}`, "bad_request", "n10"},
		{"read marker anonymous", websocket.MessageText, `{"type":"read","id":"1-1","nonce":"n11"}`, "forbidden", "n11"},
		{"text not a string", websocket.MessageText, `{"type":"message","text":1}`, "bad_request", ""},
		{"empty text", websocket.MessageText, `{"type":"message","text":"   ","nonce":"n2"}`, "bad_request", "n2"},
		{"blank plain frame", websocket.MessageText, "  ", "bad_request", ""},
		{"text too long", websocket.MessageText, `{"type":"message","text":"12345678901","nonce":"n3"}`, "too_large", "n3"},
		{"plain too long", websocket.MessageText, "12345678901", "too_large", ""},
		{"long nonce", websocket.MessageText, `{"type":"message","text":"a","nonce":"` + strings.Repeat("n", 65) + `"}`, "bad_request", ""},
		{"invalid utf8", websocket.MessageText, "a\xffb", "bad_request", ""},
		{"binary frame", websocket.MessageBinary, "hi", "bad_request", ""},
	}
	c := e.dial("room=r1&name=ann")
	untilReady(t, c)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if err := c.SendRaw(ctx, tt.typ, []byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			ev := clienttest.NextOf(t, c, "error")
			if ev.Code != tt.code || ev.Nonce != tt.nonce {
				t.Fatalf("error = %+v, want code %s nonce %q", ev, tt.code, tt.nonce)
			}
			text := fmt.Sprint("ok", i)
			clienttest.Send(t, c, text)
			expectMessage(t, c, text)
			expectMessage(t, watcher, text)
		})
	}
}

func TestPlainTextFrame(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{})
	c := e.dial("room=r1&name=ann")
	untilReady(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.SendRaw(ctx, websocket.MessageText, []byte("just text {not json}")); err != nil {
		t.Fatal(err)
	}
	// The ack and the echo through the tail may come in either order.
	var ack, echo client.Event
	for ack.Type == "" || echo.Type == "" {
		switch ev := clienttest.Next(t, c); ev.Type {
		case "ack":
			ack = ev
		case "message":
			echo = ev
		}
	}
	if ack.ID == "" || ack.Nonce != "" || echo.ID != ack.ID || echo.Text != "just text {not json}" {
		t.Fatalf("ack = %+v, echo = %+v", ack, echo)
	}
}

func TestOversizeFrameCloses1009(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{MaxFrame: 1024})
	watcher := e.dial("room=r1&name=watch")
	untilReady(t, watcher)
	c := e.dial("room=r1&name=ann")
	untilReady(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_ = c.SendRaw(ctx, websocket.MessageText, []byte(strings.Repeat("x", 2048)))
	if code := clienttest.CloseCode(t, c); code != websocket.StatusMessageTooBig {
		t.Fatalf("close code = %v, want 1009", code)
	}
	// The room goes on: the watcher sees ann leave and can still talk.
	if ev := clienttest.NextOf(t, watcher, "leave"); ev.From != "ann" {
		t.Fatalf("leave = %+v", ev)
	}
	clienttest.Send(t, watcher, "still here")
	expectMessage(t, watcher, "still here")
}

func TestFloodIsRateLimited(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{Rate: 1, Burst: 3})
	c := e.dial("room=r1&name=ann")
	untilReady(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	const frames = 20
	for i := range frames {
		frame := fmt.Sprintf(`{"type":"message","text":"m%d","nonce":"n%d"}`, i, i)
		if err := c.SendRaw(ctx, websocket.MessageText, []byte(frame)); err != nil {
			t.Fatal(err)
		}
	}
	acks, limited := 0, 0
	for acks+limited < frames {
		switch ev := clienttest.Next(t, c); ev.Type {
		case "ack":
			acks++
		case "error":
			if ev.Code != "rate_limited" || ev.Nonce == "" {
				t.Fatalf("error = %+v, want rate_limited with its nonce", ev)
			}
			limited++
		}
	}
	// A 20-frame burst against a burst of 3 at 1/s: most are dropped, the
	// first three always pass.
	if acks < 3 || limited < frames/2 {
		t.Fatalf("acks=%d rate_limited=%d", acks, limited)
	}
	// The connection stays: once the limiter refills, sending works again.
	deadline := time.Now().Add(waitFor)
	for {
		_, err := c.Send(ctx, "after the flood")
		var se *client.ServerError
		if err == nil {
			break
		}
		if !errors.As(err, &se) || se.Code != "rate_limited" || time.Now().After(deadline) {
			t.Fatalf("send after flood: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Resume decisions: from the stream's own bookkeeping.
func TestResumeDecisions(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{})
	tests := []struct {
		name, since string
		resumed     bool
	}{
		{"malformed", "yesterday", false},
		{"empty room cursor", "0-0", true},
		{"newer than generated", fmt.Sprint(time.Now().Add(time.Hour).UnixMilli(), "-0"), false},
		{"largest id", "18446744073709551615-18446744073709551615", false},
		{"overflowing id", "18446744073709551616-0", false},
		{"negative id", "-1-0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			room := "res" + strings.ReplaceAll(strings.ToLower(tt.name), " ", "")
			c := e.dial("room=" + room + "&name=ann&since=" + url.QueryEscape(tt.since))
			if hello := clienttest.Next(t, c); hello.Type != "hello" || hello.Resumed != tt.resumed {
				t.Fatalf("hello = %+v, want resumed=%v", hello, tt.resumed)
			}
			clienttest.NextOf(t, c, "ready")
		})
	}
}

func TestSinceGetsEntriesAfterIt(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{})
	a := e.dial("room=r1&name=ann")
	untilReady(t, a)
	first := clienttest.Send(t, a, "one")
	clienttest.Send(t, a, "two")
	clienttest.Send(t, a, "three")
	b := e.dial("room=r1&name=bob&since=" + first)
	evs := untilReady(t, b)
	if !evs[0].Resumed {
		t.Fatalf("hello = %+v", evs[0])
	}
	var texts []string
	for _, ev := range evs[1 : len(evs)-1] {
		if ev.Replay {
			t.Fatalf("resumed entry marked replay: %+v", ev)
		}
		texts = append(texts, ev.Text)
	}
	if fmt.Sprint(texts) != "[two three]" {
		t.Fatalf("resumed entries = %v", texts)
	}
	if ready := evs[len(evs)-1]; ready.Cursor != evs[len(evs)-2].ID {
		t.Fatalf("ready.cursor = %s, want the last entry sent %s", ready.Cursor, evs[len(evs)-2].ID)
	}
	if join := clienttest.Next(t, b); join.Type != "join" || join.From != "bob" {
		t.Fatalf("first live event = %+v", join)
	}
}

// A client that stops reading falls out of the window and catches up from
// Redis, without slowing anyone else.
func TestSlowClientCatchesUpFromRedis(t *testing.T) {
	e := newEnv(t, hub.Options{Window: 8, Batch: 4}, gateway.Options{Rate: 1000, Burst: 1000})
	slow := clienttest.Dial(t, e.wsURL("room=r1&name=slow"), &client.Options{Buffer: 1})
	fast := e.dial("room=r1&name=fast")
	untilReady(t, fast)
	const n = 100
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprint("m", i)
		clienttest.Send(t, fast, want[i])
	}
	for _, text := range want {
		expectMessage(t, fast, text)
	}
	// Only now does the slow client read; its cursor is far behind the window.
	var got []string
	for len(got) < n {
		if ev := clienttest.Next(t, slow); ev.Type == "message" {
			got = append(got, ev.Text)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("slow client got %v", got)
	}
}

// A client that stops reading long enough for its socket to fill gets
// every message whole and in order once it reads again: the room's writes
// to it fall back from the tailer to its own pump mid-frame.
func TestFullSocketLosesNothing(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{MaxText: 60000, Rate: 1000, Burst: 1000})
	slow := clienttest.Dial(t, e.wsURL("room=r1&name=slow"), &client.Options{Buffer: 1})
	fast := e.dial("room=r1&name=fast")
	untilReady(t, fast)
	big := strings.Repeat("x", 50000)
	const n = 300 // 15 MB: more than loopback's socket buffers hold
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprint(i, big)
		clienttest.Send(t, fast, want[i])
		expectMessage(t, fast, want[i])
	}
	var got []string
	for len(got) < n {
		if ev := clienttest.Next(t, slow); ev.Type == "message" {
			got = append(got, ev.Text)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d: got %.12q…, want %.12q…", i, got[i], want[i])
		}
	}
}

// A client that pings the server while the room floods it gets every
// message whole and every pong: the server's control frames and the
// tailer's writes share the socket without interleaving.
func TestPingsDuringAFlood(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{Rate: 1000, Burst: 1000})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws := e.dialRaw("room=r1&name=pinger")
	const n = 400
	got := make(chan []string, 1)
	readErr := make(chan error, 1)
	go func() {
		// Reading also answers the server's pongs for Ping below.
		var texts []string
		for len(texts) < n {
			_, data, err := ws.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			var ev struct{ Type, Text string }
			if err := json.Unmarshal(data, &ev); err != nil {
				readErr <- fmt.Errorf("frame %q: %w", data, err)
				return
			}
			if ev.Type == "message" {
				texts = append(texts, ev.Text)
			}
		}
		got <- texts
	}()
	pings := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := ws.Ping(ctx); err != nil {
				pings <- err
				return
			}
		}
		pings <- nil
	}()
	talker := e.dial("room=r1&name=talker")
	untilReady(t, talker)
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprint("m", i, strings.Repeat("x", i%300))
		clienttest.Send(t, talker, want[i])
	}
	select {
	case texts := <-got:
		if fmt.Sprint(texts) != fmt.Sprint(want) {
			t.Fatalf("got %d messages, not the %d sent in order", len(texts), n)
		}
	case err := <-readErr:
		t.Fatal(err)
	case err := <-pings:
		t.Fatalf("ping: %v", err)
	}
	cancel()
}

func TestUnresponsiveClientIsDropped(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{PingInterval: time.Second})
	// A raw connection that never reads never answers pings.
	e.dialRaw("room=r1&name=mute")
	watcher := e.dial("room=r1&name=watch")
	untilReady(t, watcher)
	for {
		ev := clienttest.NextOf(t, watcher, "leave")
		if ev.From == "mute" {
			break
		}
	}
	// The leave is written just before the connection is forgotten.
	deadline := time.Now().Add(waitFor)
	for e.gw.Conns() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("open connections = %d, want 1", e.gw.Conns())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDrainClosesWith1001AndLeaves(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{})
	a := e.dial("room=r1&name=ann")
	b := e.dial("room=r1&name=bob")
	untilReady(t, a)
	untilReady(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := e.gw.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{a, b} {
		if code := clienttest.CloseCode(t, c); code != websocket.StatusGoingAway {
			t.Fatalf("close code = %v, want 1001", code)
		}
	}
	resp, err := http.Get(e.http.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while draining = %d", resp.StatusCode)
	}
	events, _, err := e.store.After(ctx, "r1", chat.ID{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var leaves []string
	for _, ev := range events {
		if ev.Kind == chat.KindLeave {
			leaves = append(leaves, ev.From)
		}
	}
	if len(leaves) != 2 {
		t.Fatalf("leave entries = %v, want ann's and bob's", leaves)
	}
}

// A client that stops reading is dropped once a write to it has been stuck
// for WriteTimeout, and the others keep getting everything.
func TestStuckWriterIsDropped(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{WriteTimeout: 300 * time.Millisecond, MaxText: 60000, Rate: 1000, Burst: 1000})
	// A raw connection that never reads after the handshake.
	e.dialRaw("room=r1&name=stuck")
	talker := e.dial("room=r1&name=talker")
	untilReady(t, talker)
	big := strings.Repeat("x", 50000)
	for i := 0; e.gw.Conns() == 2; i++ {
		if i == 2000 {
			t.Fatal("the stuck reader was never dropped")
		}
		clienttest.Send(t, talker, fmt.Sprint(i, big))
		clienttest.NextOf(t, talker, "message") // the talker itself keeps up
	}
}

// /metrics reflects real traffic.
func TestMetricsAfterTraffic(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	log := zaptest.NewLogger(t)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "test")
	st := store.New(rdb, store.Options{Prefix: redistest.Prefix(t)})
	h := hub.New(st, log, hub.Options{Block: 250 * time.Millisecond, Metrics: m, OpenBells: hub.OpenWith(st.NewBells)})
	gw := gateway.New(gateway.FromHub(h), st, nil, log, gateway.Options{Metrics: m, MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Rate: 1, Burst: 2})
	ts := httptest.NewServer(gw.Handler())
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = gw.Drain(ctx)
		h.Close()
	})
	u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws?"
	a := clienttest.Dial(t, u+"room=m&name=ann", nil)
	b := clienttest.Dial(t, u+"room=m&name=bob", nil)
	untilReady(t, a)
	untilReady(t, b)
	clienttest.Send(t, a, "one")
	expectMessage(t, b, "one")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_ = a.SendRaw(ctx, websocket.MessageText, []byte(`{"type":"nope"}`))
	for range 3 { // past the burst of 2
		_ = a.SendRaw(ctx, websocket.MessageText, []byte("flood"))
	}
	clienttest.NextOf(t, a, "error")
	_ = b.Close()

	var body string
	deadline := time.Now().Add(waitFor)
	for {
		resp, err := http.Get(ts.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(raw)
		if strings.Contains(body, `streamchat_connections_closed_total{reason="client"} 1`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{
		"streamchat_connections_open 1",
		"streamchat_connections_opened_total 2",
		`streamchat_connections_closed_total{reason="client"} 1`,
		"streamchat_messages_appended_total 1",
		"streamchat_room_tailers 1",
		`streamchat_build_info{version="test"} 1`,
		"streamchat_append_seconds_count 1",
		"streamchat_rate_limited_total",
		`streamchat_frames_rejected_total{code="bad_request"}`,
		"streamchat_delivery_seconds_count",
		"streamchat_deliveries_total",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, `room="`) || strings.Contains(body, "ann") {
		t.Error("/metrics carries room or user labels")
	}
}

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// GET /api/rooms/{room}: the room's length and last id from Redis; 400 for
// a bad room and 503 while Redis is down, each with a JSON error body.
func TestRoomAPI(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{StoreTimeout: time.Second})
	get := func(room string, v any) int {
		t.Helper()
		resp, err := http.Get(e.http.URL + "/api/rooms/" + room)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		decodeJSON(t, resp, v)
		return resp.StatusCode
	}
	type info struct {
		Room   string `json:"room"`
		Length int64  `json:"length"`
		LastID string `json:"last_id"`
	}
	var empty info
	if code := get("empty", &empty); code != http.StatusOK || empty != (info{"empty", 0, "0-0"}) {
		t.Fatalf("empty room: %d %+v", code, empty)
	}
	var last chat.ID
	for i := range 3 {
		ack, err := e.store.Append(context.Background(), chat.Event{Room: "busy", Kind: chat.KindMessage, From: "w", Text: fmt.Sprint(i)}, "")
		if err != nil {
			t.Fatal(err)
		}
		last = ack.ID
	}
	var busy info
	if code := get("busy", &busy); code != http.StatusOK || busy != (info{"busy", 3, last.String()}) {
		t.Fatalf("busy room: %d %+v, want last id %s", code, busy, last)
	}
	var bad struct{ Code, Message string }
	if code := get("no%20such", &bad); code != http.StatusBadRequest || bad.Code != "bad_room" {
		t.Fatalf("bad room: %d %+v", code, bad)
	}
	e.redis.Stop()
	defer e.redis.Restart()
	var down struct{ Code, Message string }
	if code := get("busy", &down); code != http.StatusServiceUnavailable || down.Code != "unavailable" || strings.Contains(down.Message, "xinfo") {
		t.Fatalf("redis down: %d %+v", code, down)
	}
}

// Hub.Post appends for a room nobody on its replica has joined, and the
// entry reaches a client of another replica; a bad event appends nothing.
func TestHubPostReachesAnotherReplica(t *testing.T) {
	e := newEnv(t, hub.Options{}, gateway.Options{})
	c := e.dial("room=news&name=ann")
	untilReady(t, c)
	// A second replica's hub on the same Redis, with no connection at all:
	// a publisher or a bot.
	other := hub.New(e.store, zaptest.NewLogger(t), hub.Options{Block: 250 * time.Millisecond, OpenBells: hub.OpenWith(e.store.NewBells)})
	defer other.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := other.Post(ctx, chat.Event{Room: "Bad Room", Kind: chat.KindMessage, From: "bot", Text: "x"}, "bot"); !isCode(err, chat.CodeBadRoom) {
		t.Fatalf("bad room: %v", err)
	}
	if _, err := other.Post(ctx, chat.Event{Room: "news", Kind: chat.KindLeave, From: "bot"}, "bot"); !isCode(err, chat.CodeBadRequest) {
		t.Fatalf("presence kind: %v", err)
	}
	ack, err := other.Post(ctx, chat.Event{Room: "news", Kind: chat.KindMessage, From: "bot", Text: "extra!"}, "bot")
	if err != nil {
		t.Fatal(err)
	}
	id := ack.ID
	if other.Rooms() != 0 {
		t.Fatalf("posting started %d rooms", other.Rooms())
	}
	ev := expectMessage(t, c, "extra!")
	if ev.From != "bot" || ev.ID != id.String() {
		t.Fatalf("got %+v, want from bot with id %s", ev, id)
	}
}

func isCode(err error, code chat.Code) bool {
	var ce *chat.Error
	return errors.As(err, &ce) && ce.Code == code
}
