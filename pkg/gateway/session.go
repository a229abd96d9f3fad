package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/wsconn"
)

// conn is one websocket client speaking the chat protocol. A goroutine
// reads its frames and dispatches its commands; the room's entries are
// written to its wsconn.Conn by the hub.
type conn struct {
	s  *Server
	ws *wsconn.Conn
	id string
	// addr is the client's address, for log lines. A connection's log
	// fields are built when it logs (rarely: at its start and end), not
	// kept: 4 fields are 256 bytes per idle connection.
	addr string
	room string
	with string // the other user of a direct-message room
	who  chat.Identity
	sess Session
	// sender scopes the nonces of this connection's messages: the
	// identity's, or the connection's own when it has none.
	sender string
	// lastTyping is when the read loop last sent a typing notice, in
	// Unix nanoseconds.
	lastTyping int64
	// upload is the file announced by the last frame, whose bytes the next
	// frame must be; only the read loop touches it.
	upload *chat.File
	// uploads is the connection's upload byte budget, made at its first
	// file (uploadBudget): most connections never send one. Only the read
	// loop touches it, so making it needs no lock.
	uploads *rate.Limiter

	endOnce sync.Once
	reason  error // why the server ended the connection; set once
}

// joinParams are the validated query parameters of /ws.
type joinParams struct {
	room   string
	with   string // room=@USERID: the other user of a direct-message room
	since  chat.ID
	resume bool
}

func parseParams(r *http.Request) (joinParams, *chat.Error) {
	q := r.URL.Query()
	// A copy, as the query's strings share the request line's memory,
	// which the connection would otherwise keep for its whole life.
	p := joinParams{room: strings.Clone(q.Get("room"))}
	if p.room == "" {
		p.room = chat.DefaultRoom
	}
	if uid, ok := strings.CutPrefix(p.room, "@"); ok {
		if !chat.ValidUserID(uid) {
			return p, &chat.Error{Code: chat.CodeBadRoom, Message: "room=@USERID needs a user id of 1 to 128 printable characters"}
		}
		p.with = uid
	} else if !chat.ValidRoom(p.room) {
		return p, chat.BadRoom()
	}
	if since := q.Get("since"); since != "" {
		// A malformed id is not an error: the client gets the replay.
		if id, err := chat.ParseID(since); err == nil {
			p.since, p.resume = id, true
		}
	}
	return p, nil
}

// handshake checks the request and decides who the client is.
func (s *Server) handshake(r *http.Request) (joinParams, chat.Identity, error) {
	params, perr := parseParams(r)
	if perr != nil {
		return params, chat.Identity{}, refusal{perr}
	}
	who, err := s.opts.Auth.Authenticate(r)
	var ce *chat.Error
	switch {
	case errors.As(err, &ce):
		return params, who, refusal{ce}
	case err != nil:
		return params, who, fmt.Errorf("authenticate: %w", err)
	}
	if err := admit(&params, who); err != nil {
		return params, who, refusal{err}
	}
	return params, who, nil
}

// admit decides whether who may enter the room asked for, and turns
// room=@USERID into the pair's direct-message room. Direct-message rooms
// are reached only that way, so only their two users can enter them.
func admit(p *joinParams, who chat.Identity) *chat.Error {
	forbidden := func(msg string) *chat.Error { return &chat.Error{Code: chat.CodeForbidden, Message: msg} }
	switch {
	case p.with != "" && who.UserID == "":
		return forbidden("direct messages need sign-in")
	case p.with != "":
		p.room = chat.DirectRoom(who.UserID, p.with)
		return nil
	case strings.HasPrefix(p.room, chat.DirectPrefix):
		return forbidden("direct-message rooms are entered as room=@USERID")
	case who.Rooms == nil:
		return nil
	}
	for _, pattern := range who.Rooms {
		if ok, _ := path.Match(pattern, p.room); ok {
			return nil
		}
	}
	return forbidden("your token does not allow this room")
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.isDraining() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	addr := clientAddr(r, s.opts.TrustedProxies)
	release, ok := s.perAddr.acquire(addr)
	if !ok {
		s.apiError(w, r, errAddrFull)
		return
	}
	handedOver := false
	defer func() {
		if !handedOver {
			release()
		}
	}()
	params, who, herr := s.handshake(r)
	c := &conn{s: s, id: newConnID(), addr: clientAddr(r, s.opts.TrustedProxies), room: params.room, with: params.with, who: who, sender: who.Sender}
	if c.sender == "" {
		c.sender = "conn:" + c.id
	}
	// Accept checks the Origin: the request's own host, or an allowed
	// pattern. Anything else gets 403 before any upgrade.
	ws, err := wsconn.Accept(w, r, wsconn.Options{
		OriginPatterns: s.opts.AllowedOrigins,
		// Binary frames (a file's bytes) may be up to MaxFile; the read
		// loop holds text frames to MaxFrame itself.
		ReadLimit:    max(s.opts.MaxFrame, s.opts.MaxFile),
		PingInterval: s.opts.PingInterval,
		Sweeper:      s.sweeper,
		OnEnd:        c.fail,
	})
	if err != nil {
		s.log.Debug("handshake refused", zap.String("remote_addr", c.addr), zap.Error(err))
		return
	}
	c.ws = ws
	if herr != nil {
		c.refuse(herr)
		return
	}
	if !c.s.track(c) {
		c.fail(errShutdown)
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
	handedOver = true
	go func() {
		defer release()
		defer c.s.untrack(c)
		loop()
	}()
}

// author is what an anonymous connection's entries keep of their sender
// (chat.AuthorOf), so that only it can edit or delete them; "" when signed
// in, where the uid says it. Computed when used (about 0.2 µs per post,
// beside a Redis round trip), not kept: an idle connection holds nothing
// for it.
func (c *conn) author() string {
	if c.who.UserID != "" {
		return ""
	}
	return chat.AuthorOf(c.sender)
}

// refuse tells the client why its handshake cannot go on, and closes.
func (c *conn) refuse(err error) {
	o := classify(err)
	c.s.opts.Metrics.ConnsClosed.WithLabelValues(o.metric).Inc()
	c.logf(o.level, "connection refused", zap.Error(err))
	c.sendError(err, "")
	c.fail(err)
}

// serve joins the room and sends the greeting, and returns the rest of the
// connection's life: the read loop and the teardown. It returns nil when
// the join failed (the client has been told).
func (c *conn) serve(p joinParams) (loop func()) {
	start := time.Now()
	// Storage calls for the client use ctx; it ends when the connection is
	// over, or when the server's drain deadline has passed. Orderly closes
	// go through fail.
	ctx, cancel := context.WithCancel(c.s.ctx)

	m := c.s.opts.Metrics
	sess, greeting, err := c.s.hub.Join(ctx, hub.JoinRequest{Room: p.room, Name: c.who.Name, UID: c.who.UserID, Author: c.author(), Conn: c.id, Since: p.since, Resume: p.resume})
	if err != nil {
		o := classify(errJoin)
		m.RedisErrors.WithLabelValues("join").Inc()
		m.ConnsClosed.WithLabelValues(o.metric).Inc()
		c.logf(o.level, "join failed", zap.Error(err))
		c.sendError(errJoin, "")
		c.fail(errJoin)
		cancel()
		return nil
	}
	c.sess = sess
	if c.with != "" {
		// Both users' lists show the conversation from now on; a failure
		// costs the list an entry, not the conversation.
		if err := c.s.store.RecordDirect(ctx, c.who.UserID, c.with); err != nil {
			c.logf(zapcore.WarnLevel, "record direct conversation", zap.Error(err))
		}
	}
	var marker *chat.ID
	if c.who.UserID != "" {
		// The user's room list shows the room from now on, and ready
		// tells where they last read; a failure costs the list, not the
		// conversation.
		if id, err := c.s.store.Joined(ctx, c.who.UserID, c.listName(), greeting.Boundary); err != nil {
			c.logf(zapcore.WarnLevel, "record joined room", zap.Error(err))
		} else {
			marker = &id
		}
	}
	m.ConnsOpened.Inc()
	m.ConnsOpen.Inc()
	c.logf(zapcore.InfoLevel, "connection opened", zap.Bool("resumed", greeting.Resumed), zap.Stringer("cursor", greeting.Boundary))

	if err := c.greet(ctx, greeting, marker); err != nil {
		c.fail(err)
	} else {
		sess.Start(c.ws, c.fail)
	}
	// A signed-in connection lasts as long as its token.
	expiry := func() {}
	if !c.who.Expires.IsZero() {
		t := time.AfterFunc(time.Until(c.who.Expires), func() {
			c.sendError(errExpired, "")
			c.fail(errExpired)
		})
		expiry = func() { t.Stop() }
	}
	return func() {
		defer cancel()
		defer expiry()
		defer m.ConnsOpen.Dec()
		readErr := c.readLoop(ctx)
		c.fail(readErr) // no-op when the server already ended it
		cancel()
		c.finish(ctx, start, readErr)
	}
}

// finish appends the leave entry and logs and counts the connection's end.
func (c *conn) finish(ctx context.Context, start time.Time, readErr error) {
	m := c.s.opts.Metrics

	leaveCtx, leaveCancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.opts.StoreTimeout)
	_, leaveErr := c.sess.Leave(leaveCtx)
	leaveCancel()

	serverErr := c.serverReason(readErr)
	o := ending(serverErr, readErr)
	fields := []zap.Field{zap.Duration("duration", time.Since(start)), zap.String("reason", endReason(serverErr, readErr))}
	m.ConnsClosed.WithLabelValues(o.metric).Inc()
	if leaveErr != nil {
		m.RedisErrors.WithLabelValues("leave").Inc()
		fields = append(fields, zap.NamedError("leave_error", leaveErr))
	}
	c.logf(o.level, "connection closed", fields...)
}

// logf logs one line with the connection's identifying fields (the
// logger already names the replica).
func (c *conn) logf(level zapcore.Level, msg string, extra ...zap.Field) {
	if ce := c.s.log.Check(level, msg); ce != nil {
		fields := append(make([]zap.Field, 0, 4+len(extra)),
			zap.String("conn_id", c.id), zap.String("room", c.room), zap.String("name", c.who.Name), zap.String("remote_addr", c.addr))
		ce.Write(append(fields, extra...)...)
	}
}

// uploadBudget returns c.uploads, making it on first use; read loop only.
func (c *conn) uploadBudget() *rate.Limiter {
	if c.uploads == nil {
		o := c.s.opts
		c.uploads = rate.NewLimiter(rate.Limit(o.UploadRate), int(max(o.MaxFile, o.UploadRate)))
	}
	return c.uploads
}

// greet sends hello, the replay or the resumed entries, and ready, and
// then whatever the catch-up read returned past the boundary.
func (c *conn) greet(ctx context.Context, g hub.Greeting, marker *chat.ID) error {
	o := c.s.opts
	payloads := make([][]byte, 0, 2+len(g.Replay))
	payloads = append(payloads, chat.EncodeHello(chat.Hello{
		Room: c.room, With: c.with, You: c.who.Name, UID: c.who.UserID, Replica: o.Replica, Resumed: g.Resumed,
		Limits: chat.Limits{MaxText: o.MaxText, MaxFrame: int(o.MaxFrame), Rate: o.Rate, Burst: o.Burst},
	}))
	for _, e := range g.Replay {
		payloads = append(payloads, chat.EncodeEvent(e, true))
	}
	if err := c.ws.Write(payloads...); err != nil {
		return err
	}
	// Resuming: deliver every entry up to the boundary before ready, so
	// ready's cursor is the last entry sent.
	cursor := g.Cursor
	var rest []hub.Entry
	for cursor.Less(g.Boundary) && rest == nil {
		batch, err := c.sess.Next(ctx)
		if err != nil {
			return err
		}
		payloads = payloads[:0]
		for i := range batch {
			if g.Boundary.Less(batch[i].ID()) {
				rest = batch[i:]
				break
			}
			payloads = append(payloads, batch[i].Payload)
			cursor = batch[i].ID()
		}
		if err := c.ws.Write(payloads...); err != nil {
			return err
		}
	}
	payloads = append(payloads[:0], chat.EncodeReady(cursor, g.Online, marker))
	for i := range rest {
		payloads = append(payloads, rest[i].Payload)
	}
	return c.ws.Write(payloads...)
}

// readLoop handles client frames until the connection ends, and returns why.
func (c *conn) readLoop(ctx context.Context) error {
	o := c.s.opts
	m := o.Metrics
	limiter := frameLimiter{local: rate.NewLimiter(rate.Limit(o.Rate), o.Burst), shared: o.Limiter, user: c.who.UserID}
	for {
		// Not ctx: a context with a Done channel costs a timer registration
		// per frame. Every end of the connection closes the socket, which
		// ends this Read.
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			return err
		}
		m.MessagesReceived.Inc()
		if typ == websocket.MessageText && int64(len(data)) > o.MaxFrame {
			// As the library does for any frame past its read limit.
			c.ws.Close(websocket.StatusMessageTooBig, "frame too large")
			return fmt.Errorf("text frame of %d bytes: %w", len(data), websocket.ErrMessageTooBig)
		}
		var cmd chat.Command
		var derr *chat.Error
		if typ == websocket.MessageText && c.upload == nil {
			cmd, derr = chat.DecodeCommand(data, o.MaxText)
		}
		// Typing notices do not spend the budget of messages: the read
		// loop drops all but one per chat.TypingInterval itself, before
		// any Redis call, so a flood of them costs their decoding only.
		if _, typing := cmd.(chat.Typing); !typing && !limiter.allow(ctx) {
			m.RateLimited.Inc()
			var nonce string
			if cmd != nil {
				nonce = cmd.CommandNonce()
			}
			c.sendError(&chat.Error{Code: chat.CodeRateLimited, Message: "too many messages; slow down"}, nonce)
			continue
		}
		if typ != websocket.MessageText {
			up := c.upload
			c.upload = nil
			if up == nil {
				m.Rejected.WithLabelValues(string(chat.CodeBadRequest)).Inc()
				c.sendError(errBinary, "")
				continue
			}
			c.logCommandError(c.store(ctx, *up, data), up.Nonce)
			continue
		}
		if up := c.upload; up != nil {
			// The bytes were due; this text frame is refused, and so is
			// the upload.
			c.upload = nil
			m.Rejected.WithLabelValues(string(chat.CodeBadRequest)).Inc()
			c.sendError(&chat.Error{Code: chat.CodeBadRequest, Message: "a file's bytes must come next, as one binary frame; the upload is cancelled"}, up.Nonce)
			continue
		}
		if derr != nil {
			m.Rejected.WithLabelValues(string(derr.Code)).Inc()
			c.sendError(derr, derr.Nonce)
			continue
		}
		c.dispatch(ctx, cmd)
	}
}

// dispatch carries out one client command: the one place where each kind
// of command meets the hub.
func (c *conn) dispatch(ctx context.Context, cmd chat.Command) {
	var err error
	switch cmd := cmd.(type) {
	case chat.Message:
		err = c.post(ctx, chat.Event{Room: c.room, Kind: chat.KindMessage, From: c.who.Name, UID: c.who.UserID, Author: c.author(), Text: cmd.Text, Nonce: cmd.Nonce})
	case chat.Typing:
		err = c.typing(ctx)
	case chat.Edit:
		err = c.amend(ctx, chat.KindEdit, cmd.ID, cmd.Text, "", false, cmd.Nonce)
	case chat.Delete:
		err = c.amend(ctx, chat.KindDelete, cmd.ID, "", "", false, cmd.Nonce)
	case chat.React:
		err = c.amend(ctx, chat.KindReact, cmd.ID, "", cmd.Emoji, cmd.On, cmd.Nonce)
	case chat.Read:
		err = c.markRead(ctx, cmd)
	case chat.File:
		err = c.announce(cmd)
	case chat.History:
		err = c.history(ctx, cmd)
	default:
		err = fmt.Errorf("%w: %T", errCommand, cmd)
	}
	c.logCommandError(err, cmd.CommandNonce())
}

// logCommandError logs, counts and answers a failed command.
func (c *conn) logCommandError(err error, nonce string) {
	if err == nil {
		return
	}
	c.logf(classify(err).level, "command failed", zap.Error(err))
	var ce *chat.Error
	if errors.As(err, &ce) {
		c.s.opts.Metrics.Rejected.WithLabelValues(string(ce.Code)).Inc()
	}
	c.sendError(err, nonce)
}

// post appends e and acknowledges it once Redis has stored it (and, when
// so configured, its replicas have). A nonce the sender already stored is
// acknowledged again with the first entry's ID.
func (c *conn) post(ctx context.Context, e chat.Event) error {
	pctx, cancel := context.WithTimeout(ctx, c.s.opts.StoreTimeout)
	ack, err := c.s.hub.Post(pctx, e, c.sender)
	cancel()
	if err != nil {
		var ce *chat.Error
		if !errors.As(err, &ce) && !errors.Is(err, hub.ErrUnavailable) {
			// A deadline or a cancelled post: storage did not answer.
			err = fmt.Errorf("%w: %w", hub.ErrUnavailable, err)
		}
		return err
	}
	if err := c.ws.Write(chat.EncodeAck(e.Nonce, ack.ID, ack.Duplicate)); err != nil {
		c.fail(err)
	}
	return nil
}

// sendError sends the error event that the table maps err to, carrying
// the nonce of the command it answers.
func (c *conn) sendError(err error, nonce string) {
	ev := classify(err).event
	if ev == nil {
		return
	}
	if ev.Nonce != nonce {
		withNonce := *ev
		withNonce.Nonce = nonce
		ev = &withNonce
	}
	if werr := c.ws.Write(chat.EncodeError(ev)); werr != nil {
		c.fail(werr)
	}
}

// fail ends the connection for err, once, as the error table says: with
// its close code when the peer can still take part in a close handshake,
// at once when it cannot (gone, unresponsive, or the library already sent
// 1009).
func (c *conn) fail(err error) {
	c.endOnce.Do(func() {
		c.reason = err
		switch o := classify(err); o.action {
		case closeWith:
			c.ws.Close(o.close, o.reason)
		default:
			c.ws.Drop()
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
func endReason(serverErr, readErr error) string {
	var ce websocket.CloseError
	switch {
	case serverErr != nil:
		return serverErr.Error()
	case errors.As(readErr, &ce):
		return "client closed: " + ce.Code.String()
	case errors.Is(readErr, websocket.ErrMessageTooBig):
		return "frame too large"
	}
	return "connection lost: " + readErr.Error()
}
