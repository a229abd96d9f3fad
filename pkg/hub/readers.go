package hub

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/streamchat/streamchat/pkg/chat"
)

// Bells is a subscription to the bells of many rooms (store.Bells): every
// append to a room's stream rings its bell.
type Bells interface {
	Subscribe(ctx context.Context, rooms ...string) error
	Unsubscribe(ctx context.Context, rooms ...string) error
	// Receive waits for a bell, or a confirmed subscription (a bell
	// without an entry).
	Receive(ctx context.Context) (chat.Bell, error)
	Close() error
}

// OpenWith adapts a constructor of a concrete subscription
// (store.Store.NewBells) to Options.OpenBells.
func OpenWith[B Bells](open func(ctx context.Context, room string) (B, error)) func(ctx context.Context, room string) (Bells, error) {
	return func(ctx context.Context, room string) (Bells, error) {
		b, err := open(ctx, room)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
}

// group reads the active rooms of one store group (one Redis node) in
// shared mode. One subscription carries the bells of all its rooms; the
// loop reads, without blocking, the rooms that rang since its last read,
// all in one XREAD, and pushes each room's entries into that room's
// window. Every block interval it reads all its rooms, which catches any
// bell lost while the subscription was reconnecting and proves the reads
// work (Healthy). One loop reads a room for the room's whole life, so its
// cursor (room.last) has one writer: no entry is read twice or skipped.
type group struct {
	h   *Hub
	key string
	log *zap.Logger

	mu      sync.Mutex
	rooms   map[string]*room
	rung    map[string]bool        // rooms to read on the next pass
	carried map[string][]chat.Bell // bells with their entries, per room, in order
	notices map[string][]chat.Bell // notices (typing) to hand out on the next pass
	pending map[string]bool        // subscription changes to make: true subscribes
	signal  chan struct{}          // cap 1: rung or pending changed
	bells   Bells                  // the subscription, once open

	lastRead atomic.Int64 // unix nanoseconds of the last completed read
}

// addRoom puts r in the group of its store group, starting the group if
// needed. Called with h.mu held.
func (h *Hub) addRoom(r *room, key string) {
	g := h.groups[key]
	if g == nil {
		g = &group{
			h: h, key: key, log: h.log.With(zap.String("group", key)),
			rooms: map[string]*room{}, rung: map[string]bool{}, carried: map[string][]chat.Bell{}, notices: map[string][]chat.Bell{}, pending: map[string]bool{},
			signal: make(chan struct{}, 1),
		}
		g.lastRead.Store(time.Now().UnixNano())
		h.groups[key] = g
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			g.run()
		}()
	}
	r.g = g
	g.mu.Lock()
	g.rooms[r.name] = r
	g.pending[r.name] = true
	g.rung[r.name] = true // read once now: entries may predate the bell
	g.mu.Unlock()
	g.poke()
}

// remove takes a stopped room out of its group.
func (g *group) remove(r *room) {
	g.mu.Lock()
	if g.rooms[r.name] == r {
		delete(g.rooms, r.name)
		delete(g.rung, r.name)
		delete(g.carried, r.name)
		delete(g.notices, r.name)
		g.pending[r.name] = false
	}
	g.mu.Unlock()
	g.poke()
}

func (g *group) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.rooms)
}

func (g *group) poke() {
	select {
	case g.signal <- struct{}{}:
	default:
	}
}

// ring marks a room to be read.
func (g *group) ring(room string) {
	g.mu.Lock()
	if g.rooms[room] != nil {
		g.rung[room] = true
	}
	g.mu.Unlock()
	g.poke()
}

// maxCarried bounds the entries a room's bells hold for the loop: past it
// (the loop is slow, or retrying a failed read) they are dropped and the
// room is read from its cursor instead.
const maxCarried = 256

// carry keeps a bell that brought its entry, for the loop to take.
func (g *group) carry(b chat.Bell) {
	g.mu.Lock()
	if g.rooms[b.Room] != nil {
		if len(g.carried[b.Room]) < maxCarried {
			g.carried[b.Room] = append(g.carried[b.Room], b)
		} else {
			delete(g.carried, b.Room)
			g.rung[b.Room] = true
		}
	}
	g.mu.Unlock()
	g.poke()
}

// maxNotices bounds the notices a room holds for the loop; past it they
// are dropped: a notice is worth only what it says now.
const maxNotices = 256

// notice keeps a notice for the loop to hand out: the loop alone writes
// to the followers.
func (g *group) notice(b chat.Bell) {
	g.mu.Lock()
	if g.rooms[b.Room] != nil && len(g.notices[b.Room]) < maxNotices {
		g.notices[b.Room] = append(g.notices[b.Room], b)
	}
	g.mu.Unlock()
	g.poke()
}

// carriedRoom is a room's bells with entries, taken by one pass.
type carriedRoom struct {
	r     *room
	bells []chat.Bell
}

// take pushes the entries the room's bells brought, as long as each follows
// the one before it: the first must follow the room's cursor. It reports
// false at the first that does not (a bell was lost, or an entry came
// without one): the room must then be read from its cursor.
func (c carriedRoom) take() bool {
	r := c.r
	r.mu.RLock()
	cursor := r.last
	r.mu.RUnlock()
	var events []chat.Event
	ok := true
	for _, b := range c.bells {
		if !cursor.Less(b.Entry.ID) {
			continue // read already
		}
		if b.Prev != cursor {
			ok = false
			break
		}
		events = append(events, b.Entry)
		cursor = b.Entry.ID
	}
	if len(events) > 0 {
		r.push(encode(events))
	}
	return ok
}

// run is the group's loop, until the hub stops.
func (g *group) run() {
	h := g.h
	h.opts.Metrics.Tailers.Inc()
	defer h.opts.Metrics.Tailers.Dec()
	var (
		failing  bool
		rooms    []*room
		names    []string
		cursors  []chat.ID
		direct   []carriedRoom
		notices  []carriedRoom
		started  time.Time // of the last read
		received sync.WaitGroup
	)
	backoff := newBackoff()
	sweep := time.NewTicker(h.opts.Block)
	defer sweep.Stop()
	defer func() {
		g.mu.Lock()
		b := g.bells
		g.bells = nil
		g.mu.Unlock()
		if b != nil {
			_ = b.Close() // ends Receive
		}
		received.Wait()
	}()
	all := false
	for h.ctx.Err() == nil {
		if !all {
			select {
			case <-h.ctx.Done():
				return
			case <-g.signal:
			case <-sweep.C:
				all = true
			}
		}
		if wait := h.opts.ReadInterval - time.Since(started); wait > 0 {
			select {
			case <-h.ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if err := g.subscribe(&received); err != nil {
			if h.ctx.Err() != nil {
				return
			}
			g.fail(&failing, err)
			backoff.wait(h.ctx)
			g.poke()
			continue
		}

		g.mu.Lock()
		rooms = rooms[:0]
		if all {
			for _, r := range g.rooms {
				rooms = append(rooms, r)
			}
		} else {
			// Only the rooms that rang: a pass costs what has news, not
			// what the replica holds.
			for name := range g.rung {
				if r := g.rooms[name]; r != nil {
					rooms = append(rooms, r)
				}
			}
		}
		direct = direct[:0]
		for name, bells := range g.carried {
			// A room read on this pass gets these entries from the read.
			if r := g.rooms[name]; r != nil && !all && !g.rung[name] {
				direct = append(direct, carriedRoom{r, bells})
			}
		}
		notices = notices[:0]
		for name, bells := range g.notices {
			if r := g.rooms[name]; r != nil {
				notices = append(notices, carriedRoom{r, bells})
			}
		}
		clear(g.notices)
		clear(g.carried)
		clear(g.rung)
		empty := len(g.rooms) == 0
		g.mu.Unlock()
		if empty && all && g.retire() {
			return
		}
		for _, c := range notices {
			for _, b := range c.bells {
				c.r.notify(b.Notice, b.Conn, b.UID)
			}
		}
		clear(notices)
		for _, c := range direct {
			if !c.take() {
				rooms = append(rooms, c.r)
			}
		}
		clear(direct)
		names, cursors = names[:0], cursors[:0]
		for _, r := range rooms {
			r.mu.RLock()
			names, cursors = append(names, r.name), append(cursors, r.last)
			r.mu.RUnlock()
		}
		started = time.Now()
		sctx, cancel := context.WithTimeout(h.ctx, h.opts.Block)
		batches, err := h.store.ReadRooms(sctx, names, cursors, h.opts.Batch)
		cancel()
		if err != nil {
			if h.ctx.Err() != nil {
				return
			}
			h.opts.Metrics.RedisErrors.WithLabelValues("xread").Inc()
			g.fail(&failing, err)
			for _, r := range rooms {
				g.ring(r.name) // read them again
			}
			clear(rooms)
			backoff.wait(h.ctx)
			continue
		}
		if failing {
			g.log.Info("stream reads recovered", zap.Int("rooms", g.size()))
			failing = false
		}
		backoff.reset()
		g.lastRead.Store(time.Now().UnixNano())
		all = false
		for i, events := range batches {
			if len(events) == 0 {
				continue
			}
			rooms[i].push(encode(events))
			if len(events) == h.opts.Batch {
				g.ring(rooms[i].name) // more after this batch
			}
		}
		clear(rooms) // hold no room past its read
	}
}

// subscribe makes the subscription changes pending, opening the
// subscription (and its receiving goroutine) with the first room.
func (g *group) subscribe(received *sync.WaitGroup) error {
	h := g.h
	g.mu.Lock()
	if len(g.pending) == 0 {
		g.mu.Unlock()
		return nil
	}
	var add, drop []string
	for name, on := range g.pending {
		if on {
			add = append(add, name)
		} else {
			drop = append(drop, name)
		}
	}
	clear(g.pending)
	b := g.bells
	g.mu.Unlock()
	requeue := func(names []string, on bool) {
		g.mu.Lock()
		for _, n := range names {
			if _, later := g.pending[n]; !later {
				g.pending[n] = on
			}
		}
		g.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(h.ctx, h.opts.Block)
	defer cancel()
	if b == nil {
		if len(add) == 0 {
			return nil // nothing was subscribed yet
		}
		var err error
		if b, err = h.opts.OpenBells(ctx, add[0]); err != nil {
			requeue(add, true)
			return err
		}
		g.mu.Lock()
		g.bells = b
		g.mu.Unlock()
		received.Go(func() { g.receive(b) })
		add = add[1:]
	}
	if len(drop) > 0 {
		if err := b.Unsubscribe(ctx, drop...); err != nil {
			requeue(drop, false)
			requeue(add, true)
			return err
		}
	}
	if len(add) > 0 {
		if err := b.Subscribe(ctx, add...); err != nil {
			requeue(add, true)
			return err
		}
	}
	return nil
}

// receive turns bells into reads until the subscription is closed. A
// failing subscription is retried by go-redis, which subscribes again;
// the confirmations then ring every room.
func (g *group) receive(b Bells) {
	backoff := newBackoff()
	for {
		bell, err := b.Receive(g.h.ctx)
		if err != nil {
			g.mu.Lock()
			closed := g.bells != b
			g.mu.Unlock()
			if closed || g.h.ctx.Err() != nil {
				return
			}
			backoff.wait(g.h.ctx)
			continue
		}
		backoff.reset()
		switch {
		case bell.Notice != nil:
			g.notice(bell)
		case bell.Carried:
			g.carry(bell)
		default:
			g.ring(bell.Room)
		}
	}
}

// retire removes the group from the hub if it still has no rooms.
func (g *group) retire() bool {
	h := g.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if g.size() > 0 || h.groups[g.key] != g {
		return false
	}
	delete(h.groups, g.key)
	return true
}

func (g *group) fail(failing *bool, err error) {
	if !*failing {
		g.log.Warn("stream reads failing; retrying", zap.Error(err))
		*failing = true
	}
}
