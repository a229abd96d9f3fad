package hub

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/streamchat/streamchat/pkg/chat"
)

// StreamReader is one connection that waits for many rooms' streams at
// once (store.Reader): XREAD BLOCK over all of them.
type StreamReader interface {
	// Read waits up to block for entries after each room's cursor and
	// returns up to count of each room's, indexed like rooms.
	Read(ctx context.Context, rooms []string, after []chat.ID, count int, block time.Duration) ([][]chat.Event, error)
	// Wake ends the current wait early, so the next Read sees new rooms.
	Wake(ctx context.Context) error
	// CanWake reports whether Wake works; without it waits are kept short.
	CanWake() bool
	Close() error
}

// OpenWith adapts a constructor of a concrete reader (store.Store.NewReader)
// to Options.OpenReader.
func OpenWith[R StreamReader](open func(ctx context.Context, room string) (R, error)) func(ctx context.Context, room string) (StreamReader, error) {
	return func(ctx context.Context, room string) (StreamReader, error) {
		r, err := open(ctx, room)
		if err != nil {
			return nil, err
		}
		return r, nil
	}
}

// shortBlock is the wait of a reader that cannot be woken: how late, at
// most, a room that joins its read is first read.
const shortBlock = 100 * time.Millisecond

// group is one blocking connection's worth of rooms: its loop reads every
// room of the group with one XREAD and pushes each room's entries into
// that room's window. A room stays in the group it was added to for its
// whole life, so exactly one loop ever reads it and its cursor (room.last)
// has one writer: no entry can be read twice or skipped when rooms come
// and go. Groups of a store group (one node, or one cluster slot) are
// filled evenly: a new room goes to the group with the fewest.
type group struct {
	h   *Hub
	key string // the store's group: every room here can share one XREAD
	log *zap.Logger

	mu      sync.Mutex
	rooms   []*room
	changed bool          // rooms came since the read in flight began
	reading bool          // a read that Wake may end is in flight
	kick    chan struct{} // rooms came while the loop had none
	reader  StreamReader  // the loop's open connection, for Wake

	lastRead atomic.Int64 // unix nanoseconds of the last completed read
}

// addRoom puts r in the least filled group of its store group, starting a
// group when every one is full and fewer than Readers run. Called with
// h.mu held.
func (h *Hub) addRoom(r *room, key string) {
	gs := h.groups[key]
	var g *group
	for _, c := range gs {
		if g == nil || c.size() < g.size() {
			g = c
		}
	}
	if g == nil || (g.size() > 0 && len(gs) < h.opts.Readers) {
		g = &group{h: h, key: key, log: h.log.With(zap.String("group", key)), kick: make(chan struct{}, 1)}
		g.lastRead.Store(time.Now().UnixNano())
		h.groups[key] = append(gs, g)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			g.run()
		}()
	}
	r.g = g
	g.add(r)
}

func (g *group) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.rooms)
}

// add includes r from the next read on; a read in flight is woken so that
// r's first entries wait for no other room's traffic.
func (g *group) add(r *room) {
	g.mu.Lock()
	g.rooms = append(g.rooms, r)
	g.changed = true
	wake := g.reading && g.reader != nil && g.reader.CanWake()
	if wake {
		g.reading = false // one wake per read is enough
	}
	reader := g.reader
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
	if wake {
		// Off the caller's path (it holds the hub's lock): one short
		// command on the command pool.
		go func() {
			ctx, cancel := context.WithTimeout(g.h.ctx, time.Second)
			defer cancel()
			if err := reader.Wake(ctx); err != nil && ctx.Err() == nil {
				g.log.Debug("wake of a stream read failed; the room waits for the read's end", zap.Error(err))
			}
		}()
	}
}

// remove takes a stopped room out of the group; its entries are no longer
// read from the next read on.
func (g *group) remove(r *room) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, x := range g.rooms {
		if x == r {
			last := len(g.rooms) - 1
			g.rooms[i] = g.rooms[last]
			g.rooms[last] = nil
			g.rooms = g.rooms[:last]
			return
		}
	}
}

// run reads the group's rooms until the hub stops. The connection is
// opened when the group first has rooms and kept while it runs; a failed
// read closes it and opens a new one after a backoff, as go-redis would.
func (g *group) run() {
	h := g.h
	h.opts.Metrics.Tailers.Inc()
	defer h.opts.Metrics.Tailers.Dec()
	var (
		reader  StreamReader
		failing bool
		rooms   []*room
		names   []string
		cursors []chat.ID
		started time.Time // of the last read
	)
	backoff := newBackoff()
	defer func() {
		if reader != nil {
			_ = reader.Close()
		}
	}()
	for h.ctx.Err() == nil {
		if wait := h.opts.ReadInterval - time.Since(started); wait > 0 {
			select {
			case <-h.ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		g.mu.Lock()
		rooms = append(rooms[:0], g.rooms...)
		g.changed = false
		g.mu.Unlock()
		if len(rooms) == 0 {
			// No rooms: give the connection back, and end the group when
			// none came for a block interval.
			if reader != nil {
				g.mu.Lock()
				g.reader = nil
				g.mu.Unlock()
				_ = reader.Close()
				reader = nil
			}
			select {
			case <-h.ctx.Done():
				return
			case <-g.kick:
				continue
			case <-time.After(h.opts.Block):
			}
			if g.retire() {
				return
			}
			continue
		}
		if reader == nil {
			var err error
			reader, err = h.opts.OpenReader(h.ctx, rooms[0].name)
			if err != nil {
				g.fail(&failing, err)
				backoff.wait(h.ctx)
				continue
			}
			g.mu.Lock()
			g.reader = reader
			g.mu.Unlock()
		}
		names, cursors = names[:0], cursors[:0]
		for _, r := range rooms {
			r.mu.RLock()
			names, cursors = append(names, r.name), append(cursors, r.last)
			r.mu.RUnlock()
		}
		block := h.opts.Block
		if !reader.CanWake() {
			block = min(block, shortBlock)
		}
		g.mu.Lock()
		g.reading = !g.changed
		if g.changed {
			block = -1 // a room came meanwhile: look, do not wait
		}
		g.mu.Unlock()
		started = time.Now()
		batches, err := reader.Read(h.ctx, names, cursors, h.opts.Batch, block)
		g.mu.Lock()
		g.reading = false
		g.mu.Unlock()
		if err != nil {
			if h.ctx.Err() != nil {
				return
			}
			h.opts.Metrics.RedisErrors.WithLabelValues("xread").Inc()
			g.fail(&failing, err)
			g.mu.Lock()
			g.reader = nil
			g.mu.Unlock()
			_ = reader.Close()
			reader = nil
			backoff.wait(h.ctx)
			continue
		}
		if failing {
			g.log.Info("stream reads recovered", zap.Int("rooms", len(rooms)))
			failing = false
		}
		backoff.reset()
		g.lastRead.Store(time.Now().UnixNano())
		for i, events := range batches {
			if len(events) > 0 {
				rooms[i].push(encode(events))
			}
		}
		clear(rooms) // hold no room past its read
	}
}

// retire removes the group from the hub if it still has no rooms.
func (g *group) retire() bool {
	h := g.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if g.size() > 0 {
		return false
	}
	gs := h.groups[g.key]
	for i, x := range gs {
		if x == g {
			gs = append(gs[:i], gs[i+1:]...)
			break
		}
	}
	if len(gs) == 0 {
		delete(h.groups, g.key)
	} else {
		h.groups[g.key] = gs
	}
	return true
}

func (g *group) fail(failing *bool, err error) {
	if !*failing {
		g.log.Warn("stream reads failing; retrying", zap.Error(err))
		*failing = true
	}
}
