package hub

import (
	"context"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/streamchat/streamchat/pkg/chat"
)

// Entry is a stream entry as this replica delivers it: the event and its
// live payload (chat.EncodeEvent), encoded once per replica and shared by
// every connection. Payload must not be modified. How a payload travels
// is the Follower's business.
type Entry struct {
	Event   chat.Event
	Payload []byte
}

// ID is the entry's stream ID.
func (e *Entry) ID() chat.ID { return e.Event.ID }

func encode(events []chat.Event) []Entry {
	entries := make([]Entry, len(events))
	for i, e := range events {
		entries[i] = Entry{Event: e, Payload: chat.EncodeEvent(e, false)}
	}
	return entries
}

// payloadsOf appends the payloads of entries to dst.
func payloadsOf(dst [][]byte, entries []Entry) [][]byte {
	for i := range entries {
		dst = append(dst, entries[i].Payload)
	}
	return dst
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

	g *group // shared mode: the read this room's entries come from

	mu      sync.RWMutex
	ring    []Entry // circular window of the newest entries
	head    int
	n       int
	base    chat.ID // the window holds every entry after base
	last    chat.ID // newest entry read by the tailer
	wake    chan struct{}
	stopped bool
	// followers are the sessions the tailer hands new entries to; each
	// knows its index (Session.follow). The tailer alone calls TryWrite, so
	// while a session follows, the tailer owns its cursor.
	followers []*Session

	offering []*Session // the tailer's copy of followers for one batch
	payloads [][]byte   // the tailer's payloads of one batch, shared by its followers
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
	return r
}

// start starts the room's presence goroutine and, in shared mode, adds it
// to a read of its store group. Called with the hub's mutex held.
func (r *room) start(group string) {
	r.h.wg.Add(1)
	go func() {
		defer r.h.wg.Done()
		r.presence()
	}()
	if r.tailing {
		// The window grows to Window as entries come: a quiet room (most
		// direct-message rooms) never holds the memory of a busy one.
		r.ring = make([]Entry, min(r.h.opts.Window, initialWindow))
		r.h.addRoom(r, group)
	}
}

// stop ends the room: it leaves its read, and its followers are woken and
// see ErrClosed. Called with the hub's mutex held.
func (r *room) stop() {
	if r.idle != nil {
		r.idle.Stop()
	}
	r.cancel()
	if r.g != nil {
		r.g.remove(r)
	}
	r.release()
}

// initialWindow is the window a room starts with.
const initialWindow = 16

// grow doubles the window, up to Window, keeping its entries in order.
// Called with r.mu held.
func (r *room) grow() {
	size := len(r.ring)
	next := make([]Entry, min(2*size, r.h.opts.Window))
	for i := range r.n {
		next[i] = r.ring[(r.head+i)%size]
	}
	r.ring, r.head = next, 0
}

// push adds a batch to the window and hands it to the followers: each takes
// it straight from here when its socket has room, which costs no goroutine
// and no wake-up. A follower that does not take all of it, or that missed
// an earlier batch, stops following and is woken to go on by itself.
func (r *room) push(entries []Entry) {
	r.mu.Lock()
	prev := r.last
	size := len(r.ring)
	for _, e := range entries {
		if r.n == size && size < r.h.opts.Window {
			r.grow()
			size = len(r.ring)
		}
		if r.n == size {
			r.base = r.ring[r.head].ID()
			r.ring[r.head] = Entry{}
			r.head = (r.head + 1) % size
			r.n--
		}
		r.ring[(r.head+r.n)%size] = e
		r.n++
	}
	r.last = entries[len(entries)-1].ID()
	close(r.wake)
	r.wake = make(chan struct{})
	// Outside the lock: a follower may join or leave meanwhile, and the
	// writes must not hold up readers of the window.
	fs := append(r.offering[:0], r.followers...)
	r.mu.Unlock()

	payloads := payloadsOf(r.payloads[:0], entries)
	wake := offerAll(fs, prev, entries, payloads)
	clear(fs) // hold no session or payload past its batch
	r.offering = fs[:0]
	clear(payloads)
	if cap(payloads) > 8 {
		payloads = nil
	}
	r.payloads = payloads[:0]
	r.wakeAll(wake)
}

// wakeAll takes the sessions that did not take all they were offered off
// the followers and wakes them to go on by themselves.
func (r *room) wakeAll(wake []*Session) {
	if len(wake) == 0 {
		return
	}
	r.mu.Lock()
	for i, s := range wake {
		if !r.unfollow(s) {
			wake[i] = nil // it left meanwhile
		}
	}
	r.mu.Unlock()
	for _, s := range wake {
		if s != nil {
			s.wake()
		}
	}
}

// notify hands a frame that is not an entry (a typing notice) to every
// follower but the connection conn and the other connections of its user
// uid (when signed in), as far as each takes it without
// waiting: a connection that is behind, or whose socket is full, misses
// it, which is right for news that is stale in seconds. It moves no
// cursor. One that took only part of it is woken to send the rest.
func (r *room) notify(frame []byte, conn, uid string) {
	r.mu.Lock()
	fs := append(r.offering[:0], r.followers...)
	r.mu.Unlock()
	one := [][]byte{frame}
	var wake []*Session
	for _, s := range fs {
		if s.member.Conn == conn || (uid != "" && s.member.UID == uid) {
			continue
		}
		if n, whole := s.f.TryWrite(one); n > 0 && !whole {
			wake = append(wake, s)
		}
	}
	clear(fs)
	r.offering = fs[:0]
	r.wakeAll(wake)
}

// offerChunk is how many followers one goroutine offers a batch to: a large
// room's fan-out spreads over the cores, a small one costs no goroutine.
const offerChunk = 256

// offerAll offers the batch that follows prev (entries, and their payloads)
// to every follower in fs and returns those that must be woken.
func offerAll(fs []*Session, prev chat.ID, entries []Entry, payloads [][]byte) []*Session {
	if len(fs) <= offerChunk {
		return offerEach(nil, fs, prev, entries, payloads)
	}
	chunks := (len(fs) + offerChunk - 1) / offerChunk
	wakes := make([][]*Session, chunks)
	var wg sync.WaitGroup
	for k := 1; k < chunks; k++ {
		part := fs[k*offerChunk : min((k+1)*offerChunk, len(fs))]
		wg.Go(func() { wakes[k] = offerEach(nil, part, prev, entries, payloads) })
	}
	wakes[0] = offerEach(nil, fs[:offerChunk], prev, entries, payloads)
	wg.Wait()
	var wake []*Session
	for _, w := range wakes {
		wake = append(wake, w...)
	}
	return wake
}

// offerEach offers each follower the entries after its cursor and appends
// to wake those that did not take them all.
func offerEach(wake, fs []*Session, prev chat.ID, entries []Entry, payloads [][]byte) []*Session {
	for _, s := range fs {
		if s.cursor.Less(prev) {
			// It is behind this batch: what lies between is not in it.
			wake = append(wake, s)
			continue
		}
		i := 0
		for i < len(entries) && !s.cursor.Less(entries[i].ID()) {
			i++ // it read these from Redis before the tailer did
		}
		if i == len(entries) {
			continue
		}
		n, whole := s.f.TryWrite(payloads[i:])
		if n > 0 {
			s.cursor = entries[i+n-1].ID()
			s.delivered(entries[i : i+n])
		}
		if !whole || i+n < len(entries) {
			wake = append(wake, s)
		}
	}
	return wake
}

// follow registers s for the next batch, or wakes it at once when a batch
// came after its last look (seen) or the room is stopping.
func (r *room) follow(s *Session, seen chat.ID) {
	r.mu.Lock()
	if r.stopped || seen.Less(r.last) {
		r.mu.Unlock()
		s.wake()
		return
	}
	r.followers = append(r.followers, s)
	s.follow = len(r.followers)
	r.mu.Unlock()
}

// unfollow removes s from the followers and reports whether it was one.
// Called with r.mu held.
func (r *room) unfollow(s *Session) bool {
	i := s.follow - 1
	if i < 0 {
		return false
	}
	last := len(r.followers) - 1
	r.followers[i] = r.followers[last]
	r.followers[i].follow = i + 1
	r.followers[last] = nil
	r.followers = r.followers[:last]
	s.follow = 0
	return true
}

// forget drops a session that leaves from the followers.
func (r *room) forget(s *Session) {
	r.mu.Lock()
	r.unfollow(s)
	r.mu.Unlock()
}

// release ends following when the room stops: every follower is woken
// (and sees ErrClosed), and later ones are woken at once.
func (r *room) release() {
	r.mu.Lock()
	r.stopped = true
	fs := r.followers
	for _, s := range fs {
		s.follow = 0
	}
	r.followers = nil
	r.mu.Unlock()
	for _, s := range fs {
		s.wake()
	}
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
	i := sort.Search(r.n, func(i int) bool { return cursor.Less(r.ring[(r.head+i)%size].ID()) })
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
