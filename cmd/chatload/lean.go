package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/coder/websocket"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/client"
)

// loadConn is one load client's connection, as the workload uses it.
type loadConn interface {
	// send posts text and waits for its acknowledgement.
	send(ctx context.Context, text string) (chat.ID, error)
	CloseNow()
}

// Receivers, by how much of the measuring machine they take:
//   - "poll" (the default): one event loop reads every connection
//     (poller.go), and one scheduler sends every publisher's messages
//     (schedule.go).
//   - "lean": a goroutine per connection reads each frame into a reused
//     buffer and finds the few fields it checks by scanning bytes.
//   - "client": a pkg/client connection decodes every frame into an Event,
//     as a real application would.
//
// All three check the same things; the cheaper the receiver, the more the
// servers rather than the load generator decide the figures.
const (
	receiverPoll   = "poll"
	receiverLean   = "lean"
	receiverClient = "client"
)

// dialer opens the connections of one run.
type dialer struct {
	kind   string
	poller *poller // for receiverPoll
}

func newDialer(kind string) (*dialer, error) {
	d := &dialer{kind: kind}
	switch kind {
	case receiverPoll, "":
		d.kind = receiverPoll
		p, err := newPoller()
		if err != nil {
			return nil, err
		}
		d.poller = p
	case receiverLean, receiverClient:
	default:
		return nil, fmt.Errorf("unknown receiver %q (want %s, %s or %s)", kind, receiverPoll, receiverLean, receiverClient)
	}
	return d, nil
}

// Close stops the event loop, if any, once every connection is closed.
func (d *dialer) Close() {
	if d.poller != nil {
		d.poller.Close()
	}
}

// dial connects one client; a publisher must be able to send.
func (d *dialer) dial(ctx context.Context, u string, hc *http.Client, nd *net.Dialer, publisher bool, rc *receiver) (loadConn, error) {
	switch {
	case d.kind == receiverClient:
		c, _, err := client.Dial(ctx, u, &client.Options{HTTPClient: hc, OnEvent: rc.onEvent})
		if err != nil {
			return nil, err
		}
		return fullConn{c}, nil
	case d.kind == receiverPoll:
		c, err := d.poller.dial(ctx, u, nd, rc)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return dialLean(ctx, u, hc, rc)
}

// fullConn is a pkg/client connection.
type fullConn struct{ *client.Conn }

func (f fullConn) send(ctx context.Context, text string) (chat.ID, error) {
	id, err := f.Send(ctx, text)
	if err != nil {
		return chat.ID{}, err
	}
	return chat.ParseID(id)
}

// leanConn is a websocket read by one goroutine that hands each frame's
// bytes to its receiver and matches acknowledgements to the one send in
// flight (a publisher sends one message at a time).
type leanConn struct {
	ws *websocket.Conn
	rc *receiver

	mu      sync.Mutex
	waiting []byte // nonce of the send in flight
	reply   chan ackResult
	next    uint64
}

type ackResult struct {
	id  chat.ID
	err error
}

var errNack = errors.New("send refused")

func dialLean(ctx context.Context, u string, hc *http.Client, rc *receiver) (*leanConn, error) {
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	c := &leanConn{ws: ws, rc: rc, reply: make(chan ackResult, 1)}
	go c.read()
	return c, nil
}

func (c *leanConn) read() {
	buf := make([]byte, 4096)
	for {
		_, r, err := c.ws.Reader(context.Background())
		if err != nil {
			c.fail(err)
			return
		}
		n := 0
		for {
			if n == len(buf) {
				buf = append(buf, make([]byte, len(buf))...)
			}
			m, err := r.Read(buf[n:])
			n += m
			if err == io.EOF {
				break
			}
			if err != nil {
				c.fail(err)
				return
			}
		}
		c.frame(buf[:n])
	}
}

// fail ends a send in flight when the connection goes.
func (c *leanConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting != nil {
		c.waiting = nil
		c.reply <- ackResult{err: err}
	}
}

func (c *leanConn) frame(b []byte) {
	typ := frameType(b)
	switch {
	case bytes.Equal(typ, typeMessage), bytes.Equal(typ, typeReady):
		c.rc.onFrame(typ, b)
	case bytes.Equal(typ, typeAck), bytes.Equal(typ, typeError):
		nonce := field(b, fieldNonce)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.waiting == nil || !bytes.Equal(nonce, c.waiting) {
			return
		}
		c.waiting = nil
		if bytes.Equal(typ, typeError) {
			c.reply <- ackResult{err: fmt.Errorf("%w: %s", errNack, b)}
			return
		}
		id, ok := parseIDBytes(field(b, fieldID))
		if !ok {
			c.reply <- ackResult{err: fmt.Errorf("ack without an id: %s", b)}
			return
		}
		c.reply <- ackResult{id: id}
	}
}

func (c *leanConn) send(ctx context.Context, text string) (chat.ID, error) {
	c.mu.Lock()
	c.next++
	n := c.next
	c.waiting = strconv.AppendUint([]byte("l"), n, 10)
	c.mu.Unlock()
	frame := appendMessage(make([]byte, 0, len(text)+64), text, 'l', n)
	if err := c.ws.Write(ctx, websocket.MessageText, frame); err != nil {
		c.fail(err)
		r := <-c.reply
		return r.id, r.err
	}
	select {
	case r := <-c.reply:
		return r.id, r.err
	case <-ctx.Done():
		c.fail(ctx.Err())
		r := <-c.reply // the ack, if it won the race
		return r.id, r.err
	}
}

func (c *leanConn) CloseNow() { _ = c.ws.CloseNow() }

var (
	typeMessage = []byte("message")
	typeReady   = []byte("ready")
	typeAck     = []byte("ack")
	typeError   = []byte("error")

	fieldType   = []byte(`"type":"`)
	fieldID     = []byte(`"id":"`)
	fieldText   = []byte(`"text":"`)
	fieldNonce  = []byte(`"nonce":"`)
	fieldCursor = []byte(`"cursor":"`)
	replayTrue  = []byte(`"replay":true`)
)

// appendMessage appends a message command with text and the nonce
// prefix+n. Load texts are digits, spaces and x: nothing to escape.
func appendMessage(dst []byte, text string, prefix byte, n uint64) []byte {
	dst = append(dst, `{"type":"message","text":"`...)
	dst = append(dst, text...)
	dst = append(dst, `","nonce":"`...)
	dst = append(dst, prefix)
	dst = strconv.AppendUint(dst, n, 10)
	return append(dst, `"}`...)
}

// frameType is the value of the frame's "type" member.
func frameType(b []byte) []byte { return field(b, fieldType) }

// field is the raw value of the first string member named by key (`"k":"`)
// up to its closing quote. Escapes are not decoded: the values read here
// (types, IDs, nonces, load texts) never have any.
func field(b, key []byte) []byte {
	i := bytes.Index(b, key)
	if i < 0 {
		return nil
	}
	v := b[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil
	}
	return v[:j]
}

// parseIDBytes is chat.ParseID without the string.
func parseIDBytes(b []byte) (chat.ID, bool) {
	ms, rest, ok := parseUint(b)
	if !ok {
		return chat.ID{}, false
	}
	if len(rest) == 0 {
		return chat.ID{Ms: ms}, true
	}
	if rest[0] != '-' {
		return chat.ID{}, false
	}
	seq, rest, ok := parseUint(rest[1:])
	if !ok || len(rest) != 0 {
		return chat.ID{}, false
	}
	return chat.ID{Ms: ms, Seq: seq}, true
}

// parseUint reads the decimal digits at the start of b.
func parseUint(b []byte) (v uint64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if i >= 19 {
			return 0, nil, false
		}
		v = v*10 + uint64(b[i]-'0')
	}
	return v, b[i:], i > 0
}

// parseTextBytes is parseText without strings: "pub seq unixnano ...".
func parseTextBytes(b []byte) (pub int, seq, sent int64, ok bool) {
	p, rest, ok1 := parseUint(b)
	if !ok1 || len(rest) == 0 || rest[0] != ' ' {
		return 0, 0, 0, false
	}
	s, rest, ok2 := parseUint(rest[1:])
	if !ok2 || len(rest) == 0 || rest[0] != ' ' {
		return 0, 0, 0, false
	}
	t, rest, ok3 := parseUint(rest[1:])
	if !ok3 || (len(rest) > 0 && rest[0] != ' ') {
		return 0, 0, 0, false
	}
	return int(p), int64(s), int64(t), true
}
