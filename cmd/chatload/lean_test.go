package main

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/streamchat/streamchat/pkg/chat"
)

// The lean receiver reads what the gateway writes: the same frames the
// codec makes, found by scanning bytes.
func TestLeanReadsGatewayFrames(t *testing.T) {
	t.Parallel()
	text := messageText(1, 7, 64)
	id := chat.ID{Ms: 1764650401234, Seq: 3}
	live := chat.EncodeEvent(chat.Event{Kind: chat.KindMessage, ID: id, Room: "r", From: "ann", Text: text, Nonce: "n1"}, false)
	replay := chat.EncodeEvent(chat.Event{Kind: chat.KindMessage, ID: id, Room: "r", From: "ann", Text: text}, true)
	ready := chat.EncodeReady(chat.ID{Ms: 5, Seq: 1}, nil, nil)
	ack := chat.EncodeAck("l9", id, false)

	if got := string(frameType(live)); got != "message" {
		t.Fatalf("frameType(live) = %q", got)
	}
	if got, ok := parseIDBytes(field(live, fieldID)); !ok || got != id {
		t.Fatalf("id = %v, %v", got, ok)
	}
	pub, seq, _, ok := parseTextBytes(field(live, fieldText))
	if !ok || pub != 1 || seq != 7 {
		t.Fatalf("text = %d %d %v from %s", pub, seq, ok, live)
	}
	if !containsReplay(replay) || containsReplay(live) {
		t.Fatalf("replay flag: live %s, replay %s", live, replay)
	}
	if got, ok := parseIDBytes(field(ready, fieldCursor)); string(frameType(ready)) != "ready" || !ok || got != (chat.ID{Ms: 5, Seq: 1}) {
		t.Fatalf("ready %s: %v %v", ready, got, ok)
	}
	if string(frameType(ack)) != "ack" || string(field(ack, fieldNonce)) != "l9" {
		t.Fatalf("ack %s", ack)
	}
}

func containsReplay(b []byte) bool { return bytes.Contains(b, replayTrue) }

func TestParseBytes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]chat.ID{"1-0": {Ms: 1}, "17": {Ms: 17}, "1764650401234-12": {Ms: 1764650401234, Seq: 12}} {
		if got, ok := parseIDBytes([]byte(in)); !ok || got != want {
			t.Errorf("parseIDBytes(%q) = %v, %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "-1", "1-", "1-x", "x", "1-2-3", "99999999999999999999-0"} {
		if _, ok := parseIDBytes([]byte(bad)); ok {
			t.Errorf("parseIDBytes(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "1", "1 2", "a 2 3 ", "1 b 3 ", "1 2 c", "1 2 3x"} {
		if _, _, _, ok := parseTextBytes([]byte(bad)); ok {
			t.Errorf("parseTextBytes(%q) accepted", bad)
		}
	}
	if p, s, ts, ok := parseTextBytes([]byte("3 42 1700000000000000000 xxx")); !ok || p != 3 || s != 42 || ts != 1700000000000000000 {
		t.Errorf("parseTextBytes = %d %d %d %v", p, s, ts, ok)
	}
}

// The lean receiver's checks are the client receiver's: duplicates,
// reordering and gaps, and replayed entries are not counted.
func TestLeanReceiverChecks(t *testing.T) {
	t.Parallel()
	r := &room{latency: newHistogram()}
	rc := &receiver{room: r, lastSeq: []int64{-1}}
	feed := func(b []byte) { rc.onFrame(frameType(b), b) }
	msg := func(ms uint64, seq int64, replay bool) []byte {
		return chat.EncodeEvent(chat.Event{Kind: chat.KindMessage, ID: chat.ID{Ms: ms}, Room: "r", From: "a", Text: messageText(0, seq, 40)}, replay)
	}
	feed(msg(1, 0, false)) // before ready: ignored
	feed(chat.EncodeReady(chat.ID{Ms: 1}, nil, nil))
	for _, b := range [][]byte{
		msg(1, 0, true),  // replayed: ignored
		msg(1, 0, false), // at the cursor: a duplicate
		msg(2, 1, false), // ok
		msg(2, 1, false), // duplicate
		msg(4, 3, false), // ok, seq 2 missing
		msg(3, 2, false), // late
		msg(5, 4, false), // ok
		[]byte(`{"type":"message","id":"6-0","text":"someone else"}`), // not ours
	} {
		feed(b)
	}
	if rc.delivered != 3 || rc.dups != 2 || rc.ooo != 1 || rc.gaps != 1 || rc.last != (chat.ID{Ms: 5}) {
		t.Fatalf("delivered=%d dups=%d ooo=%d gaps=%d last=%v", rc.delivered, rc.dups, rc.ooo, rc.gaps, rc.last)
	}
}

// A delivery costs the lean receiver no allocation.
func TestLeanReceiverAllocatesNothing(t *testing.T) {
	r := &room{latency: newHistogram()}
	rc := &receiver{room: r, lastSeq: []int64{-1}}
	rc.readyAt(chat.ID{})
	frames := make([][]byte, 1000)
	for i := range frames {
		frames[i] = chat.EncodeEvent(chat.Event{Kind: chat.KindMessage, ID: chat.ID{Ms: uint64(time.Now().UnixMilli()), Seq: uint64(i)},
			Room: "load-x-1", From: fmt.Sprint("u", i), Text: messageText(0, int64(i), 64), Nonce: "l1"}, false)
	}
	i := 0
	allocs := testing.AllocsPerRun(len(frames)-1, func() {
		b := frames[i]
		i++
		rc.onFrame(frameType(b), b)
	})
	if allocs != 0 || rc.delivered == 0 {
		t.Fatalf("%.2f allocations per delivery (delivered %d)", allocs, rc.delivered)
	}
}

func BenchmarkLeanReceiver(b *testing.B) {
	r := &room{latency: newHistogram()}
	rc := &receiver{room: r, lastSeq: []int64{-1}}
	rc.readyAt(chat.ID{})
	frame := chat.EncodeEvent(chat.Event{Kind: chat.KindMessage, ID: chat.ID{Ms: 1}, Room: "load-x-1", From: "u1", Text: messageText(0, 0, 64)}, false)
	b.ReportAllocs()
	for b.Loop() {
		rc.onFrame(frameType(frame), frame)
	}
}
