package wsconn

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/streamchat/streamchat/pkg/chat"
)

// BenchmarkWrite compares the two ways of sending one room entry to 1,000
// real websocket connections over loopback, each drained by a peer that
// discards what it reads: coder/websocket's Write of the JSON, and
// TryWrite of the payload encoded once, its header beside it in one
// writev (what the room's tailer does). ns/delivery is per connection per
// entry, system calls included.
func BenchmarkWrite(b *testing.B) {
	const conns = 1000
	accepted := make(chan *Conn, conns)
	ts := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, err := Accept(rw, r, Options{PingInterval: time.Hour})
		if err != nil {
			b.Error(err)
			return
		}
		accepted <- c
	}))
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	servers := make([]*Conn, conns)
	for i := range servers {
		// A peer that reads and discards, so the figures are the server's.
		c, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", ts.Listener.Addr())
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			b.Fatalf("upgrade: %v %v", resp, err)
		}
		go func() { _, _ = io.Copy(io.Discard, c) }()
		servers[i] = <-accepted
		defer servers[i].Drop()
	}
	payload := chat.EncodeEvent(chat.Event{Room: "r", Kind: chat.KindMessage, From: "ann",
		Text: strings.Repeat("x", 64)}, false)

	b.Run("coder-websocket", func(b *testing.B) {
		for b.Loop() {
			for _, s := range servers {
				if err := s.ws.Write(ctx, websocket.MessageText, payload); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conns), "ns/delivery")
	})
	b.Run("encoded-once", func(b *testing.B) {
		payloads := [][]byte{payload}
		for b.Loop() {
			for _, s := range servers {
				if taken, whole := s.TryWrite(payloads); !whole {
					// Socket full: what the catch-up does (with none,
					// Write sends the rest of the frame begun).
					if err := s.Write(payloads[taken:]...); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conns), "ns/delivery")
	})
	// The same delivery with the frame built beforehand, header and payload
	// in one buffer and one write(2): what framing in the hub would buy.
	b.Run("preframed", func(b *testing.B) {
		frame := append(appendHeader(nil, len(payload)), payload...)
		bufs := [][]byte{frame}
		for b.Loop() {
			for _, s := range servers {
				w := &s.w
				n := 0
				if w.tryLock() {
					n, _ = writeNonblock(w.fd, bufs, new(iovecs))
					w.mu.Unlock()
				}
				if n != len(frame) {
					b.Fatalf("socket full after %d bytes; the peer reads too slowly for this comparison", n)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conns), "ns/delivery")
	})
}
