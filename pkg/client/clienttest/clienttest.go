// Package clienttest has the test helpers that drive a gateway through the
// Go client. Every wait is bounded so a broken test fails instead of hanging;
// none is an assertion about speed. Imported only by _test.go files.
package clienttest

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/streamchat/streamchat/pkg/client"
)

// Wait bounds every wait of these helpers.
const Wait = 20 * time.Second

// Dial connects to a gateway /ws URL and closes the connection when the test
// ends.
func Dial(t testing.TB, url string, opts *client.Options) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	c, _, err := client.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Next returns the next event, failing the test when none comes or the
// connection ends.
func Next(t testing.TB, c *client.Conn) client.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("connection ended: %v", c.Err())
		}
		return ev
	case <-time.After(Wait):
		t.Fatal("no event")
	}
	return client.Event{}
}

// NextOf skips events until one of the given type arrives.
func NextOf(t testing.TB, c *client.Conn, typ string) client.Event {
	t.Helper()
	for {
		if ev := Next(t, c); ev.Type == typ {
			return ev
		}
	}
}

// UntilReady reads hello, the replayed or resumed entries, and ready.
func UntilReady(t testing.TB, c *client.Conn) (hello client.Event, entries []client.Event, ready client.Event) {
	t.Helper()
	hello = Next(t, c)
	if hello.Type != "hello" {
		t.Fatalf("first event = %+v, want hello", hello)
	}
	for {
		ev := Next(t, c)
		if ev.Type == "ready" {
			return hello, entries, ev
		}
		entries = append(entries, ev)
	}
}

// Messages reads until n message events arrived and returns them.
func Messages(t testing.TB, c *client.Conn, n int) []client.Event {
	t.Helper()
	var got []client.Event
	for len(got) < n {
		if ev := Next(t, c); ev.Type == "message" {
			got = append(got, ev)
		}
	}
	return got
}

// Send posts text and returns its stored id, failing the test on error.
func Send(t testing.TB, c *client.Conn, text string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	id, err := c.Send(ctx, text)
	if err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
	return id
}

// CloseCode waits for the connection to end and returns its close code.
func CloseCode(t testing.TB, c *client.Conn) websocket.StatusCode {
	t.Helper()
	for {
		select {
		case _, ok := <-c.Events():
			if !ok {
				return websocket.CloseStatus(c.Err())
			}
		case <-time.After(Wait):
			t.Fatal("connection did not end")
		}
	}
}
