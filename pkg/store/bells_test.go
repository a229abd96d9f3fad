package store

import (
	"context"
	"testing"
	"time"

	"github.com/streamchat/streamchat/pkg/chat"
)

// An appended message's bell brings the entry, exactly as a read of the
// stream returns it, and the ID of the entry before it; other bells, and
// anything malformed on the channel, are bells without an entry.
func TestBellCarriesTheEntry(t *testing.T) {
	s, rdb := newStore(t, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := s.NewBells(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if bell, err := b.Receive(ctx); err != nil || bell.Carried || bell.Room != "r" {
		t.Fatalf("subscription: %+v, %v", bell, err)
	}
	attrs, aerr := chat.NewAttrs(map[string]string{"mime": "text/plain", "name": "a \"b\" 5:c"})
	if aerr != nil {
		t.Fatal(aerr)
	}
	sent := []chat.Event{
		{Room: "r", Kind: chat.KindMessage, From: "ann", Text: "hi: 12:34 \x00 é", Nonce: "n1", UID: "u1"},
		{Room: "r", Kind: chat.KindFile, From: "bob", Nonce: "n2", Attrs: attrs, Bot: true},
	}
	prev := chat.ID{}
	for _, e := range sent {
		ack, err := s.Append(ctx, e, "sender")
		if err != nil {
			t.Fatal(err)
		}
		bell, err := b.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		read, _, err := s.After(ctx, "r", prev, 10)
		if err != nil || len(read) != 1 {
			t.Fatalf("read after %v: %v, %v", prev, read, err)
		}
		if !bell.Carried || bell.Prev != prev || bell.Entry.ID != ack.ID {
			t.Fatalf("bell %+v, want the entry %v after %v", bell, ack.ID, prev)
		}
		if bell.Entry != read[0] {
			t.Fatalf("the bell's entry differs from the stream's:\nbell   %+v\nstream %+v", bell.Entry, read[0])
		}
		prev = ack.ID
	}
	for _, payload := range []string{"1", "1-0 2-0", "2-0 1-0 4:type", "x 2-0 4:type7:message", "1-0 2-0 4:type7:messag", "1-0 2-0 9:type", "1-0 2-0 -1:"} {
		if err := rdb.Publish(ctx, s.BellChannel("r"), payload).Err(); err != nil {
			t.Fatal(err)
		}
		if bell, err := b.Receive(ctx); err != nil || bell.Carried || bell.Room != "r" {
			t.Fatalf("payload %q: %+v, %v; want a bell without an entry", payload, bell, err)
		}
	}
}
