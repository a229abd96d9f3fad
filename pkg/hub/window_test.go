package hub

import (
	"testing"

	"github.com/streamchat/streamchat/pkg/chat"
)

// A room's window starts small and grows to Window as entries come, keeping
// every entry in order; past Window the oldest go and base follows them.
func TestWindowGrowsToItsLimit(t *testing.T) {
	t.Parallel()
	const window = 40
	r := &room{h: &Hub{opts: Options{Window: window}}, wake: make(chan struct{}), ring: make([]Entry, initialWindow)}
	entry := func(i int) Entry { return Entry{Event: chat.Event{ID: chat.ID{Ms: uint64(i)}}} }
	next := 1
	for _, batch := range []int{3, 10, 1, 7, 20, 2, 30} {
		var es []Entry
		for range batch {
			es = append(es, entry(next))
			next++
		}
		r.push(es)
		last := next - 1
		first := max(1, last-window+1)
		got, _, _, behind := r.after(chat.ID{Ms: uint64(first - 1)}, 1000, nil)
		if behind || len(got) != last-first+1 {
			t.Fatalf("after %d entries: %d in the window (behind=%v), want %d", last, len(got), behind, last-first+1)
		}
		for i, e := range got {
			if e.ID() != (chat.ID{Ms: uint64(first + i)}) {
				t.Fatalf("after %d entries: window[%d] = %v, want %d", last, i, e.ID(), first+i)
			}
		}
		if len(r.ring) > window {
			t.Fatalf("window grew to %d, past %d", len(r.ring), window)
		}
		if first > 1 {
			if _, _, _, behind := r.after(chat.ID{Ms: uint64(first - 2)}, 1000, nil); !behind {
				t.Fatalf("after %d entries: a cursor before the window is not behind", last)
			}
		}
	}
	if len(r.ring) != window {
		t.Fatalf("window is %d entries, want %d", len(r.ring), window)
	}
}

// A room's bells hold at most maxCarried entries for the reader; past that
// the room is marked to be read from its cursor instead.
func TestCarriedBellsAreBounded(t *testing.T) {
	t.Parallel()
	g := &group{rooms: map[string]*room{"r": {}}, rung: map[string]bool{}, carried: map[string][]chat.Bell{}, signal: make(chan struct{}, 1)}
	for i := range maxCarried + 10 {
		g.carry(chat.Bell{Room: "r", Carried: true, Prev: chat.ID{Ms: uint64(i)}, Entry: chat.Event{ID: chat.ID{Ms: uint64(i + 1)}}})
		if len(g.carried["r"]) > maxCarried {
			t.Fatalf("%d bells held", len(g.carried["r"]))
		}
	}
	if !g.rung["r"] {
		t.Fatal("the room was not marked to be read after its bells overflowed")
	}
	g.carry(chat.Bell{Room: "gone", Carried: true})
	if len(g.carried["gone"]) != 0 {
		t.Fatal("a bell of a room the reader does not hold was kept")
	}
}
