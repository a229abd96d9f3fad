// Package client is a Go client of the streamchat websocket protocol.
//
// A Conn delivers every server frame in order. With Options.Reconnect it
// survives drops, replica restarts and deploys: it reconnects with
// exponential backoff and jitter and resumes with since = the last entry it
// delivered, dropping anything at or before it, so the caller sees each
// stream entry at most once and, while the stream still holds them, exactly
// once. When the server cannot resume (a hello with Resumed false: the
// client fell too far behind, or Redis lost entries it had seen), the view
// starts over: the replay that follows is delivered in full, each entry
// marked Replay, and the caller should rebuild what it shows from it.
//
// Every Conn has a client key (Options.ClientKey, or a random one), sent at
// each handshake, which scopes the nonces of its messages on the server. A
// Send cut off by a drop is written again, with the same nonce, once the
// connection is back; the server stores it once and acknowledges both with
// the same ID.
package client

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/streamchat/streamchat/pkg/chat"
)

// Event is any server frame. Which fields are set depends on Type: see
// docs/protocol.md.
type Event struct {
	Type string `json:"type"`

	// Stream entries: message, join, leave.
	ID     string `json:"id,omitempty"`
	Room   string `json:"room,omitempty"`
	From   string `json:"from,omitempty"`
	UID    string `json:"uid,omitempty"` // the signed-in sender
	Bot    bool   `json:"bot,omitempty"` // posted through the publish API
	TS     string `json:"ts,omitempty"`
	Text   string `json:"text,omitempty"`
	Nonce  string `json:"nonce,omitempty"`
	Replay bool   `json:"replay,omitempty"`

	// ack: the nonce had been stored before; ID is the first entry's.
	Duplicate bool `json:"duplicate,omitempty"`

	// file entries (attributes are strings on the wire)
	Name   string `json:"name,omitempty"`
	Mime   string `json:"mime,omitempty"`
	Size   string `json:"size,omitempty"`
	URL    string `json:"url,omitempty"`
	Width  string `json:"width,omitempty"`
	Height string `json:"height,omitempty"`

	// edit, delete, react entries: the message they change (ref); react:
	// the emoji, whether it was turned on ("true"/"false") and its count
	// after the change
	Ref   string `json:"ref,omitempty"`
	Emoji string `json:"emoji,omitempty"`
	On    string `json:"on,omitempty"`
	Count string `json:"count,omitempty"`

	// a replayed or history message's current state
	EditedAt  string     `json:"edited_at,omitempty"`
	Deleted   bool       `json:"deleted,omitempty"`
	Reactions []Reaction `json:"reactions,omitempty"`

	// history: entries before the one asked for, oldest first
	Entries []Event `json:"entries,omitempty"`
	More    bool    `json:"more,omitempty"`

	// hello (UID too: the signed-in user)
	With    string  `json:"with,omitempty"` // a direct-message room's other user
	You     string  `json:"you,omitempty"`
	Replica string  `json:"replica,omitempty"`
	Resumed bool    `json:"resumed,omitempty"`
	Limits  *Limits `json:"limits,omitempty"`

	// ready
	Cursor string   `json:"cursor,omitempty"`
	Online []string `json:"online,omitempty"`
	Users  []User   `json:"users,omitempty"`
	Read   string   `json:"read,omitempty"` // the signed-in user's read marker

	// error
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Reaction is one emoji on a replayed message.
type Reaction struct {
	Emoji string `json:"emoji"`
	Count int    `json:"count"`
	Me    bool   `json:"me,omitempty"`
}

// User is a signed-in user online, from ready.
type User struct {
	UID  string `json:"uid"`
	Name string `json:"name"`
}

// Limits are the server's per-connection limits, from hello.
type Limits struct {
	MaxText  int     `json:"max_text"`
	MaxFrame int     `json:"max_frame"`
	Rate     float64 `json:"rate"`
	Burst    int     `json:"burst"`
}

// IsEntry reports whether the event is a stream entry. An ack carries the
// stored message's id too, but it is not the entry.
func (e Event) IsEntry() bool { return e.ID != "" && e.Type != "ack" }

// ServerError is an error event the server sent in reply to a Send.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string { return "server: " + e.Code + ": " + e.Message }

// ErrDisconnected is returned by Send, without Options.Reconnect, when the
// connection dropped before the server acknowledged the message; it may or
// may not have been stored (the stream will tell).
var ErrDisconnected = errors.New("disconnected before the ack")

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("connection closed")

// Options tune Dial. The zero value is usable.
type Options struct {
	// Header is sent with every handshake (Origin, Cookie, ...).
	Header http.Header
	// HTTPClient makes the handshakes, for example one bound to a source
	// address. Default: http.DefaultClient.
	HTTPClient *http.Client
	// OnEvent, when set, receives every frame on the reader goroutine
	// instead of the Events channel. It must not block for long: while it
	// runs nothing is read, and the server sees a slow client.
	OnEvent func(Event)
	// Buffer is the capacity of the Events channel. Default 1024. When it
	// is full the client stops reading, and the server sees a slow client.
	Buffer int
	// Reconnect makes the connection reconnect after any loss except a
	// refused handshake (close 1008) or Close, resuming with since.
	Reconnect bool
	// MinBackoff and MaxBackoff bound the delay between reconnect attempts,
	// which doubles from MinBackoff with full jitter. Defaults 250ms, 30s.
	MinBackoff, MaxBackoff time.Duration
	// Token, when set, is called before every handshake for the token to
	// sign in with (sent as Authorization: Bearer). When the server ends
	// the connection because the token expired (close 1008, reason
	// token_expired), a Reconnect connection calls it again and resumes
	// with since, losing nothing.
	Token func(ctx context.Context) (string, error)
	// ClientKey names this client to the server across reconnects (16–64
	// characters of [A-Za-z0-9_-]); the server stores a nonce once per
	// client key. Default: a random key per Dial. Keep one across process
	// restarts to have resends after a restart deduplicated too.
	ClientKey string
}

// Conn is a connection to a gateway's room.
type Conn struct {
	base   *url.URL
	key    string
	opts   Options
	events chan Event
	done   chan struct{}
	stop   chan struct{} // closed by Close

	mu      sync.Mutex
	ws      *websocket.Conn // nil while reconnecting
	ready   chan struct{}   // closed once the current connection is ready
	pending map[string]chan Event
	last    chat.ID // newest entry delivered
	hasLast bool
	err     error
	closed  bool
}

// Dial connects to a gateway's /ws URL (with its room, name and, to resume,
// since query parameters) and starts reading. The first handshake happens
// before Dial returns; its HTTP response is returned for inspection.
func Dial(ctx context.Context, rawURL string, opts *Options) (*Conn, *http.Response, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	base, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	q := base.Query()
	switch {
	case q.Get("client") != "":
		o.ClientKey = q.Get("client")
	case o.ClientKey == "":
		o.ClientKey = newKey()
	}
	q.Set("client", o.ClientKey)
	base.RawQuery = q.Encode()
	c := &Conn{
		base:    base,
		key:     o.ClientKey,
		opts:    o,
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
		ready:   make(chan struct{}),
		pending: make(map[string]chan Event),
	}
	if since := base.Query().Get("since"); since != "" {
		if id, err := chat.ParseID(since); err == nil {
			c.last, c.hasLast = id, true
		}
	}
	if o.OnEvent == nil {
		c.events = make(chan Event, o.Buffer)
	}
	ws, resp, err := c.dial(ctx)
	if err != nil {
		return nil, resp, err
	}
	c.ws = ws
	go c.run(ws)
	return c, resp, nil
}

func (c *Conn) dial(ctx context.Context) (*websocket.Conn, *http.Response, error) {
	u := *c.base
	c.mu.Lock()
	if c.hasLast {
		q := u.Query()
		q.Set("since", c.last.String())
		u.RawQuery = q.Encode()
	}
	c.mu.Unlock()
	header := c.opts.Header
	if c.opts.Token != nil {
		t, err := c.opts.Token(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("dial %s: token: %w", u.Redacted(), err)
		}
		header = header.Clone()
		if header == nil {
			header = http.Header{}
		}
		header.Set("Authorization", "Bearer "+t)
	}
	ws, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPHeader: header, HTTPClient: c.opts.HTTPClient})
	if err != nil {
		return nil, resp, fmt.Errorf("dial %s: %w", u.Redacted(), err)
	}
	ws.SetReadLimit(1 << 20)
	return ws, resp, nil
}

// Events delivers every server frame in order, acks and errors included,
// unless Options.OnEvent is set. It is closed when the connection ends for
// good; Err then tells why.
func (c *Conn) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended for good.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended (nil while it is open). Use
// websocket.CloseStatus on it to read the server's close code.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// ClientKey is the key this connection sends at every handshake.
func (c *Conn) ClientKey() string { return c.key }

// LastID is the id of the newest stream entry delivered (or the ready
// cursor before any), the point a reconnect resumes from.
func (c *Conn) LastID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.hasLast {
		return ""
	}
	return c.last.String()
}

// run owns the reader and, with Reconnect, the reconnect loop.
func (c *Conn) run(ws *websocket.Conn) {
	defer close(c.done)
	if c.events != nil {
		defer close(c.events)
	}
	attempt := 0
	for {
		err := c.readLoop(ws)
		c.lost(ws)
		c.mu.Lock()
		stopped := c.closed
		c.mu.Unlock()
		if stopped || !c.opts.Reconnect || (websocket.CloseStatus(err) == websocket.StatusPolicyViolation && !tokenExpired(err, c.opts.Token)) {
			c.finish(err)
			return
		}
		for {
			if !c.sleep(backoff(c.opts.MinBackoff, c.opts.MaxBackoff, attempt)) {
				c.finish(err)
				return
			}
			attempt++
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			next, _, derr := c.dial(ctx)
			cancel()
			if derr == nil {
				ws = next
				break
			}
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			_ = ws.CloseNow()
			c.finish(ErrClosed)
			return
		}
		c.ws = ws
		c.mu.Unlock()
		attempt = 0
	}
}

// tokenExpired reports whether the server closed for an expired token that
// a fresh one from tok can replace.
func tokenExpired(err error, tok func(context.Context) (string, error)) bool {
	var ce websocket.CloseError
	return tok != nil && errors.As(err, &ce) && ce.Reason == string(chat.CodeTokenExpired)
}

func (c *Conn) finish(err error) {
	c.mu.Lock()
	c.err = err
	c.closed = true
	c.mu.Unlock()
}

// sleep waits d unless Close is called first.
func (c *Conn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.stop:
		return false
	}
}

// backoff is full jitter over an exponentially growing cap.
func backoff(lo, hi time.Duration, attempt int) time.Duration {
	d := lo << min(attempt, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return d/2 + rand.N(d/2+1)
}

func (c *Conn) readLoop(ws *websocket.Conn) error {
	for {
		_, data, err := ws.Read(context.Background())
		if err != nil {
			return err
		}
		var ev Event
		if err := json.Unmarshal(data, &ev); err != nil {
			_ = ws.Close(websocket.StatusProtocolError, "bad frame")
			return fmt.Errorf("bad frame %q: %w", data, err)
		}
		if !c.accept(ws, ev) {
			continue
		}
		if c.opts.OnEvent != nil {
			c.opts.OnEvent(ev)
		} else {
			c.events <- ev
		}
	}
}

// accept updates the connection's state for ev, read from ws, and reports
// whether to deliver it: entries at or before the last one delivered are
// dropped, and so is whatever a connection already marked lost still had
// buffered (a reconnect resumes after the last delivered entry).
func (c *Conn) accept(ws *websocket.Conn, ev Event) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ws != ws {
		return false
	}
	switch {
	case ev.IsEntry():
		id, err := chat.ParseID(ev.ID)
		if err != nil {
			return true
		}
		if c.hasLast && !c.last.Less(id) {
			return false // already delivered before a reconnect
		}
		c.last, c.hasLast = id, true
	case ev.Type == "hello" && !ev.Resumed:
		// A fresh view: deliver the whole replay, even entries at or
		// before the last one delivered.
		c.hasLast = false
	case ev.Type == "ready":
		if !c.hasLast {
			if id, err := chat.ParseID(ev.Cursor); err == nil {
				c.last, c.hasLast = id, true
			}
		}
		close(c.ready)
	case (ev.Type == "ack" || ev.Type == "error") && ev.Nonce != "":
		if ch, ok := c.pending[ev.Nonce]; ok {
			ch <- ev
			delete(c.pending, ev.Nonce)
		}
	}
	return true
}

// Send posts text and waits until the server has stored it, returning the
// stream ID. A rejection is a *ServerError. While reconnecting, Send waits
// for the connection to be ready again (or ctx); with Options.Reconnect a
// drop before the ack makes it send again, with the same nonce, once the
// next connection is ready, and the server stores the message once;
// without, the drop is ErrDisconnected.
func (c *Conn) Send(ctx context.Context, text string) (string, error) {
	ack, err := c.SendNonce(ctx, NewNonce(), text)
	return ack.ID, err
}

// Ack is the outcome of a SendNonce.
type Ack struct {
	ID string // the stored entry's stream ID
	// Duplicate: the server had stored this nonce before (an earlier
	// attempt whose ack was lost); ID is that entry's.
	Duplicate bool
	// Resent counts the times the message was written again after a drop.
	Resent int
}

// SendNonce is Send with the caller's nonce, for a caller that retries
// itself: sending the same nonce again, on any connection with the same
// client key, within the server's dedupe window, stores nothing new and
// acknowledges the first entry's ID. A *ServerError with code
// "unavailable" is worth retrying with the same nonce.
func (c *Conn) SendNonce(ctx context.Context, nonce, text string) (Ack, error) {
	frame, _ := json.Marshal(map[string]string{"type": "message", "text": text, "nonce": nonce})
	var ack Ack
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			ack.Resent++
		}
		ev, err := c.exchange(ctx, nonce, frame)
		switch {
		case errors.Is(err, ErrDisconnected) && c.opts.Reconnect:
			continue // written again once the next connection is ready
		case err != nil:
			return ack, err
		case ev.Type == "ack":
			ack.ID, ack.Duplicate = ev.ID, ev.Duplicate
			return ack, nil
		}
		return ack, &ServerError{Code: ev.Code, Message: ev.Message}
	}
}

// Do sends a command frame (edit, delete, react, read: see
// docs/protocol.md) with a fresh nonce and waits for its ack; a refusal is
// a *ServerError. It is not sent again after a drop.
func (c *Conn) Do(ctx context.Context, cmd map[string]any) (Ack, error) {
	nonce := NewNonce()
	frame := make(map[string]any, len(cmd)+1)
	for k, v := range cmd {
		frame[k] = v
	}
	frame["nonce"] = nonce
	data, err := json.Marshal(frame)
	if err != nil {
		return Ack{}, fmt.Errorf("encode command: %w", err)
	}
	ev, err := c.exchange(ctx, nonce, data)
	switch {
	case err != nil:
		return Ack{}, err
	case ev.Type == "ack":
		return Ack{ID: ev.ID, Duplicate: ev.Duplicate}, nil
	}
	return Ack{}, &ServerError{Code: ev.Code, Message: ev.Message}
}

// Typing tells the room the user is typing. It has no answer: the server
// drops all but one per 3 seconds.
func (c *Conn) Typing(ctx context.Context) error {
	return c.SendRaw(ctx, websocket.MessageText, []byte(`{"type":"typing"}`))
}

// exchange writes frame on the current ready connection and waits for the
// ack or error carrying nonce; a drop first is ErrDisconnected.
func (c *Conn) exchange(ctx context.Context, nonce string, frame []byte) (Event, error) {
	ch := make(chan Event, 1)
	var ws *websocket.Conn
	for ws == nil {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return Event{}, ErrClosed
		}
		ready := c.ready
		if c.ws != nil && isClosed(ready) {
			ws = c.ws
			c.pending[nonce] = ch
		}
		c.mu.Unlock()
		if ws != nil {
			break
		}
		select {
		case <-ready:
		case <-c.done:
			return Event{}, ErrClosed
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
	forget := func() {
		c.mu.Lock()
		if c.pending[nonce] == ch {
			delete(c.pending, nonce)
		}
		c.mu.Unlock()
	}
	if err := ws.Write(ctx, websocket.MessageText, frame); err != nil {
		forget()
		if ctx.Err() != nil {
			return Event{}, ctx.Err()
		}
		// The connection broke under the write: a drop before the ack.
		c.lost(ws)
		return Event{}, fmt.Errorf("%w: %v", ErrDisconnected, err)
	}
	select {
	case ev := <-ch:
		if ev.Code == "disconnected" {
			return Event{}, ErrDisconnected
		}
		return ev, nil
	case <-ctx.Done():
		forget()
		return Event{}, ctx.Err()
	}
}

// SendRaw writes one frame as is on the current connection.
func (c *Conn) SendRaw(ctx context.Context, typ websocket.MessageType, data []byte) error {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return ErrDisconnected
	}
	return ws.Write(ctx, typ, data)
}

// Close ends the connection normally (1000), stops reconnecting, and waits
// for the reader to finish.
func (c *Conn) Close() error {
	ws, already := c.shut()
	if already {
		<-c.done
		return nil
	}
	var err error
	if ws != nil {
		err = ws.Close(websocket.StatusNormalClosure, "")
	}
	<-c.done
	return err
}

// CloseNow drops the connection without a close handshake, as a network
// failure would, and does not reconnect.
func (c *Conn) CloseNow() {
	ws, _ := c.shut()
	if ws != nil {
		_ = ws.CloseNow()
	}
	<-c.done
}

// Drop breaks the current connection without a close handshake, as a
// network failure would; with Reconnect the connection then recovers.
func (c *Conn) Drop() {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		// At once, not when the reader notices: a Send right after Drop
		// must wait for the next connection, not write to this one.
		c.lost(ws)
		_ = ws.CloseNow()
	}
}

// lost marks ws, if it is still the current connection, as gone: Send waits
// for the next one, and sends waiting for an ack get ErrDisconnected.
func (c *Conn) lost(ws *websocket.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ws != ws {
		return // already marked
	}
	c.ws = nil
	c.ready = make(chan struct{})
	for nonce, ch := range c.pending {
		ch <- Event{Type: "error", Code: "disconnected", Nonce: nonce}
		delete(c.pending, nonce)
	}
}

func (c *Conn) shut() (*websocket.Conn, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.ws, true
	}
	c.closed = true
	close(c.stop)
	return c.ws, false
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// NewNonce returns a random nonce (16 hex digits).
func NewNonce() string {
	b := make([]byte, 8)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

func newKey() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
