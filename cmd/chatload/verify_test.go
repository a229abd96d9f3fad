package main

import (
	"fmt"
	"testing"

	"github.com/streamchat/streamchat/pkg/chat"
)

func TestCheckViews(t *testing.T) {
	t.Parallel()
	id := func(ms uint64) chat.ID { return chat.ID{Ms: ms} }
	ids := func(ms ...uint64) []chat.ID {
		out := make([]chat.ID, len(ms))
		for i, m := range ms {
			out[i] = id(m)
		}
		return out
	}
	stream := ids(1, 2, 3, 4, 5, 6)
	tests := []struct {
		name  string
		start chat.ID
		views [][]chat.ID
		want  string
	}{
		{"everything", id(0), [][]chat.ID{ids(1, 2, 3, 4, 5, 6)}, "[]"},
		{"replay then live from the cursor", id(3), [][]chat.ID{ids(2, 3, 4, 5, 6)}, "[]"},
		{"before the cursor need not arrive", id(3), [][]chat.ID{ids(4, 5, 6)}, "[]"},
		{"a gap", id(0), [][]chat.ID{ids(1, 2, 4, 5, 6)}, "[{lost 3-0}]"},
		{"the tail missing", id(0), [][]chat.ID{ids(1, 2, 3, 4)}, "[{lost 5-0} {lost 6-0}]"},
		{"a duplicate", id(0), [][]chat.ID{ids(1, 2, 2, 3, 4, 5, 6)}, "[{duplicated 2-0}]"},
		{"reordered", id(0), [][]chat.ID{ids(1, 3, 2, 4, 5, 6)}, "[{reordered 2-0}]"},
		{"a fresh view may repeat", id(0), [][]chat.ID{ids(1, 2, 3, 4), ids(3, 4, 5, 6)}, "[]"},
		{"shown then lost by Redis", id(0), [][]chat.ID{ids(1, 2, 3, 4, 5, 6, 7)}, "[{vanished 7-0}]"},
	}
	for _, tt := range tests {
		if got := fmt.Sprint(checkViews(stream, tt.start, tt.views)); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

// By default every room has clients on every gateway; -by-room keeps a
// room on one.
func TestGatewayOf(t *testing.T) {
	const rooms, gateways = 20, 2
	on := map[int]map[int]bool{}
	for i := range rooms * 50 {
		r := i % rooms
		if on[r] == nil {
			on[r] = map[int]bool{}
		}
		on[r][gatewayOf(i, rooms, gateways, false)] = true
		if g := gatewayOf(i, rooms, gateways, true); g != r%gateways {
			t.Fatalf("by room: client %d of room %d on gateway %d", i, r, g)
		}
	}
	for r, gs := range on {
		if len(gs) != gateways {
			t.Fatalf("room %d has clients on %d of %d gateways", r, len(gs), gateways)
		}
	}
}
