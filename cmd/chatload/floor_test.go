package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The floor run writes real message frames and every byte reaches its
// reader; the figures it reports are positive.
func TestFloorDeliversEveryFrame(t *testing.T) {
	t.Parallel()
	for _, uring := range []bool{false, true} {
		f, err := measureFloor(context.Background(), floorConfig{Conns: 20, Fanout: 5, Rate: 2000, Duration: 300 * time.Millisecond, Size: 64, URing: uring})
		if err != nil {
			t.Fatalf("uring=%v: %v", uring, err)
		}
		if f.Deliveries < 100 || f.WriterMicros <= 0 || f.EntriesPerDelivery <= 0 {
			t.Fatalf("uring=%v: floor: %+v", uring, f)
		}
		if uring && f.EntriesPerDelivery > 0.5 {
			t.Fatalf("io_uring: %.2f kernel entries per delivery, want about 1/5", f.EntriesPerDelivery)
		}
	}
}

func TestFloorFrameIsAWebsocketTextFrame(t *testing.T) {
	t.Parallel()
	b := floorFrame(64)
	if b[0] != 0x81 || b[1] != 126 || int(b[2])<<8|int(b[3]) != len(b)-4 || !bytes.HasPrefix(b[4:], []byte(`{"type":"message"`)) {
		t.Fatalf("frame % x", b[:8])
	}
}

func TestFloorMainTable(t *testing.T) {
	t.Parallel()
	var out, errw strings.Builder
	if err := floorMain(context.Background(), []string{"-conns", "10", "-fanout", "5", "-rates", "1000", "-duration", "200ms", "-methods", "write,uring"}, &out, &errw); err != nil {
		t.Fatal(err, errw.String())
	}
	if !strings.Contains(out.String(), "writer CPU µs/delivery") || !strings.Contains(out.String(), "uring") {
		t.Fatalf("table:\n%s", out.String())
	}
}
