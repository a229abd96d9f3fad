package wsconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// textFrame is a whole text frame holding payload, as the peer reads it.
func textFrame(payload []byte) []byte {
	return append(appendHeader(nil, len(payload)), payload...)
}

func TestAppendHeader(t *testing.T) {
	for _, tc := range []struct {
		n    int
		head []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		payload := bytes.Repeat([]byte("x"), tc.n)
		f := textFrame(payload)
		if !bytes.Equal(f[:len(tc.head)], tc.head) || !bytes.Equal(f[len(tc.head):], payload) {
			t.Fatalf("%d bytes: header % x", tc.n, f[:min(len(f), 10)])
		}
		size, n, ok := frameHeader(f)
		if !ok || size != len(tc.head) || n != uint64(tc.n) {
			t.Fatalf("%d bytes: frameHeader = %d, %d, %v", tc.n, size, n, ok)
		}
	}
}

// frameTrack finds the end of every frame however the bytes are split,
// masked (client) frames included.
func TestFrameTrack(t *testing.T) {
	var stream []byte
	var ends []int
	for _, n := range []int{0, 5, 125, 126, 300, 70000} {
		stream = append(stream, textFrame(bytes.Repeat([]byte("a"), n))...)
		ends = append(ends, len(stream))
		masked := []byte{0x89, 0x80 | byte(min(n, 125)), 1, 2, 3, 4}
		stream = append(append(stream, masked...), bytes.Repeat([]byte("b"), min(n, 125))...)
		ends = append(ends, len(stream))
	}
	for _, step := range []int{1, 2, 3, 7, 64, 1000} {
		var f frameTrack
		var got []int
		for i := 0; i < len(stream); i += step {
			f.feed(stream[i:min(i+step, len(stream))])
			if !f.inFrame() {
				got = append(got, min(i+step, len(stream)))
			}
		}
		// Every boundary seen at the end of a piece is a frame end.
		for _, g := range got {
			found := false
			for _, e := range ends {
				found = found || e == g
			}
			if !found {
				t.Fatalf("step %d: out of frame at %d, not a frame end", step, g)
			}
		}
		if step == 1 && len(got) != len(ends) {
			t.Fatalf("byte by byte: %d frame ends, want %d", len(got), len(ends))
		}
	}
}

// socketPair returns both ends of a real loopback TCP connection.
func socketPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		server.Close()
		client.Close()
	})
	return server, client
}

// readFrames parses n whole frames from r and returns their payloads.
func readFrames(t *testing.T, r io.Reader, n int) []string {
	t.Helper()
	br := bufio.NewReader(r)
	var out []string
	for range n {
		head := make([]byte, 2, 14)
		if _, err := io.ReadFull(br, head); err != nil {
			t.Fatalf("after %d frames: %v", len(out), err)
		}
		size, _, ok := frameHeader(head)
		for !ok || len(head) < size {
			b, err := br.ReadByte()
			if err != nil {
				t.Fatal(err)
			}
			head = append(head, b)
			size, _, ok = frameHeader(head)
		}
		_, payload, _ := frameHeader(head)
		body := make([]byte, payload)
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(body))
	}
	return out
}

// When the socket is full, tryWrite sends what fits and keeps the rest,
// which the next write sends first: the peer reads every frame whole, in
// order, whether the socket stopped in a frame's payload or its header.
func TestTryWriteKeepsTheRestOfAFrame(t *testing.T) {
	for _, batch := range []int{1, 3} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) { testTryWrite(t, batch) })
	}
}

func testTryWrite(t *testing.T, batch int) {
	server, client := socketPair(t)
	// A small send buffer and a last frame far larger than it and the
	// peer's receive window, so the write cannot take all of it.
	if err := server.(*net.TCPConn).SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	w := &wire{}
	w.attach(server)
	if w.fd < 0 {
		t.Fatal("a TCP connection has no descriptor")
	}
	var want []string
	var payloads [][]byte
	for i := range batch {
		p := fmt.Sprint("small", i)
		if i == batch-1 {
			p = "big" + string(bytes.Repeat([]byte("p"), 1<<20))
		}
		want = append(want, p)
		payloads = append(payloads, []byte(p))
	}
	if !w.tryLock() {
		t.Fatal("wire busy with nothing in flight")
	}
	taken, whole, err := w.tryWrite(payloads)
	if err != nil {
		t.Fatal(err)
	}
	partial := w.rest[1] != nil
	w.mu.Unlock()
	if taken != batch || whole || !partial {
		t.Fatalf("tryWrite took %d of %d (whole %v), rest kept: %v; want all, the big frame's rest kept", taken, batch, whole, partial)
	}
	if w.tryLock() {
		t.Fatal("tryLock succeeded with the rest of a frame pending")
	}
	_ = server.(*net.TCPConn).SetWriteBuffer(4 << 20) // room again: the rest goes quickly
	want = append(want, "last")
	errc := make(chan error, 1)
	go func() { errc <- w.write([]byte("last")) }()
	got := readFrames(t, client, len(want))
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("frame %d: got %.10q…, want %.10q…", i, got[i], want[i])
		}
	}
}

// coder/websocket's control frames, even written in pieces, never
// interleave with the server's own frames.
func TestControlFramesStayWhole(t *testing.T) {
	server, client := socketPair(t)
	w := &wire{}
	cc := w.attach(server)
	ping := append([]byte{0x89, 4}, "ping"...)
	const rounds = 200
	var wg sync.WaitGroup
	wg.Go(func() {
		for range rounds {
			if _, err := cc.Write(ping[:1]); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(10 * time.Microsecond) // another write would slip in here
			if _, err := cc.Write(ping[1:]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Go(func() {
		for i := range rounds {
			if err := w.write([]byte(fmt.Sprint("data", i))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	got := readFrames(t, client, 2*rounds)
	wg.Wait()
	pings, data := 0, 0
	for _, p := range got {
		switch {
		case p == "ping":
			pings++
		case p == fmt.Sprint("data", data):
			data++
		default:
			t.Fatalf("frame %q after %d pings and %d data frames", p, pings, data)
		}
	}
}

// Once the socket is closed, tryWrite never touches its descriptor, which
// the system may already have given to another connection.
func TestTryWriteAfterClose(t *testing.T) {
	server, _ := socketPair(t)
	w := &wire{}
	cc := w.attach(server)
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	// A new socket likely gets the descriptor's number.
	_, peer := socketPair(t)
	if !w.tryLock() {
		t.Fatal("tryLock failed")
	}
	taken, _, err := w.tryWrite([][]byte{[]byte("stray")})
	w.mu.Unlock()
	if taken != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("tryWrite after Close = %d, %v; want 0, net.ErrClosed", taken, err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := peer.Read(make([]byte, 16)); n != 0 {
		t.Fatalf("another connection received %d bytes", n)
	}
}

// A frame the socket stops inside its header is finished from the kept
// copy of the header, then its payload: both pieces of the rest.
func TestRestWithinTheHeader(t *testing.T) {
	w := &wire{}
	payload := bytes.Repeat([]byte("h"), 70000) // a 10-byte header
	head := appendHeader(nil, len(payload))
	// What tryWrite keeps when the socket took 3 bytes of the header.
	w.rest[0] = w.restHead[:copy(w.restHead[:], head[3:])]
	w.rest[1] = payload
	server, client := socketPair(t)
	w.attach(server)
	if _, err := server.Write(head[:3]); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- w.write([]byte("next")) }()
	got := readFrames(t, client, 2)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got[0] != string(payload) || got[1] != "next" {
		t.Fatalf("got %.10q…, %q", got[0], got[1])
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
