package main

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/client"
	"github.com/streamchat/streamchat/pkg/gateway"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/redistest"
	"github.com/streamchat/streamchat/pkg/store"
)

func TestParseSources(t *testing.T) {
	t.Parallel()
	ips, err := parseSources("127.0.0.2-127.0.0.4,127.0.1.1")
	if err != nil || fmt.Sprint(ips) != "[127.0.0.2 127.0.0.3 127.0.0.4 127.0.1.1]" {
		t.Fatalf("parseSources = %v, %v", ips, err)
	}
	for _, bad := range []string{"x", "127.0.0.1-y", "::1"} {
		if _, err := parseSources(bad); err == nil {
			t.Errorf("parseSources(%q) accepted", bad)
		}
	}
}

func TestMessageTextRoundTrip(t *testing.T) {
	t.Parallel()
	text := messageText(3, 42, 64)
	pub, seq, sent, ok := parseText(text)
	if len(text) != 64 || !ok || pub != 3 || seq != 42 || time.Since(time.Unix(0, sent)) > time.Minute {
		t.Fatalf("%q → %d %d %d %v", text, pub, seq, sent, ok)
	}
}

// The receiver's checks catch duplicates, reordering and gaps.
func TestReceiverChecks(t *testing.T) {
	t.Parallel()
	r := &room{latency: newHistogram()}
	rc := &receiver{room: r, lastSeq: []int64{-1}}
	rc.onEvent(client.Event{Type: "ready", Cursor: "1-0"})
	msg := func(id string, seq int64) client.Event {
		return client.Event{Type: "message", ID: id, Text: messageText(0, seq, 40)}
	}
	for _, ev := range []client.Event{
		msg("1-0", 0), // at the cursor: not after it, counted as a duplicate
		msg("2-0", 1), // ok
		msg("2-0", 1), // duplicate
		msg("4-0", 3), // ok, but seq 2 is missing
		msg("3-0", 2), // late: out of order
		msg("5-0", 4), // ok
	} {
		rc.onEvent(ev)
	}
	if rc.delivered != 3 || rc.dups != 2 || rc.ooo != 1 || rc.gaps != 1 {
		t.Fatalf("delivered=%d dups=%d ooo=%d gaps=%d", rc.delivered, rc.dups, rc.ooo, rc.gaps)
	}
	if _, err := chat.ParseID(rc.last.String()); err != nil || rc.last.String() != "5-0" {
		t.Fatalf("last = %v", rc.last)
	}
}

// A short real run against a real gateway on a real Redis: every delivery
// accounted for.
func TestRunLoadEndToEnd(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	st := store.New(rdb, store.Options{Prefix: redistest.Prefix(t)})
	h := hub.New(st, zap.NewNop(), hub.Options{Block: 200 * time.Millisecond, OpenBells: hub.OpenWith(st.NewBells)})
	gw := gateway.New(gateway.FromHub(h), st, nil, zap.NewNop(), gateway.Options{Rate: 1000, Burst: 1000})
	ts := httptest.NewServer(gw.Handler())
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Drain(ctx)
		h.Close()
	})
	for _, kind := range []string{receiverPoll, receiverLean, receiverClient} {
		res, err := runLoad(context.Background(), loadConfig{
			URLs: []string{"ws" + strings.TrimPrefix(ts.URL, "http")}, Rooms: 3, Clients: 5, Publishers: 2,
			Rate: 40, Size: 64, Duration: time.Second, Ramp: 200, Progress: io.Discard, Receiver: kind,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.ok() || res.Connected != 15 || res.Sent == 0 || res.Delivered != res.Expected || res.Expected != res.Sent*5 {
			t.Fatalf("%s receiver: result: %+v", kind, res)
		}
		if res.LatencyMicros["p50"] <= 0 || res.LatencyMicros["max"] < res.LatencyMicros["p50"] {
			t.Fatalf("%s receiver: latency: %v", kind, res.LatencyMicros)
		}
	}
}
