package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/client"
	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/gateway"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/redistest"
	"github.com/streamchat/streamchat/pkg/store"
)

// gatewayURL is the /ws endpoint of a real gateway on a real redis-server,
// shared by the tests and examples of this package.
var gatewayURL string

func TestMain(m *testing.M) {
	srv, err := redistest.Launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rdb := srv.Client()
	st := store.New(rdb, store.Options{Prefix: "clienttest"})
	h := hub.New(st, zap.NewNop(), hub.Options{Block: 200 * time.Millisecond, OpenBells: hub.OpenWith(st.NewBells)})
	gw := gateway.New(gateway.FromHub(h), st, nil, zap.NewNop(), gateway.Options{Rate: 1000, Burst: 1000})
	ts := httptest.NewServer(gw.Handler())
	gatewayURL = "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	// The examples read their endpoint from the environment, so they can
	// be pasted as they are.
	_ = os.Setenv("STREAMCHAT_WS_URL", gatewayURL)

	code := m.Run()

	ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = gw.Drain(ctx)
	cancel()
	h.Close()
	_ = rdb.Close()
	srv.Close()
	os.Exit(code)
}

const waitFor = 15 * time.Second

func dial(t *testing.T, query string, opts *client.Options) *client.Conn {
	t.Helper()
	return clienttest.Dial(t, gatewayURL+"?"+query, opts)
}

// A dropped connection reconnects by itself, resumes from the last entry it
// delivered, and delivers every entry exactly once across the drop.
func TestReconnectDeliversExactlyOnce(t *testing.T) {
	reader := dial(t, "room=reconnect&name=reader", &client.Options{Reconnect: true, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	writer := dial(t, "room=reconnect&name=writer", nil)
	clienttest.UntilReady(t, reader)
	clienttest.UntilReady(t, writer)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	var want []string
	for i := range 40 {
		if i == 10 || i == 25 {
			reader.Drop() // twice, in the middle of the flow
		}
		id, err := writer.Send(ctx, fmt.Sprint("m", i))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	var got []string
	hellos := 0
	for len(got) < len(want) {
		switch ev := clienttest.Next(t, reader); {
		case ev.Type == "hello":
			hellos++
			if !ev.Resumed {
				t.Fatalf("reconnect was not resumed: %+v", ev)
			}
		case ev.Type == "message":
			got = append(got, ev.ID)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got\n%v\nwant\n%v", got, want)
	}
	// The second drop may land while the first reconnect is still under way.
	if hellos < 1 {
		t.Fatal("never reconnected")
	}
	// LastID is at least the last message (a join may have followed it).
	last, err1 := chat.ParseID(reader.LastID())
	wantLast, err2 := chat.ParseID(want[len(want)-1])
	if err1 != nil || err2 != nil || last.Less(wantLast) {
		t.Fatalf("LastID = %s, want at least %s", reader.LastID(), want[len(want)-1])
	}
	// Sending works on the reconnected connection too.
	if _, err := reader.Send(ctx, "back"); err != nil {
		t.Fatal(err)
	}
}

func TestCloseStopsReconnecting(t *testing.T) {
	c := dial(t, "room=close&name=ann", &client.Options{Reconnect: true, MinBackoff: 10 * time.Millisecond})
	clienttest.UntilReady(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(waitFor):
		t.Fatal("not done after Close")
	}
	if _, err := c.Send(context.Background(), "x"); err != client.ErrClosed {
		t.Fatalf("Send after Close = %v", err)
	}
}

// A refused handshake (1008) is final even with Reconnect.
func TestRefusedIsFinal(t *testing.T) {
	c := dial(t, "room=BAD&name=ann", &client.Options{Reconnect: true, MinBackoff: 10 * time.Millisecond})
	if ev := clienttest.Next(t, c); ev.Type != "error" || ev.Code != "bad_room" {
		t.Fatalf("first event %+v", ev)
	}
	select {
	case <-c.Done():
	case <-time.After(waitFor):
		t.Fatal("reconnecting after a refused handshake")
	}
}

func TestOnEventCallback(t *testing.T) {
	got := make(chan client.Event, 16)
	c := dial(t, "room=callback&name=ann", &client.Options{OnEvent: func(ev client.Event) { got <- ev }})
	if c.Events() != nil {
		t.Fatal("Events channel exists with OnEvent set")
	}
	for ev := range got {
		if ev.Type == "ready" {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	id, err := c.Send(ctx, "via callback")
	if err != nil {
		t.Fatal(err)
	}
	for ev := range got {
		if ev.Type == "message" {
			if ev.ID != id {
				t.Fatalf("message %+v, want id %s", ev, id)
			}
			break
		}
	}
}
