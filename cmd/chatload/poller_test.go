package main

import (
	"bytes"
	"syscall"
	"testing"

	"github.com/streamchat/streamchat/pkg/chat"
)

func serverFrame(op byte, payload []byte) []byte {
	f := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		f = append(f, byte(n))
	case n < 1<<16:
		f = append(f, 126, byte(n>>8), byte(n))
	default:
		f = append(f, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(f, payload...)
}

// Frames split anywhere across reads, in all three length forms, arrive
// whole and once; a ping is answered with a masked pong of its payload; a
// close frame ends the connection.
func TestPollerFrames(t *testing.T) {
	t.Parallel()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	r := &room{latency: newHistogram()}
	rc := &receiver{room: r, lastSeq: []int64{-1}}
	c := &pollConn{fd: fds[0], rc: rc}

	var stream []byte
	stream = append(stream, serverFrame(0x1, chat.EncodeReady(chat.ID{Ms: 1}, nil, nil))...)
	for i := range 3 {
		text := messageText(0, int64(i), []int{40, 200, 70000}[i]) // 7-bit, 16-bit and 64-bit lengths
		stream = append(stream, serverFrame(0x1, chat.EncodeEvent(chat.Event{Kind: chat.KindMessage, ID: chat.ID{Ms: uint64(2 + i)}, Room: "r", From: "a", Text: text}, false))...)
	}
	stream = append(stream, serverFrame(0x9, []byte("ping!"))...)
	for _, step := range []int{1, 3, 7, 500, 4096} {
		*rc = receiver{room: r, lastSeq: []int64{-1}}
		c.buf = nil
		ok := true
		for i := 0; i < len(stream) && ok; i += step {
			c.buf = append(c.buf, stream[i:min(i+step, len(stream))]...)
			ok = c.parse()
		}
		if !ok || rc.delivered != 3 || rc.dups+rc.ooo+rc.gaps != 0 || len(c.buf) != 0 {
			t.Fatalf("step %d: ok=%v delivered=%d left=%d", step, ok, rc.delivered, len(c.buf))
		}
		pong := make([]byte, 64)
		n, err := syscall.Read(fds[1], pong)
		if err != nil || !bytes.Equal(pong[:n], []byte{0x8A, 0x85, 0, 0, 0, 0, 'p', 'i', 'n', 'g', '!'}) {
			t.Fatalf("step %d: pong % x, %v", step, pong[:max(n, 0)], err)
		}
	}
	c.buf = append(c.buf[:0], serverFrame(0x8, []byte{3, 232})...)
	if c.parse() {
		t.Fatal("a close frame did not end the connection")
	}
	c.buf = append(c.buf[:0], 0x01, 5, 'h', 'e', 'l', 'l', 'o') // not final: a fragment
	if c.parse() {
		t.Fatal("a fragmented message was accepted")
	}
}
