// Package client is a Go client of the streamchat websocket protocol.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/coder/websocket"
)

// Event is any server frame. Which fields are set depends on Type: see
// docs/protocol.md.
type Event struct {
	Type string `json:"type"`

	// Stream entries: message, join, leave.
	ID     string `json:"id,omitempty"`
	Room   string `json:"room,omitempty"`
	From   string `json:"from,omitempty"`
	TS     string `json:"ts,omitempty"`
	Text   string `json:"text,omitempty"`
	Nonce  string `json:"nonce,omitempty"`
	Replay bool   `json:"replay,omitempty"`

	// hello
	You     string  `json:"you,omitempty"`
	Replica string  `json:"replica,omitempty"`
	Resumed bool    `json:"resumed,omitempty"`
	Limits  *Limits `json:"limits,omitempty"`

	// ready
	Cursor string   `json:"cursor,omitempty"`
	Online []string `json:"online,omitempty"`

	// error
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Limits are the server's per-connection limits, from hello.
type Limits struct {
	MaxText  int     `json:"max_text"`
	MaxFrame int     `json:"max_frame"`
	Rate     float64 `json:"rate"`
	Burst    int     `json:"burst"`
}

// IsEntry reports whether the event is a stream entry (it has an ID).
func (e Event) IsEntry() bool { return e.ID != "" }

// ServerError is an error event the server sent in reply to a Send.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string { return "server: " + e.Code + ": " + e.Message }

// Options tune Dial. The zero value is usable.
type Options struct {
	// Header is sent with the handshake (Origin, Cookie, ...).
	Header http.Header
	// Buffer is the capacity of the Events channel. Default 1024. When it
	// is full the client stops reading, and the server sees a slow client.
	Buffer int
}

// Conn is one websocket connection to a gateway.
type Conn struct {
	ws     *websocket.Conn
	events chan Event
	done   chan struct{}

	mu      sync.Mutex
	pending map[string]chan Event
	err     error
}

// Dial connects to a gateway's /ws URL (with its room, name and since
// query parameters) and starts reading events.
func Dial(ctx context.Context, url string, opts *Options) (*Conn, *http.Response, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: o.Header})
	if err != nil {
		return nil, resp, fmt.Errorf("dial %s: %w", url, err)
	}
	ws.SetReadLimit(1 << 20)
	c := &Conn{
		ws:      ws,
		events:  make(chan Event, o.Buffer),
		done:    make(chan struct{}),
		pending: make(map[string]chan Event),
	}
	go c.readLoop()
	return c, resp, nil
}

// Events delivers every server frame in order, acks and errors included.
// It is closed when the connection ends; Err then tells why.
func (c *Conn) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended (nil while it is open). Use
// websocket.CloseStatus on it to read the server's close code.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) readLoop() {
	defer close(c.done)
	defer close(c.events)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		var ev Event
		if err := json.Unmarshal(data, &ev); err != nil {
			c.mu.Lock()
			c.err = fmt.Errorf("bad frame %q: %w", data, err)
			c.mu.Unlock()
			_ = c.ws.Close(websocket.StatusProtocolError, "bad frame")
			return
		}
		if (ev.Type == "ack" || ev.Type == "error") && ev.Nonce != "" {
			c.mu.Lock()
			if ch, ok := c.pending[ev.Nonce]; ok {
				ch <- ev
				delete(c.pending, ev.Nonce)
			}
			c.mu.Unlock()
		}
		c.events <- ev
	}
}

// Send posts text and waits until the server has stored it, returning the
// stream ID. A rejection is a *ServerError.
func (c *Conn) Send(ctx context.Context, text string) (string, error) {
	nonce := newNonce()
	ch := make(chan Event, 1)
	c.mu.Lock()
	c.pending[nonce] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, nonce)
		c.mu.Unlock()
	}()
	frame, _ := json.Marshal(map[string]string{"type": "message", "text": text, "nonce": nonce})
	if err := c.ws.Write(ctx, websocket.MessageText, frame); err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	select {
	case ev := <-ch:
		if ev.Type == "error" {
			return "", &ServerError{Code: ev.Code, Message: ev.Message}
		}
		return ev.ID, nil
	case <-c.done:
		return "", fmt.Errorf("send: connection ended: %w", c.Err())
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// SendRaw writes one frame as is.
func (c *Conn) SendRaw(ctx context.Context, typ websocket.MessageType, data []byte) error {
	return c.ws.Write(ctx, typ, data)
}

// Close closes the connection normally (1000) and waits for the reader.
func (c *Conn) Close() error {
	select {
	case <-c.done:
		return nil // already ended; Err tells why
	default:
	}
	err := c.ws.Close(websocket.StatusNormalClosure, "")
	<-c.done
	return err
}

// CloseNow drops the connection without a close handshake, as a network
// failure would.
func (c *Conn) CloseNow() {
	_ = c.ws.CloseNow()
	<-c.done
}

func newNonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
