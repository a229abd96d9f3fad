package wsconn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The write side of a connection. coder/websocket does the handshake, reads
// the client's frames, answers its pings and runs the close handshake; the
// messages the server sends are framed here instead: a frame's header is
// written with its payload in one writev(2), so a payload encoded once per
// replica goes to every connection as it is, with no copy, and the room's
// tailer can write it without waiting on a socket (Conn.TryWrite): no
// goroutine and one system call per delivery, where coder/websocket's
// Write copies, takes two locks and flushes per message.

// maxIOV is the most buffers one writev(2) takes (IOV_MAX on Linux).
const maxIOV = 1024

// maxHeader is the longest header of an unmasked server frame.
const maxHeader = 10

// appendHeader appends the header of a final, unmasked text frame of n
// payload bytes: the only kind a server sends for a message (RFC 6455,
// section 5.2).
func appendHeader(dst []byte, n int) []byte {
	const finText = 0x81
	switch {
	case n < 126:
		return append(dst, finText, byte(n))
	case n <= math.MaxUint16:
		return append(dst, finText, 126, byte(n>>8), byte(n))
	}
	dst = append(dst, finText, 127)
	return binary.BigEndian.AppendUint64(dst, uint64(n))
}

// Buffer sizes of a connection. net/http hands a hijacker a 4 KiB reader
// and a fresh 4 KiB writer; chat frames are small, so a 256-byte reader
// saves 3.75 KiB on every idle connection (a frame's header and a short
// message fit; longer payloads, and a file's bytes, are read straight
// through into the reader's buffer). coder/websocket writes only control frames, at most 139 bytes
// each, through its writer.
const (
	readBuffer    = 256
	controlBuffer = 256
)

// wire is one connection's socket as the server writes to it. Every write
// holds mu, so frames never interleave: the server's own (write, and the
// tailer's tryWrite) and coder/websocket's control frames (controlConn).
type wire struct {
	conn net.Conn

	// fd is the socket's descriptor, for tryWrite's system call; -1 when
	// conn has none. tryWrite uses it without net's descriptor lock and
	// poller bookkeeping, which cost two cache misses per delivery; instead
	// fdMu keeps the descriptor from being closed (and reused by another
	// connection) during the call: every close goes through
	// controlConn.Close, which takes fdMu and sets fdClosed first.
	fd       int
	fdMu     sync.Mutex
	fdClosed bool

	mu sync.Mutex
	// rest is the unsent end of a frame tryWrite began, which goes out
	// first: what is left of its header (a copy, in restHead) and of its
	// payload (shared, never written to).
	rest     [2][]byte
	restHead [maxHeader]byte
	ctrl     frameTrack // a control frame coder/websocket is still writing

	// closing is set when the server starts closing the connection: no
	// message may follow the close frame.
	closing atomic.Bool
	// writeStart is when the waiting write in progress began (Unix ns), 0
	// when none is: the server's sweeper drops connections stuck in one.
	writeStart atomic.Int64
}

// attach makes conn, just hijacked, the wire's socket, and returns what
// coder/websocket is given in its place.
func (w *wire) attach(conn net.Conn) net.Conn {
	w.conn = conn
	w.fd = descriptor(conn)
	return controlConn{Conn: conn, w: w}
}

// smallBatch is how many frames tryWrite frames in pooled scratch: the
// usual batch of a room's tailer.
const smallBatch = 2

// scratch is what tryWrite needs to frame a small batch: headers, the
// header and payload buffers, and writev's iovec array.
type scratch struct {
	heads [smallBatch * maxHeader]byte
	bufs  [2 * smallBatch][]byte
	iov   iovecs
}

// scratchPool is process-wide on purpose: a cache with no state worth
// owning, whose per-processor objects stay hot in whichever goroutine is
// writing.
var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// frame appends to bufs the header and payload buffers of text frames
// holding payloads, for one writev, with the headers in heads. The caller
// passes scratch of its own (heads with room for maxHeader bytes a
// payload), so nothing of a write stays with the connection.
func frame(bufs [][]byte, heads []byte, payloads [][]byte) [][]byte {
	for _, p := range payloads {
		start := len(heads)
		heads = appendHeader(heads, len(p)) // within capacity: never moves
		bufs = append(bufs, heads[start:], p)
	}
	return bufs
}

// write sends payloads as text frames in order, waiting for the socket as
// long as it takes; the sweeper bounds the wait by closing the socket.
// With no payloads it sends what an earlier tryWrite left.
func (w *wire) write(payloads ...[]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing.Load() {
		return ErrClosing
	}
	w.writeStart.Store(time.Now().UnixNano())
	defer w.writeStart.Store(0)
	if err := w.flushRest(); err != nil {
		return err
	}
	if len(payloads) == 0 {
		return nil
	}
	// One writev(2) for the lot.
	b := net.Buffers(frame(make([][]byte, 0, 2*len(payloads)), make([]byte, 0, maxHeader*len(payloads)), payloads))
	_, err := b.WriteTo(w.conn)
	return err
}

// flushRest sends what tryWrite left. Called with mu held.
func (w *wire) flushRest() error {
	if w.rest[0] == nil && w.rest[1] == nil {
		return nil
	}
	b := net.Buffers{w.rest[0], w.rest[1]}
	w.rest = [2][]byte{}
	_, err := b.WriteTo(w.conn)
	return err
}

// tryLock takes the wire for tryWrite, unless that would mean waiting: for
// another write, for a half-sent frame, or on a connection without a
// descriptor. It fails too once the connection is closing.
func (w *wire) tryLock() bool {
	if w.fd < 0 || !w.mu.TryLock() {
		return false
	}
	if w.rest[0] != nil || w.rest[1] != nil || w.ctrl.inFrame() || w.closing.Load() {
		w.mu.Unlock()
		return false
	}
	return true
}

// tryWrite writes payloads as text frames with one non-blocking writev(2),
// with mu held (see tryLock), and returns how many it took: those that went
// out whole, plus one the socket took part of, whose rest is kept for the
// next write and sent before anything else. whole is false when the socket
// was full or failed before the last payload went out whole.
func (w *wire) tryWrite(payloads [][]byte) (taken int, whole bool, err error) {
	payloads = payloads[:min(len(payloads), maxIOV/2)]
	// The scratch comes from a per-processor pool rather than from each
	// connection: the same few, hot in cache, serve every delivery of the
	// room's tailer, and an idle connection holds none.
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	heads, bufs := sc.heads[:0], sc.bufs[:0]
	if len(payloads) > smallBatch {
		heads = make([]byte, 0, maxHeader*len(payloads))
		bufs = make([][]byte, 0, 2*len(payloads))
	}
	bufs = frame(bufs, heads, payloads)
	defer clear(bufs) // the pool holds no payload
	var n int
	w.fdMu.Lock()
	if w.fdClosed {
		w.fdMu.Unlock()
		return 0, false, net.ErrClosed
	}
	for {
		if n, err = writeNonblock(w.fd, bufs, &sc.iov); err != syscall.EINTR {
			break
		}
	}
	w.fdMu.Unlock()
	switch {
	case errors.Is(err, syscall.EAGAIN):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	}
	for i := 0; i < len(bufs); i += 2 {
		// The rest keeps a copy of the header, never the pooled one.
		head, body := bufs[i], payloads[i/2]
		if n >= len(head)+len(body) {
			n -= len(head) + len(body)
			continue
		}
		if n == 0 {
			return i / 2, false, nil // the socket is full
		}
		if n < len(head) {
			w.rest[0] = w.restHead[:copy(w.restHead[:], head[n:])]
			w.rest[1] = body
		} else {
			w.rest[1] = body[n-len(head):]
		}
		return i/2 + 1, false, nil
	}
	return len(payloads), true, nil
}

// controlConn is the socket as coder/websocket sees it: its writes (control
// frames) take the wire's lock from a frame's first byte to its last, and
// go after whatever tryWrite left.
type controlConn struct {
	net.Conn
	w *wire
}

// Close closes the socket once no tryWrite is using its descriptor.
func (c controlConn) Close() error {
	c.w.fdMu.Lock()
	c.w.fdClosed = true
	c.w.fdMu.Unlock()
	return c.Conn.Close()
}

func (c controlConn) Write(p []byte) (int, error) {
	w := c.w
	if !w.ctrl.inFrame() {
		w.mu.Lock()
		w.writeStart.Store(time.Now().UnixNano())
		if err := w.flushRest(); err != nil {
			w.writeStart.Store(0)
			w.mu.Unlock()
			return 0, err
		}
	}
	n, err := w.conn.Write(p)
	w.ctrl.feed(p[:n])
	if err != nil || !w.ctrl.inFrame() {
		w.ctrl = frameTrack{}
		w.writeStart.Store(0)
		w.mu.Unlock()
	}
	return n, err
}

// frameTrack follows websocket frame boundaries in bytes written in pieces.
type frameTrack struct {
	head    [14]byte // the header so far, while incomplete
	headLen int
	left    uint64 // payload bytes still to come
}

func (f *frameTrack) inFrame() bool { return f.headLen > 0 || f.left > 0 }

func (f *frameTrack) feed(p []byte) {
	for len(p) > 0 {
		if f.left > 0 {
			k := min(uint64(len(p)), f.left)
			f.left -= k
			p = p[k:]
			continue
		}
		f.head[f.headLen] = p[0]
		f.headLen++
		p = p[1:]
		if size, payload, ok := frameHeader(f.head[:f.headLen]); ok && size == f.headLen {
			f.headLen, f.left = 0, payload
		}
	}
}

// frameHeader reads a frame header's size and payload length from its first
// bytes; ok is false until enough of it is there to tell.
func frameHeader(h []byte) (size int, payload uint64, ok bool) {
	if len(h) < 2 {
		return 0, 0, false
	}
	size = 2
	if h[1]&0x80 != 0 {
		size += 4 // masking key
	}
	switch l := h[1] & 0x7f; l {
	case 126:
		size += 2
		if len(h) < 4 {
			return 0, 0, false
		}
		payload = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		size += 8
		if len(h) < 10 {
			return 0, 0, false
		}
		payload = binary.BigEndian.Uint64(h[2:10])
	default:
		payload = uint64(l)
	}
	return size, payload, len(h) >= size
}

// hijacker makes Hijack hand coder/websocket the wire's controlConn, a
// smaller reader and a writer sized for control frames, for the life of
// the connection.
type hijacker struct {
	http.ResponseWriter
	w *wire
}

func (h hijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	cc := h.w.attach(conn)
	var src io.Reader = cc
	pending := brw.Reader.Buffered()
	if pending > readBuffer {
		// The client sent ahead; keep the reader that holds it.
		return cc, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(cc, controlBuffer)), nil
	}
	if pending > 0 {
		head, _ := brw.Reader.Peek(pending)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(head)), cc)
	}
	r := bufio.NewReaderSize(src, readBuffer)
	if pending > 0 {
		// Pull the bytes already read into the new buffer, where the
		// websocket library looks for them.
		if _, err := r.Peek(pending); err != nil {
			return cc, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(cc, controlBuffer)), nil
		}
	}
	return cc, bufio.NewReadWriter(r, bufio.NewWriterSize(cc, controlBuffer)), nil
}
