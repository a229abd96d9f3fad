package store

import (
	"context"
	"strings"
	"testing"

	"github.com/streamchat/streamchat/pkg/chat"
)

// A file entry costs the read and the encoding of the fan-out what a
// message of the same size does: its attributes are one stream field,
// spliced into the frame as stored. Allocation counts are exact, so this
// compares them entry for entry over a batch as the tailer reads it.
func TestFileEntryCostsWhatAMessageDoes(t *testing.T) {
	s, _ := newStore(t, 2000)
	ctx := context.Background()
	attrs, cerr := chat.NewAttrs(map[string]string{
		"name": "holiday-photo.png", "mime": "image/png", "size": "1843200", "width": "1600", "height": "1200",
		"url": "/files/f/q3Jx0Vd9Ew2c5Lh1Zr8sYA",
	})
	if cerr != nil {
		t.Fatal(cerr)
	}
	const n = 100
	kinds := map[string]chat.Event{
		"file":    {Room: "f", Kind: chat.KindFile, From: "ann", Attrs: attrs},
		"message": {Room: "m", Kind: chat.KindMessage, From: "ann", Text: strings.Repeat("x", len(attrs))},
	}
	cost := map[string]float64{}
	for name, e := range kinds {
		for range n {
			if _, err := s.Append(ctx, e, ""); err != nil {
				t.Fatal(err)
			}
		}
		cost[name] = testing.AllocsPerRun(20, func() {
			events, err := s.Read(ctx, e.Room, chat.ID{}, n, 0)
			if err != nil || len(events) != n {
				t.Fatalf("read %d, %v", len(events), err)
			}
			for _, ev := range events {
				_ = chat.EncodeEvent(ev, false)
			}
		}) / n
	}
	t.Logf("allocations per entry read and encoded: file %.2f, message %.2f", cost["file"], cost["message"])
	if cost["file"] > cost["message"] {
		t.Fatalf("a file entry allocates %.2f per entry, a message of its size %.2f", cost["file"], cost["message"])
	}
}
