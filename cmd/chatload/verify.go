package main

import (
	"github.com/streamchat/streamchat/pkg/chat"
)

// Kinds of broken promise a client's log can show.
const (
	vLost       = "lost"       // an entry after the client's start that it never received
	vDuplicated = "duplicated" // received twice in one view
	vReordered  = "reordered"  // received before an entry the stream holds earlier
	vVanished   = "vanished"   // received, then gone from the stream (Redis lost it)
)

type violation struct {
	kind string
	id   chat.ID
}

// checkViews compares what one client received with its room's stream, in
// the stream's order. start is the cursor of the client's first ready:
// every entry after it must have been received. views are the entry IDs
// the client received, in order, split at each hello that did not resume:
// each is a fresh view that starts with a replay, so it may repeat entries
// of the previous one.
func checkViews(stream []chat.ID, start chat.ID, views [][]chat.ID) []violation {
	pos := make(map[chat.ID]int, len(stream))
	for i, id := range stream {
		pos[id] = i
	}
	var out []violation
	received := map[chat.ID]bool{}
	for _, view := range views {
		seen := map[chat.ID]bool{}
		last := -1
		for _, id := range view {
			received[id] = true
			p, ok := pos[id]
			switch {
			case !ok:
				out = append(out, violation{vVanished, id})
				continue
			case seen[id]:
				out = append(out, violation{vDuplicated, id})
				continue
			case p < last:
				out = append(out, violation{vReordered, id})
			}
			seen[id] = true
			last = max(last, p)
		}
	}
	for _, id := range stream {
		if start.Less(id) && !received[id] {
			out = append(out, violation{vLost, id})
		}
	}
	return out
}

func (v violation) String() string { return "{" + v.kind + " " + v.id.String() + "}" }
