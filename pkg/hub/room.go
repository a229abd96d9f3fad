package hub

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/streamchat/streamchat/pkg/chat"
)

// Entry is a stream entry with its live wire frame, encoded once per replica
// and shared by every connection; Frame must not be modified.
type Entry struct {
	ID    chat.ID
	Frame []byte
}

func encode(events []chat.Event) []Entry {
	entries := make([]Entry, len(events))
	for i, e := range events {
		entries[i] = Entry{ID: e.ID, Frame: chat.EncodeEvent(e, false)}
	}
	return entries
}

// room is one active room on this replica. Its members and idle timer are
// guarded by the hub's mutex; its window by its own.
type room struct {
	h       *Hub
	name    string
	log     *zap.Logger
	tailing bool // shared mode: a tailer feeds the window

	members map[string]chat.Member
	idle    *time.Timer

	ctx    context.Context
	cancel context.CancelFunc

	lastRead atomic.Int64 // unix nanoseconds of the last completed XREAD

	mu      sync.RWMutex
	ring    []Entry // circular window of the newest entries
	head    int
	n       int
	base    chat.ID // the window holds every entry after base
	last    chat.ID // newest entry read by the tailer
	wake    chan struct{}
	waiters map[*Session]func() // notified once, on the next batch
	stopped bool
}

func newRoom(h *Hub, name string, from chat.ID) *room {
	ctx, cancel := context.WithCancel(h.ctx)
	r := &room{
		h:       h,
		name:    name,
		log:     h.log.With(zap.String("room", name)),
		tailing: !h.opts.Direct,
		members: make(map[string]chat.Member),
		ctx:     ctx,
		cancel:  cancel,
		base:    from,
		last:    from,
		wake:    make(chan struct{}),
	}
	r.lastRead.Store(time.Now().UnixNano())
	return r
}

func (r *room) start() {
	r.h.wg.Add(1)
	go func() {
		defer r.h.wg.Done()
		r.presence()
	}()
	if r.tailing {
		r.ring = make([]Entry, r.h.opts.Window)
		r.h.wg.Add(1)
		go func() {
			defer r.h.wg.Done()
			r.tail()
		}()
	}
}

// stop ends the room's goroutines and tells its waiting sessions, which
// then see ErrClosed. Called with the hub's mutex held.
func (r *room) stop() {
	if r.idle != nil {
		r.idle.Stop()
	}
	r.cancel()
	r.mu.Lock()
	r.stopped = true
	waiters := r.waiters
	r.waiters = nil
	r.mu.Unlock()
	for _, fn := range waiters {
		fn()
	}
}

// tail reads the room's stream from the last entry it has into the window,
// and wakes every waiting connection once per batch.
func (r *room) tail() {
	r.h.opts.Metrics.Tailers.Inc()
	defer r.h.opts.Metrics.Tailers.Dec()
	var failing bool
	backoff := newBackoff()
	for r.ctx.Err() == nil {
		events, err := r.h.store.Read(r.ctx, r.name, r.last, r.h.opts.Batch, r.h.opts.Block)
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			r.h.opts.Metrics.RedisErrors.WithLabelValues("xread").Inc()
			if !failing {
				r.log.Warn("stream tail failing; retrying", zap.Error(err))
				failing = true
			}
			backoff.wait(r.ctx)
			continue
		}
		if failing {
			r.log.Info("stream tail recovered")
			failing = false
		}
		backoff.reset()
		r.lastRead.Store(time.Now().UnixNano())
		if len(events) > 0 {
			r.push(encode(events))
		}
	}
}

func (r *room) push(entries []Entry) {
	r.mu.Lock()
	size := len(r.ring)
	for _, e := range entries {
		if r.n == size {
			r.base = r.ring[r.head].ID
			r.ring[r.head] = Entry{}
			r.head = (r.head + 1) % size
			r.n--
		}
		r.ring[(r.head+r.n)%size] = e
		r.n++
	}
	r.last = entries[len(entries)-1].ID
	close(r.wake)
	r.wake = make(chan struct{})
	waiters := r.waiters
	r.waiters = nil
	r.mu.Unlock()
	// Outside the lock: a waiter may look at the window at once.
	for _, fn := range waiters {
		fn()
	}
}

// notify calls fn once when the window moves past seen: at once if it
// already has.
func (r *room) notify(s *Session, seen chat.ID, fn func()) {
	r.mu.Lock()
	if r.stopped || seen.Less(r.last) {
		r.mu.Unlock()
		fn()
		return
	}
	if r.waiters == nil {
		r.waiters = make(map[*Session]func())
	}
	r.waiters[s] = fn
	r.mu.Unlock()
}

// forget drops a session's pending notification.
func (r *room) forget(s *Session) {
	r.mu.Lock()
	delete(r.waiters, s)
	r.mu.Unlock()
}

// after appends to dst up to max window entries after cursor, and returns
// the channel that is closed on the next batch. Taking both under one lock
// means no batch can slip in unnoticed between a look and a wait. behind
// reports that cursor is older than the window: the caller must read from
// Redis, and wait on wake if Redis has nothing newer yet.
func (r *room) after(cursor chat.ID, max int, dst []Entry) (entries []Entry, wake <-chan struct{}, last chat.ID, behind bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if cursor.Less(r.base) {
		return dst, r.wake, r.last, true
	}
	size := len(r.ring)
	i := sort.Search(r.n, func(i int) bool { return cursor.Less(r.ring[(r.head+i)%size].ID) })
	for ; i < r.n && len(dst) < max; i++ {
		dst = append(dst, r.ring[(r.head+i)%size])
	}
	return dst, r.wake, r.last, false
}

// presence keeps this replica's members of the room online and reaps the
// members of replicas that died.
func (r *room) presence() {
	period := r.h.opts.PresenceTTL / 3
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		r.h.mu.Lock()
		members := make([]chat.Member, 0, len(r.members))
		for _, m := range r.members {
			members = append(members, m)
		}
		r.h.mu.Unlock()
		ctx, cancel := context.WithTimeout(r.ctx, period)
		reaped, err := r.h.store.Refresh(ctx, r.name, members, r.h.opts.PresenceTTL)
		cancel()
		switch {
		case err != nil && r.ctx.Err() == nil:
			r.h.opts.Metrics.RedisErrors.WithLabelValues("presence").Inc()
			r.log.Warn("presence refresh failed", zap.Error(err))
		case reaped > 0:
			r.log.Info("reaped members of a vanished replica", zap.Int("count", reaped))
		}
	}
}

// backoff is a capped exponential delay for retrying Redis.
type backoff struct{ d time.Duration }

const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 2 * time.Second
)

func newBackoff() backoff { return backoff{d: backoffMin} }

func (b *backoff) reset() { b.d = backoffMin }

// wait sleeps for the current delay or until ctx ends, then doubles it.
func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.d = min(2*b.d, backoffMax)
}
