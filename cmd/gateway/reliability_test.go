package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/streamchat/streamchat/pkg/client"
	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/config"
	"github.com/streamchat/streamchat/pkg/redistest"
)

// entriesWithNonce returns the IDs of the room's stream entries that carry
// the nonce.
func entriesWithNonce(t *testing.T, srv *redistest.Server, room, nonce string) []string {
	t.Helper()
	msgs, err := srv.Client().XRange(context.Background(), "chat:{"+room+"}:log", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		if m.Values["nonce"] == nonce {
			out = append(out, m.ID)
		}
	}
	return out
}

func sendNonce(t *testing.T, c *client.Conn, nonce, text string) client.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ack, err := c.SendNonce(ctx, nonce, text)
	if err != nil {
		t.Fatalf("send %q: %v", nonce, err)
	}
	return ack
}

// One client key, the same nonce on two replicas: one entry, and both
// acks carry its ID. Another client's same nonce is its own message.
func TestSameNonceOnTwoReplicas(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, nil)
	room := uniqueRoom("dedupe")
	key := "0123456789abcdef0123"
	a := clienttest.Dial(t, cl.replicas[0].wsURL(room, "ann", ""), &client.Options{ClientKey: key})
	clienttest.UntilReady(t, a)
	b := clienttest.Dial(t, cl.replicas[1].wsURL(room, "ann", ""), &client.Options{ClientKey: key})
	clienttest.UntilReady(t, b)
	other := dial(t, cl.replicas[1].wsURL(room, "bob", "")) // a random key of its own

	first := sendNonce(t, a, "n1", "hello")
	second := sendNonce(t, b, "n1", "hello")
	if first.Duplicate || !second.Duplicate || first.ID != second.ID {
		t.Fatalf("acks %+v and %+v: want the same ID, the second a duplicate", first, second)
	}
	third := sendNonce(t, other, "n1", "hello")
	if third.Duplicate || third.ID == first.ID {
		t.Fatalf("another client's nonce: %+v", third)
	}
	if got := entriesWithNonce(t, cl.redis, room, "n1"); fmt.Sprint(got) != fmt.Sprint([]string{first.ID, third.ID}) {
		t.Fatalf("entries with nonce n1: %v, want %s and %s", got, first.ID, third.ID)
	}
	// A bad client key is refused at the handshake, with the reason.
	bad := dial(t, cl.replicas[0].wsURL(room, "eve", "")+"&client=short")
	if ev := clienttest.Next(t, bad); ev.Type != "error" || ev.Code != "bad_request" || !strings.Contains(ev.Message, "client key") {
		t.Fatalf("bad client key: %+v", ev)
	}
}

// Redis stalls for longer than the store timeout: the gateway answers
// unavailable, the client retries with the same nonce, and once Redis wakes
// it runs the queued original and the retries. One entry.
func TestRetryThroughRedisStall(t *testing.T) {
	cl := startCluster(t, 1, config.TailShared, func(c *config.Config) { c.StoreTimeout = 300 * time.Millisecond })
	room := uniqueRoom("stall")
	c := dial(t, cl.replicas[0].wsURL(room, "ann", ""))
	clienttest.UntilReady(t, c)
	sendNonce(t, c, "warm", "loads the script")

	cl.redis.Pause()
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		_, err := c.SendNonce(ctx, "n1", "hello")
		cancel()
		var se *client.ServerError
		if !errors.As(err, &se) || se.Code != "unavailable" {
			cl.redis.Resume()
			t.Fatalf("send while Redis is stopped: %v, want unavailable", err)
		}
	}
	cl.redis.Resume()
	var ack client.Ack
	deadline := time.Now().Add(waitFor)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		a, err := c.SendNonce(ctx, "n1", "hello")
		cancel()
		if err == nil {
			ack = a
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("send after Redis woke: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The three sends Redis had queued while stopped run once it wakes,
	// before or after the retry that was acknowledged: wait until all of
	// them ran (warm-up, three queued, the retries), then the room holds
	// the message once, under the acknowledged ID.
	// The sends Redis had queued while stopped run once it wakes, before or
	// after the acknowledged retry; either way the room holds the message
	// once, under the acknowledged ID. (That an original Redis runs late
	// appends nothing is pinned by the store's
	// TestAppendDedupeLateOriginal, and by the chaos run's Redis stall.)
	if got := entriesWithNonce(t, cl.redis, room, "n1"); len(got) != 1 || got[0] != ack.ID {
		t.Fatalf("entries with nonce n1: %v, ack %+v", got, ack)
	}
	t.Logf("the acknowledged retry was a duplicate of a queued original: %v", ack.Duplicate)
}

// A drop between the send and its ack: the client reconnects, resumes, and
// writes the message again with the same nonce; the room holds it once and
// the client shows it once.
func TestClientResendsAfterDrop(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, nil)
	room := uniqueRoom("resend")
	c := clienttest.Dial(t, cl.replicas[0].wsURL(room, "ann", ""), &client.Options{Buffer: 4096, Reconnect: true, MinBackoff: 10 * time.Millisecond})
	clienttest.UntilReady(t, c)

	cl.redis.Pause()
	type result struct {
		ack client.Ack
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		ack, err := c.SendNonce(ctx, "n1", "hello")
		done <- result{ack, err}
	}()
	// The gateway has the frame (it is waiting on Redis) before the drop.
	waitMetric(t, cl.replicas[0], "streamchat_messages_received_total", 1)
	c.Drop()
	cl.redis.Resume()
	res := <-done
	if res.err != nil {
		t.Fatalf("send across the drop: %v", res.err)
	}
	if res.ack.Resent == 0 {
		t.Fatalf("ack %+v: the message was not sent again after the drop", res.ack)
	}
	if got := entriesWithNonce(t, cl.redis, room, "n1"); len(got) != 1 || got[0] != res.ack.ID {
		t.Fatalf("entries with nonce n1: %v, ack %+v", got, res.ack)
	}
	// The client delivers the entry once, whichever connection brought it.
	after := sendNonce(t, c, "n2", "after")
	var seen []string
	for {
		ev := clienttest.Next(t, c)
		if ev.Type == "message" {
			seen = append(seen, ev.ID)
			if ev.ID == after.ID {
				break
			}
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint([]string{res.ack.ID, after.ID}) {
		t.Fatalf("messages delivered: %v, want %s then %s", seen, res.ack.ID, after.ID)
	}
}

// waitMetric waits until the replica's counter reaches at least min.
func waitMetric(t *testing.T, r *replica, name string, min float64) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		resp, err := http.Get("http://" + r.addr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, line := range strings.Split(string(body), "\n") {
				var v float64
				if rest, ok := strings.CutPrefix(line, name+" "); ok {
					if _, err := fmt.Sscan(rest, &v); err == nil && v >= min {
						return
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric %s never reached %v", name, min)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis crashes and comes back with less than clients have seen (here: the
// last snapshot). A client resuming from an ID the stream no longer has
// gets resumed:false and the replay of what is there, never a silent gap.
func TestResumeAfterRedisLostData(t *testing.T) {
	srv := redistest.StartWith(t)
	r := startReplica(t, testConfig(srv.URL(), "A", config.TailShared))
	room := uniqueRoom("lost")
	c := dial(t, r.wsURL(room, "ann", ""))
	clienttest.UntilReady(t, c)
	var kept []string
	for i := range 3 {
		kept = append(kept, clienttest.Send(t, c, fmt.Sprint("kept ", i)))
	}
	if err := srv.Client().Save(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	var last string
	for i := range 3 {
		last = clienttest.Send(t, c, fmt.Sprint("lost ", i))
	}
	clienttest.Messages(t, c, 6)
	c.CloseNow()
	srv.Kill()
	srv.Restart()
	waitReady(t, r, http.StatusOK)

	back := dial(t, r.wsURL(room, "ann", last))
	hello, entries, _ := clienttest.UntilReady(t, back)
	if hello.Resumed {
		t.Fatal("resumed from an ID the stream lost")
	}
	var replay []string
	for _, ev := range entries {
		if ev.Type == "message" {
			replay = append(replay, ev.ID)
		}
	}
	if fmt.Sprint(replay) != fmt.Sprint(kept) {
		t.Fatalf("replay %v, want what Redis kept %v", replay, kept)
	}
}

// An idle keep-alive connection is closed after CHAT_HTTP_IDLE_TIMEOUT.
func TestIdleKeepAliveClosed(t *testing.T) {
	cfg := testConfig("", "idle", config.TailShared)
	cfg.HTTPIdleTimeout = 300 * time.Millisecond
	r := startReplica(t, cfg)
	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", r.addr); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("healthz: %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
	}
	// The server closes the idle socket; the read sees EOF, not our deadline.
	_ = conn.SetReadDeadline(time.Now().Add(waitFor))
	if n, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle keep-alive socket: read %v, %v; want EOF from the server closing it", n, err)
	}
}

// With CHAT_ALLOWED_HOSTS a request for any other Host is refused before
// any route, websockets included (DNS rebinding); probes answer any Host.
func TestAllowedHosts(t *testing.T) {
	cfg := testConfig("", "hosts", config.TailShared)
	cfg.AllowedHosts = []string{"chat.example.com", "*.chat.example.com"}
	r := startReplica(t, cfg)
	get := func(path, host string, header http.Header) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+r.addr+path, nil)
		req.Host = host
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		path, host string
		want       int
	}{
		{"/", "chat.example.com", http.StatusOK},
		{"/", "CHAT.example.com:8080", http.StatusOK},
		{"/", "eu.chat.example.com", http.StatusOK},
		{"/", "evil.example", http.StatusMisdirectedRequest},
		{"/", "chat.example.com.evil.example", http.StatusMisdirectedRequest},
		{"/api/rooms/lobby", "evil.example", http.StatusMisdirectedRequest},
		{"/metrics", "127.0.0.1", http.StatusMisdirectedRequest},
		{"/healthz", "10.1.2.3:8080", http.StatusOK},
		{"/readyz", "10.1.2.3:8080", http.StatusOK},
	} {
		if got := get(tt.path, tt.host, nil); got != tt.want {
			t.Errorf("GET %s with Host %s: %d, want %d", tt.path, tt.host, got, tt.want)
		}
	}
	// The rebinding attack: Origin and Host agree, both foreign.
	ws := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Origin": {"http://evil.example"}}
	if got := get("/ws?name=eve", "evil.example", ws); got != http.StatusMisdirectedRequest {
		t.Fatalf("websocket for a foreign host: %d, want 421", got)
	}
	ws.Set("Origin", "http://chat.example.com")
	if got := get("/ws?name=ann", "chat.example.com", ws); got != http.StatusSwitchingProtocols {
		t.Fatalf("websocket for an allowed host: %d, want 101", got)
	}
}

// With CHAT_ACK_WAIT_REPLICAS=1 an ack means a Redis replica has the
// message; with the replica stalled the send answers unavailable, and the
// retry once it is back appends nothing and acks the same ID.
func TestAckWaitsForAReplica(t *testing.T) {
	primary := redistest.StartWith(t, "--repl-diskless-sync-delay", "0")
	replica := redistest.StartReplica(t, primary)
	cfg := testConfig(primary.URL(), "A", config.TailShared)
	cfg.AckWaitReplicas, cfg.AckWaitTimeout = 1, 300*time.Millisecond
	r := startReplica(t, cfg)
	room := uniqueRoom("wait")
	c := dial(t, r.wsURL(room, "ann", ""))
	clienttest.UntilReady(t, c)
	first := sendNonce(t, c, "n1", "on two machines")
	if got := entriesWithNonce(t, replica, room, "n1"); len(got) != 1 || got[0] != first.ID {
		t.Fatalf("replica holds %v after the ack of %s", got, first.ID)
	}

	replica.Pause()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := c.SendNonce(ctx, "n2", "replica stalled")
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != "unavailable" {
		replica.Resume()
		t.Fatalf("send with the replica stalled: %v, want unavailable", err)
	}
	replica.Resume()
	retry := sendNonce(t, c, "n2", "replica stalled")
	if !retry.Duplicate {
		t.Fatalf("retry after the replica is back: %+v, want the duplicate of the stored entry", retry)
	}
	if got := entriesWithNonce(t, replica, room, "n2"); len(got) != 1 || got[0] != retry.ID {
		t.Fatalf("replica holds %v, ack %+v", got, retry)
	}
}
