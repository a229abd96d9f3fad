package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/metrics"
)

// conn is one websocket client. A goroutine reads its frames; the room's
// tailer writes it the room's entries while it keeps up, and a pump
// goroutine when it does not; a timer pings.
type conn struct {
	s  *Server
	ws *websocket.Conn
	w  wire // in the conn itself: the tailer's writes touch one object less
	id string
	// fields identify the connection in its log lines. They are kept as
	// fields, not a derived logger, which would hold an encoded copy per
	// connection for its whole life.
	fields []zap.Field
	sess   *hub.Session

	// The write pump runs only while the connection is behind the room's
	// tailer: a connection that keeps up is written to by the tailer (Offer),
	// and an idle one holds no writer goroutine. Wake starts it.
	pumpCtx     context.Context
	pumpMu      sync.Mutex
	pumpIdle    *sync.Cond
	pumpRunning bool
	pumpStopped bool
	// frames is reused by the pumps and Offer, which never run at once
	// (see keepFrames).
	frames [][]byte

	closeOnce sync.Once
	reason    error // why the server ended the connection; set once
}

// joinParams are the validated query parameters of /ws.
type joinParams struct {
	room, name string
	since      chat.ID
	resume     bool
}

func parseParams(r *http.Request) (joinParams, *chat.Error) {
	q := r.URL.Query()
	p := joinParams{room: q.Get("room")}
	if p.room == "" {
		p.room = chat.DefaultRoom
	}
	if !chat.ValidRoom(p.room) {
		return p, &chat.Error{Code: chat.CodeBadRoom, Message: "room must match ^[a-z0-9][a-z0-9_-]{0,63}$"}
	}
	name, fromQuery := q.Get("name"), q.Has("name")
	if !fromQuery {
		if c, err := r.Cookie("username"); err == nil {
			// Browsers store it percent-encoded; a value that is not is used as is.
			if v, err := url.QueryUnescape(c.Value); err == nil {
				name = v
			} else {
				name = c.Value
			}
		}
	}
	var err *chat.Error
	if p.name, err = chat.NormalizeName(name); err != nil {
		return p, err
	}
	if since := q.Get("since"); since != "" {
		// A malformed id is not an error: the client gets the replay.
		if id, err := chat.ParseID(since); err == nil {
			p.since, p.resume = id, true
		}
	}
	return p, nil
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.isDraining() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	params, perr := parseParams(r)
	// Accept checks the Origin: the request's own host, or an allowed
	// pattern. Anything else gets 403 before any upgrade.
	c := &conn{s: s, id: newConnID()}
	ws, err := websocket.Accept(hijacker{w, &c.w}, r, &websocket.AcceptOptions{OriginPatterns: s.opts.AllowedOrigins})
	if err != nil {
		s.log.Debug("handshake refused", zap.String("remote_addr", clientAddr(r, s.opts.TrustedProxies)), zap.Error(err))
		return
	}
	ws.SetReadLimit(s.opts.MaxFrame)
	c.ws = ws
	c.fields = []zap.Field{zap.String("conn_id", c.id), zap.String("room", params.room),
		zap.String("name", params.name), zap.String("remote_addr", clientAddr(r, s.opts.TrustedProxies)), zap.String("replica", s.opts.Replica)}
	if perr != nil {
		c.refuse(perr)
		return
	}
	if !c.s.track(c) {
		_ = ws.Close(websocket.StatusGoingAway, "server shutting down; reconnect")
		return
	}
	// Joining and the replay run here; the rest of the connection's life is
	// a read loop on a fresh goroutine, and the handler returns. So the deep
	// stack grown by the join, net/http's connection state and the request
	// are freed, and an idle connection keeps one small stack.
	loop := c.serve(params)
	if loop == nil {
		c.s.untrack(c)
		return
	}
	go func() {
		defer c.s.untrack(c)
		loop()
	}()
}

// refuse sends the handshake error and closes with 1008.
func (c *conn) refuse(e *chat.Error) {
	_ = c.w.write(textFrame(chat.EncodeError(e)))
	code, reason := handshakeError(e)
	_ = c.ws.Close(code, reason)
	c.logf(zapcore.InfoLevel, "connection refused", zap.String("code", string(e.Code)), zap.String("reason", e.Message))
}

// serve joins the room and sends the replay, and returns the rest of the
// connection's life: the read loop and the teardown. It returns nil when the
// join failed (the client has been told).
func (c *conn) serve(p joinParams) (loop func()) {
	start := time.Now()
	// Reads and writes use ctx, and cancelling it drops the socket at once;
	// so it ends only after the connection is over, or when the server's
	// drain deadline has passed. Orderly closes go through fail.
	ctx, cancel := context.WithCancel(c.s.ctx)

	m := c.s.opts.Metrics
	sess, err := c.s.hub.Join(ctx, hub.JoinRequest{Room: p.room, Name: p.name, Conn: c.id, Since: p.since, Resume: p.resume})
	if err != nil {
		m.RedisErrors.WithLabelValues("join").Inc()
		m.ConnsClosed.WithLabelValues(metrics.ReasonJoinError).Inc()
		c.logf(zapcore.WarnLevel, "join failed", zap.Error(err))
		c.sendError(ctx, errJoin)
		c.fail(errJoin)
		cancel()
		return nil
	}
	c.sess = sess
	m.ConnsOpened.Inc()
	m.ConnsOpen.Inc()
	c.logf(zapcore.InfoLevel, "connection opened", zap.Bool("resumed", sess.Resumed), zap.Stringer("cursor", sess.Boundary))

	writerDone := make(chan error, 1)
	switch err := c.greet(ctx, p); {
	case err != nil:
		c.fail(err)
		cancel()
		writerDone <- nil
	case sess.Follows():
		c.startPump(ctx)
		writerDone <- nil
	default: // direct mode: a loop blocked in its own XREAD
		go func() { writerDone <- c.writeLoop(ctx) }()
	}
	stopPing := c.startPing()
	return func() {
		defer cancel()
		defer m.ConnsOpen.Dec()
		readErr := c.readLoop(ctx)
		c.fail(readErr) // no-op when the server already ended it
		cancel()
		<-writerDone
		c.stopPump()
		stopPing()
		c.finish(ctx, sess, start, readErr)
	}
}

// finish appends the leave entry and logs and counts the connection's end.
func (c *conn) finish(ctx context.Context, sess *hub.Session, start time.Time, readErr error) {
	m := c.s.opts.Metrics

	leaveCtx, leaveCancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.opts.StoreTimeout)
	_, leaveErr := sess.Leave(leaveCtx)
	leaveCancel()

	fields := []zap.Field{zap.Duration("duration", time.Since(start)), zap.String("reason", c.endReason(readErr))}
	m.ConnsClosed.WithLabelValues(closeReason(c.serverReason(readErr), readErr)).Inc()
	if leaveErr != nil {
		m.RedisErrors.WithLabelValues("leave").Inc()
		fields = append(fields, zap.NamedError("leave_error", leaveErr))
	}
	c.logf(zapcore.InfoLevel, "connection closed", fields...)
}

// logf logs one line with the connection's identifying fields.
func (c *conn) logf(level zapcore.Level, msg string, extra ...zap.Field) {
	if ce := c.s.log.Check(level, msg); ce != nil {
		ce.Write(append(c.fields[:len(c.fields):len(c.fields)], extra...)...)
	}
}

// greet sends hello, the replay or the resumed entries, and ready, and
// then whatever the catch-up read returned past the boundary.
func (c *conn) greet(ctx context.Context, p joinParams) error {
	sess := c.sess
	o := c.s.opts
	frames := make([][]byte, 0, 2+len(sess.Replay))
	frames = append(frames, textFrame(chat.EncodeHello(chat.Hello{
		Room: p.room, You: p.name, Replica: o.Replica, Resumed: sess.Resumed,
		Limits: chat.Limits{MaxText: o.MaxText, MaxFrame: int(o.MaxFrame), Rate: o.Rate, Burst: o.Burst},
	})))
	for _, e := range sess.Replay {
		frames = append(frames, textFrame(chat.EncodeEvent(e, true)))
	}
	if err := c.w.write(frames...); err != nil {
		return err
	}
	// Resuming: deliver every entry up to the boundary before ready, so
	// ready's cursor is the last entry sent.
	cursor := sess.Cursor()
	var rest []hub.Entry
	for cursor.Less(sess.Boundary) && rest == nil {
		batch, err := sess.Next(ctx)
		if err != nil {
			return err
		}
		frames = frames[:0]
		for i, e := range batch {
			if sess.Boundary.Less(e.ID) {
				rest = batch[i:]
				break
			}
			frames = append(frames, e.Frame)
			cursor = e.ID
		}
		if err := c.w.write(frames...); err != nil {
			return err
		}
	}
	frames = append(frames[:0], textFrame(chat.EncodeReady(cursor, sess.Online)))
	for _, e := range rest {
		frames = append(frames, e.Frame)
	}
	// Sent: do not keep the history and the names for the connection's life.
	sess.Replay, sess.Online = nil, nil
	return c.w.write(frames...)
}

// writeLoop sends the room's entries after the cursor until the connection
// ends: the direct mode's writer, blocked in its own read. Each connection
// has its own loop, so a slow client delays only itself.
func (c *conn) writeLoop(ctx context.Context) error {
	for {
		batch, err := c.sess.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.fail(err)
			}
			return err
		}
		if err := c.writeBatch(batch); err != nil {
			c.fail(err)
			return err
		}
	}
}

// startPump sends whatever is ready and then follows the room.
func (c *conn) startPump(ctx context.Context) {
	c.pumpIdle = sync.NewCond(&c.pumpMu)
	c.pumpCtx = ctx
	c.Wake()
}

// Offer writes entries the room's tailer hands over, as far as the socket
// takes them without waiting (hub.Follower). A connection that keeps up is
// written to from here alone; one that does not is woken to catch up in
// its pump.
func (c *conn) Offer(entries []hub.Entry) (int, bool) {
	if !c.w.tryLock() {
		return 0, false
	}
	frames := c.frames[:0]
	for _, e := range entries {
		frames = append(frames, e.Frame)
	}
	sent, err := c.w.tryWrite(frames)
	taken := sent
	if c.w.rest != nil {
		taken++ // its rest goes out before anything else
	}
	c.w.mu.Unlock()
	c.keepFrames(frames)
	c.delivered(entries[:taken])
	// Short of all of them, the pump finishes, or meets the error and ends.
	return taken, sent == len(entries) && err == nil
}

// Wake starts a pump unless one is running or the connection is ending
// (hub.Follower). It never blocks.
func (c *conn) Wake() {
	c.pumpMu.Lock()
	if c.pumpStopped || c.pumpRunning {
		c.pumpMu.Unlock()
		return
	}
	c.pumpRunning = true
	c.pumpMu.Unlock()
	go c.pump(c.pumpCtx)
}

// pump sends what Offer left, then the entries after the cursor until none
// are ready, then follows the room again and ends. Pumps run one at a time
// and never while the connection follows, so each connection has one
// ordered writer, and a slow client delays only its own pump.
func (c *conn) pump(ctx context.Context) {
	err := c.w.write()
	for err == nil {
		var batch []hub.Entry
		if batch, err = c.sess.TryNext(ctx); err != nil || len(batch) == 0 {
			break
		}
		err = c.writeBatch(batch)
	}
	if err != nil && ctx.Err() == nil {
		c.fail(err)
	}
	c.pumpMu.Lock()
	c.pumpRunning = false
	stopped := c.pumpStopped
	c.pumpIdle.Broadcast()
	c.pumpMu.Unlock()
	if err == nil && !stopped {
		c.sess.Follow(c)
	}
}

// stopPump stops wake-ups and waits for a running pump to finish.
func (c *conn) stopPump() {
	if c.pumpIdle == nil {
		return
	}
	c.pumpMu.Lock()
	c.pumpStopped = true
	for c.pumpRunning {
		c.pumpIdle.Wait()
	}
	c.pumpMu.Unlock()
}

// writeBatch writes a batch of entries, waiting for the socket, and
// counts them.
func (c *conn) writeBatch(batch []hub.Entry) error {
	frames := c.frames[:0]
	for _, e := range batch {
		frames = append(frames, e.Frame)
	}
	err := c.w.write(frames...)
	c.keepFrames(frames)
	if err != nil {
		return err
	}
	c.delivered(batch)
	return nil
}

// keepFrames keeps a frames slice for reuse, holding no frame alive between
// batches, and only while it is small: a catch-up batch's must not stay
// with the connection for its life.
func (c *conn) keepFrames(frames [][]byte) {
	if cap(frames) > 8 {
		c.frames = nil
		return
	}
	clear(frames)
	c.frames = frames[:0]
}

// delivered counts entries written to the connection.
func (c *conn) delivered(entries []hub.Entry) {
	if len(entries) == 0 {
		return
	}
	m := c.s.opts.Metrics
	m.Deliveries.Add(float64(len(entries)))
	now := time.Now()
	for _, e := range entries {
		m.DeliverySeconds.Observe(now.Sub(e.ID.Time()).Seconds())
	}
}

// stuck reports whether a write has been waiting longer than limit.
func (c *conn) stuck(now time.Time, limit time.Duration) bool {
	start := c.w.writeStart.Load()
	return start != 0 && now.UnixNano()-start > int64(limit)
}

// readLoop handles client frames until the connection ends, and returns why.
func (c *conn) readLoop(ctx context.Context) error {
	o := c.s.opts
	m := o.Metrics
	limiter := rate.NewLimiter(rate.Limit(o.Rate), o.Burst)
	for {
		// Not ctx: a context with a Done channel costs a timer registration
		// per frame. Every end of the connection closes the socket, which
		// ends this Read.
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			return err
		}
		m.MessagesReceived.Inc()
		if !limiter.Allow() {
			m.RateLimited.Inc()
			msg, _ := chat.DecodeFrame(data, o.MaxText)
			c.sendError(ctx, &chat.Error{Code: chat.CodeRateLimited, Message: "too many messages; slow down", Nonce: msg.Nonce})
			continue
		}
		if typ != websocket.MessageText {
			m.Rejected.WithLabelValues(string(chat.CodeBadRequest)).Inc()
			c.sendError(ctx, errBinary)
			continue
		}
		msg, derr := chat.DecodeFrame(data, o.MaxText)
		if derr != nil {
			m.Rejected.WithLabelValues(string(derr.Code)).Inc()
			c.sendError(ctx, derr)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, o.StoreTimeout)
		postStart := time.Now()
		id, err := c.sess.Post(pctx, msg.Text, msg.Nonce)
		cancel()
		if err != nil {
			m.RedisErrors.WithLabelValues("append").Inc()
			c.logf(zapcore.DebugLevel, "post failed", zap.Error(err))
			ev, _, _ := toClient(errUnavailable)
			withNonce := *ev
			withNonce.Nonce = msg.Nonce
			c.sendError(ctx, &withNonce)
			continue
		}
		m.MessagesAppended.Inc()
		m.AppendSeconds.Observe(metrics.Since(postStart))
		if err := c.w.write(textFrame(chat.EncodeAck(msg.Nonce, id))); err != nil {
			c.fail(err)
		}
	}
}

// sendError sends the error event that toClient maps err to.
func (c *conn) sendError(ctx context.Context, err error) {
	ev, _, _ := toClient(err)
	if ev == nil {
		return
	}
	if werr := c.w.write(textFrame(chat.EncodeError(ev))); werr != nil {
		c.fail(werr)
	}
}

// fail ends the connection for err, once: with the close code toClient
// gives when the peer can still take part in a close handshake, at once
// when it cannot (gone, unresponsive, or the library already sent 1009).
func (c *conn) fail(err error) {
	c.closeOnce.Do(func() {
		c.reason = err
		c.w.closing.Store(true) // no message after the close frame
		if _, code, reason := toClient(err); code > 0 {
			_ = c.ws.Close(code, reason)
		} else {
			_ = c.ws.CloseNow()
		}
	})
}

// serverReason is why the server ended the connection, or nil when it was
// the client's read that ended it.
func (c *conn) serverReason(readErr error) error {
	if c.reason != nil && c.reason != readErr {
		return c.reason
	}
	return nil
}

// endReason says, for the log, why the connection ended.
func (c *conn) endReason(readErr error) string {
	var ce websocket.CloseError
	switch serverErr := c.serverReason(readErr); {
	case serverErr != nil:
		return serverErr.Error()
	case errors.As(readErr, &ce):
		return "client closed: " + ce.Code.String()
	case errors.Is(readErr, websocket.ErrMessageTooBig):
		return "frame too large"
	}
	return "connection lost: " + readErr.Error()
}

// startPing pings the client every interval on a timer, so an idle
// connection holds no goroutine for it. A client that does not answer
// within the interval is dropped.
func (c *conn) startPing() (stop func()) {
	interval := c.s.opts.PingInterval
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	t = time.AfterFunc(interval, func() {
		ctx, cancel := context.WithTimeout(c.s.ctx, interval)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil {
			c.fail(errPingTimeout)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t.Reset(interval)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}
