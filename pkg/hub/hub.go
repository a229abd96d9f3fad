// Package hub runs the rooms of one gateway replica. Every connection has its
// own cursor and reads the entries after it; in shared mode one reader per
// Redis node follows the bells of the active rooms, reads the rooms that
// rang into their in-memory windows and writes each batch to the
// connections that keep up (Follower.TryWrite); a connection that falls
// short catches up in a goroutine of its own session, from the window or
// from Redis, and then follows again. So Redis connections grow with Redis
// nodes, not rooms or users, and a slow connection only delays itself. The hub
// deals in events and their JSON payloads, encoded once per replica; how a
// payload reaches a client is the Follower's business.
package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/metrics"
)

// Store is what the hub needs from the room storage.
type Store interface {
	// Recent returns up to n replayable entries, oldest first, and the
	// newest entry ID of the stream at the time of the read.
	Recent(ctx context.Context, room string, n int) ([]chat.Event, chat.ID, error)
	// After returns up to count entries after the ID and the last generated
	// ID, or chat.ErrGap when entries after the ID are gone.
	After(ctx context.Context, room string, after chat.ID, count int) ([]chat.Event, chat.ID, error)
	// Read waits up to block for entries after the ID (direct mode).
	Read(ctx context.Context, room string, after chat.ID, count int, block time.Duration) ([]chat.Event, error)
	// ReadRooms returns, without waiting, up to count entries after each
	// room's cursor, indexed like rooms (shared mode).
	ReadRooms(ctx context.Context, rooms []string, after []chat.ID, count int) ([][]chat.Event, error)
	// Group names the rooms whose bells one subscription carries.
	Group(ctx context.Context, room string) (string, error)
	// Append stores e; a repeat of (room, sender, nonce) within the
	// store's dedupe window stores nothing and returns the first ID.
	Append(ctx context.Context, e chat.Event, sender string) (chat.Ack, error)
	// Amend applies an edit, delete or reaction and appends its entry.
	Amend(ctx context.Context, a chat.Amendment) (chat.Ack, error)
	// States sets the current state of the changed messages among
	// events, as the viewer (uid, else anonymous author hash) sees them.
	States(ctx context.Context, room string, events []chat.Event, uid, author string) error
	Join(ctx context.Context, room string, m chat.Member, ttl time.Duration) (chat.ID, []chat.Member, error)
	Leave(ctx context.Context, room string, m chat.Member) (bool, error)
	Refresh(ctx context.Context, room string, members []chat.Member, ttl time.Duration) (int, error)
}

// Errors returned by the hub.
var (
	// ErrLagged means a connection fell so far behind that the entries
	// after its cursor are gone from the stream; it must reconnect and
	// start from recent history.
	ErrLagged = errors.New("connection fell behind the room's stream")
	// ErrClosed means the hub is shutting down.
	ErrClosed = errors.New("hub closed")
	// ErrUnavailable means the room storage did not answer; the caller
	// may try again.
	ErrUnavailable = errors.New("room storage unavailable")
)

// Options tune a Hub. The zero value of each field means its default.
type Options struct {
	// Direct gives every connection its own XREAD BLOCK loop instead of the
	// room's shared tailer: the literal design, kept for measurement. It
	// costs one Redis connection per user.
	Direct bool
	// History is how many messages are replayed on join. Default 50.
	History int
	// Window is how many recent entries each room keeps in memory. A
	// connection further behind reads from Redis. Default 1024.
	Window int
	// Batch is the most entries one Next returns. Default 256.
	Batch int
	// Block is how long one XREAD waits. It bounds how late a stuck tailer
	// is noticed and how long a direct reader takes to see cancellation.
	// Default 2s.
	Block time.Duration
	// IdleTimeout is how long a room's tailer outlives its last local
	// connection, so a reconnecting client finds the window warm. Default 10s.
	IdleTimeout time.Duration
	// PresenceTTL is how long a member stays online without a refresh; the
	// hub refreshes its members every third of it. Default 30s.
	PresenceTTL time.Duration
	// ReadInterval is the least time between the starts of two reads of
	// one Redis node's rooms: a busy replica then gets more entries, of
	// more rooms, per XREAD, for at most that much more latency. Default 0.
	ReadInterval time.Duration
	// OpenBells subscribes to the bells of room's store group, starting
	// with room's (store.Store.NewBells). Required in shared mode.
	OpenBells func(ctx context.Context, room string) (Bells, error)
	// Metrics receives the hub's counters. Default: discarded.
	Metrics *metrics.Metrics
}

func (o *Options) setDefaults() {
	if o.History <= 0 {
		o.History = 50
	}
	if o.Window <= 0 {
		o.Window = 1024
	}
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Block <= 0 {
		o.Block = 2 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Second
	}
	if o.PresenceTTL <= 0 {
		o.PresenceTTL = 30 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = metrics.Discard()
	}
}

// Hub holds the active rooms of this replica.
type Hub struct {
	store Store
	log   *zap.Logger
	opts  Options

	ctx    context.Context // lifetime of every room goroutine
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	rooms  map[string]*room
	groups map[string]*group // shared mode's reads, by store group
	closed bool
}

// New returns a hub over store. Call Close to stop its goroutines.
func New(store Store, log *zap.Logger, opts Options) *Hub {
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		store:  store,
		log:    log.Named("hub"),
		opts:   opts,
		ctx:    ctx,
		cancel: cancel,
		rooms:  make(map[string]*room),
		groups: make(map[string]*group),
	}
}

// Stop tells every room to stop and returns at once; Join fails from now on
// and open sessions get ErrClosed from Next. A tailer blocked in XREAD
// notices at the end of its block, or as soon as the Redis client is closed,
// which is why shutdown calls Stop, closes Redis, then Close.
func (h *Hub) Stop() {
	h.mu.Lock()
	h.closed = true
	for name, r := range h.rooms {
		r.stop()
		delete(h.rooms, name)
	}
	h.mu.Unlock()
	h.cancel()
}

// Close stops every room and waits for their goroutines.
func (h *Hub) Close() {
	h.Stop()
	h.wg.Wait()
}

// Rooms returns how many rooms are active on this replica.
func (h *Hub) Rooms() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.rooms)
}

// Healthy reports an error when a read of rooms has not completed within
// three block intervals: a replica whose tail is stuck must not look ready.
func (h *Hub) Healthy() error {
	limit := 3 * h.opts.Block
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for key, g := range h.groups {
		if n := g.size(); n > 0 {
			if since := now.Sub(time.Unix(0, g.lastRead.Load())); since > limit {
				return fmt.Errorf("the reads of %d rooms (group %q): none completed for %s", n, key, since.Round(time.Millisecond))
			}
		}
	}
	return nil
}

// JoinRequest describes a connection entering a room.
type JoinRequest struct {
	Room string
	Name string
	UID  string // the signed-in user, or empty
	// Author is an anonymous member's author hash (chat.AuthorOf): the
	// replay tells it which reactions are its own.
	Author string
	Conn   string // unique connection id
	// Since, when Resume is set, is the id of the last event the client saw.
	Since  chat.ID
	Resume bool
}

// Join reads the room's history (or the entries after Since, when the
// stream still holds all of them), records the member as online, appends
// its join entry and attaches it to the room. The caller sends the
// greeting, then calls Start, and must call Leave.
func (h *Hub) Join(ctx context.Context, req JoinRequest) (*Session, Greeting, error) {
	var g Greeting
	if h.isClosed() {
		return nil, g, ErrClosed
	}
	s := &Session{h: h, member: chat.Member{Conn: req.Conn, Name: req.Name, UID: req.UID}, room: req.Room}
	group := ""
	if !h.opts.Direct {
		var err error
		if group, err = h.store.Group(ctx, req.Room); err != nil {
			return nil, g, fmt.Errorf("join %s: %w: %w", req.Room, ErrUnavailable, err)
		}
	}
	if req.Resume {
		events, last, err := h.store.After(ctx, req.Room, req.Since, h.opts.Batch)
		switch {
		case err == nil:
			g.Resumed, g.Boundary, s.cursor, s.pending = true, last, req.Since, events
		case !errors.Is(err, chat.ErrGap):
			return nil, g, fmt.Errorf("resume %s: %w: %w", req.Room, ErrUnavailable, err)
		}
	}
	if !g.Resumed {
		events, boundary, err := h.store.Recent(ctx, req.Room, h.opts.History)
		if err != nil {
			return nil, g, fmt.Errorf("replay %s: %w: %w", req.Room, ErrUnavailable, err)
		}
		if err := h.store.States(ctx, req.Room, events, req.UID, req.Author); err != nil {
			return nil, g, fmt.Errorf("replay %s: %w: %w", req.Room, ErrUnavailable, err)
		}
		g.Replay, g.Boundary, s.cursor = events, boundary, boundary
	}
	g.Cursor = s.cursor
	_, online, err := h.store.Join(ctx, req.Room, s.member, h.opts.PresenceTTL)
	if err != nil {
		return nil, g, fmt.Errorf("join %s: %w: %w", req.Room, ErrUnavailable, err)
	}
	g.Online = online
	if err := h.attach(s, g.Boundary, group); err != nil {
		_, _ = h.store.Leave(ctx, req.Room, s.member) // undo the join; the hub is closing anyway
		return nil, g, err
	}
	return s, g, nil
}

// Post appends e to its room's stream and returns its ID once Redis has
// stored it. Nobody needs to have joined the room on this replica: it is
// how a connection posts, and how a server-side publisher or bot will.
// e.From and e.Kind must be set; presence kinds are the hub's own. sender
// scopes e.Nonce: posting the same (room, sender, nonce) again, from any
// replica, within the store's dedupe window appends nothing and returns
// the first entry's ID with Duplicate set. A bad event fails with a
// *chat.Error and appends nothing; a storage failure wraps ErrUnavailable.
func (h *Hub) Post(ctx context.Context, e chat.Event, sender string) (chat.Ack, error) {
	switch {
	case !chat.ValidRoom(e.Room):
		bad := chat.BadRoom()
		bad.Nonce = e.Nonce
		return chat.Ack{}, bad
	case e.Kind == "" || e.Kind == chat.KindJoin || e.Kind == chat.KindLeave:
		return chat.Ack{}, &chat.Error{Code: chat.CodeBadRequest, Message: "not a kind of entry that can be posted", Nonce: e.Nonce}
	case e.Kind == chat.KindMessage && strings.TrimSpace(e.Text) == "":
		return chat.Ack{}, &chat.Error{Code: chat.CodeBadRequest, Message: "text is empty", Nonce: e.Nonce}
	case e.From == "":
		return chat.Ack{}, &chat.Error{Code: chat.CodeBadName, Message: "the sender's name is empty", Nonce: e.Nonce}
	}
	if cerr := chat.CheckAttrs(e.Attrs); cerr != nil {
		cerr.Nonce = e.Nonce
		return chat.Ack{}, cerr
	}
	start := time.Now()
	ack, err := h.store.Append(ctx, e, sender)
	m := h.opts.Metrics
	if err != nil {
		m.RedisErrors.WithLabelValues("append").Inc()
		return chat.Ack{}, fmt.Errorf("post to %s: %w: %w", e.Room, ErrUnavailable, err)
	}
	if ack.Duplicate {
		m.MessagesDeduplicated.Inc()
		return ack, nil
	}
	m.MessagesAppended.Inc()
	m.AppendSeconds.Observe(metrics.Since(start))
	return ack, nil
}

// Amend applies an edit, a delete or a reaction (the store's Amend) and
// appends the entry that records it. A refusal is a *chat.Error and
// changes nothing; a storage failure wraps ErrUnavailable.
func (h *Hub) Amend(ctx context.Context, a chat.Amendment) (chat.Ack, error) {
	if !chat.ValidRoom(a.Event.Room) {
		return chat.Ack{}, chat.BadRoom()
	}
	start := time.Now()
	ack, err := h.store.Amend(ctx, a)
	m := h.opts.Metrics
	var ce *chat.Error
	switch {
	case errors.As(err, &ce):
		return chat.Ack{}, err
	case err != nil:
		m.RedisErrors.WithLabelValues("append").Inc()
		return chat.Ack{}, fmt.Errorf("amend in %s: %w: %w", a.Event.Room, ErrUnavailable, err)
	case !ack.Duplicate:
		m.MessagesAppended.Inc()
		m.AppendSeconds.Observe(metrics.Since(start))
	}
	return ack, nil
}

func (h *Hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// attach registers the session with its room, starting the room if needed
// (in the store group given).
func (h *Hub) attach(s *Session, boundary chat.ID, group string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	r := h.rooms[s.room]
	if r == nil {
		r = newRoom(h, s.room, boundary)
		h.rooms[s.room] = r
		r.start(group)
	}
	if r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
	r.members[s.member.Conn] = s.member
	s.r = r
	return nil
}

// detach unregisters the session; the room stops IdleTimeout after its last
// session leaves, unless another joins first.
func (h *Hub) detach(s *Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := s.r
	delete(r.members, s.member.Conn)
	if len(r.members) > 0 || h.rooms[r.name] != r {
		return
	}
	r.idle = time.AfterFunc(h.opts.IdleTimeout, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(r.members) == 0 && h.rooms[r.name] == r {
			delete(h.rooms, r.name)
			r.stop()
		}
	})
}
