package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/streamchat/streamchat/pkg/chat"
)

// A Follower is the sending half of one connection, as the hub drives it.
// While the connection keeps up, the room's tailer writes each batch to it
// with TryWrite, which costs no goroutine and no wake-up; when it falls
// short, the session's own catch-up goroutine writes with Write until it
// has caught up, and the tailer takes over again. So each connection has
// exactly one writer at a time, and a slow one delays only itself.
type Follower interface {
	// TryWrite sends payloads, in order, as far as the connection takes
	// them without waiting, and returns how many it took: one it began
	// counts, its rest goes out first on the next Write. whole reports that
	// all it took went out whole. It must not block and must not keep
	// payloads. Errors are the connection's own: it reports them as less
	// than all taken, and Write returns them.
	TryWrite(payloads [][]byte) (taken int, whole bool)
	// Write sends payloads in order, waiting for the connection as long as
	// its own write timeout allows; with none, it sends what TryWrite left.
	Write(payloads ...[]byte) error
}

// Greeting is what a connection is told when it joins.
type Greeting struct {
	// Resumed reports that the entries after JoinRequest.Since are all
	// still in the stream and Next delivers them; otherwise Replay holds
	// the recent history.
	Resumed bool
	// Replay is the history to send with "replay":true, oldest first.
	Replay []chat.Event
	// Boundary is the newest entry of the stream when the join read it.
	// Entries after it are live; when resuming, Next delivers the entries
	// up to it first, and the client is ready once it has them.
	Boundary chat.ID
	// Cursor is where the session starts: Since when resuming, else Boundary.
	Cursor chat.ID
	// Online is the people online when the member joined, one entry each.
	Online []chat.Member
}

// Session is one connection's membership of a room: its cursor and its
// delivery. Before Start the caller may read with Next (a resume's
// catch-up up to the greeting's boundary); from Start on, the hub alone
// moves the cursor and writes to the Follower. Leave ends it.
type Session struct {
	h      *Hub
	r      *room
	room   string
	member chat.Member

	cursor  chat.ID
	seen    chat.ID      // the room's newest entry at the last empty look
	pending []chat.Event // first page of a resume, already read
	buf     []Entry      // reused by next

	f     Follower
	onEnd func(error)
	ctx   context.Context // delivery's lifetime, from Start to Leave
	stop  context.CancelFunc

	// The catch-up goroutine runs only while the connection is behind the
	// room's tailer. Guarded by pumpMu.
	pumpMu      sync.Mutex
	pumpIdle    *sync.Cond
	pumpRunning bool
	pumpStopped bool
	payloads    [][]byte // the catch-up's scratch

	// follow is the session's index + 1 among the room's followers, 0
	// when not following; guarded by the room's mutex.
	follow int
}

// Next returns the entries after the session's cursor, oldest first, waiting
// until there is at least one, and advances the cursor past them. The slice
// is valid until the next call. Only before Start. It fails with ErrLagged
// when the entries after the cursor are gone from the stream, with
// ErrClosed when the hub closes, and with ctx's error when ctx ends. Redis
// failures are retried.
func (s *Session) Next(ctx context.Context) ([]Entry, error) {
	if s.h.opts.Direct && len(s.pending) == 0 {
		return s.nextDirect(ctx)
	}
	return s.next(ctx, true) // takes a resume's first page, in either mode
}

// Start hands the session's delivery to the hub: from the cursor on, every
// entry of the room is written to f, in order, each once, by the room's
// tailer while f keeps up and by the session's catch-up goroutine when it
// does not (in direct mode, always by the latter, reading Redis itself).
// onEnd is called once, from any goroutine, if delivery stops before
// Leave: ErrLagged, ErrClosed, or f's write error. Call Start once.
func (s *Session) Start(f Follower, onEnd func(error)) {
	s.f, s.onEnd = f, onEnd
	s.ctx, s.stop = context.WithCancel(s.r.ctx)
	s.pumpIdle = sync.NewCond(&s.pumpMu)
	s.wake()
}

// wake starts the catch-up goroutine unless it runs or the session is
// leaving. It never blocks.
func (s *Session) wake() {
	s.pumpMu.Lock()
	if s.pumpStopped || s.pumpRunning {
		s.pumpMu.Unlock()
		return
	}
	s.pumpRunning = true
	s.pumpMu.Unlock()
	go s.pump()
}

// pump sends what TryWrite left, then the entries after the cursor until
// none are ready, then follows the room again and ends.
func (s *Session) pump() {
	err := s.f.Write()
	for err == nil {
		var batch []Entry
		if s.h.opts.Direct {
			batch, err = s.nextDirect(s.ctx)
		} else {
			batch, err = s.next(s.ctx, false)
		}
		if err != nil || len(batch) == 0 {
			break
		}
		err = s.write(batch)
	}
	if err != nil && s.r.ctx.Err() != nil {
		err = ErrClosed
	}
	s.pumpMu.Lock()
	s.pumpRunning = false
	stopped := s.pumpStopped
	s.pumpIdle.Broadcast()
	s.pumpMu.Unlock()
	switch {
	case stopped:
	case err != nil:
		s.onEnd(err)
	default:
		s.r.follow(s, s.seen)
	}
}

// write sends a batch with Write and counts it.
func (s *Session) write(batch []Entry) error {
	payloads := payloadsOf(s.payloads[:0], batch)
	err := s.f.Write(payloads...)
	// Hold no payload between batches, and a catch-up's large slice not
	// at all.
	clear(payloads)
	if cap(payloads) > 8 {
		payloads = nil
	}
	s.payloads = payloads[:0]
	if err != nil {
		return err
	}
	s.delivered(batch)
	return nil
}

// delivered counts entries written to the connection.
func (s *Session) delivered(entries []Entry) {
	m := s.h.opts.Metrics
	m.Deliveries.Add(float64(len(entries)))
	now := time.Now()
	for i := range entries {
		m.DeliverySeconds.Observe(now.Sub(entries[i].Event.ID.Time()).Seconds())
	}
}

func (s *Session) takePending() []Entry {
	events := s.pending
	s.pending = nil
	return s.deliver(encode(events))
}

// next returns the entries after the cursor from the window, or from Redis
// when the cursor is older than the window. With wait unset it returns
// none when nothing is ready, noting what the room had (seen).
func (s *Session) next(ctx context.Context, wait bool) ([]Entry, error) {
	if len(s.pending) > 0 {
		return s.takePending(), nil
	}
	retry := newBackoff()
	for {
		if s.r.ctx.Err() != nil {
			return nil, ErrClosed
		}
		entries, wake, last, behind := s.r.after(s.cursor, s.h.opts.Batch, s.buf[:0])
		if behind {
			// Older than the window: this connection is slow or resuming.
			// Read from Redis; it never holds up the room.
			s.h.opts.Metrics.CatchUpReads.Inc()
			events, _, err := s.h.store.After(ctx, s.room, s.cursor, s.h.opts.Batch)
			switch {
			case errors.Is(err, chat.ErrGap):
				return nil, ErrLagged
			case err != nil:
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				s.h.opts.Metrics.RedisErrors.WithLabelValues("catchup").Inc()
				retry.wait(ctx)
				continue
			case len(events) > 0:
				return s.deliver(encode(events)), nil
			}
			// Nothing newer in Redis yet: wait for the tailer's next batch,
			// on the channel (or position) taken before the read.
		} else if len(entries) > 0 {
			return s.deliver(entries), nil
		}
		if !wait {
			s.seen = last
			s.releaseBuf() // nothing to send: the connection may idle now
			return nil, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.r.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// nextDirect is the literal design: this connection's own blocking read.
func (s *Session) nextDirect(ctx context.Context) ([]Entry, error) {
	retry := newBackoff()
	for {
		if s.r.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		events, err := s.h.store.Read(ctx, s.room, s.cursor, s.h.opts.Batch, s.h.opts.Block)
		if err != nil {
			if ctx.Err() == nil {
				s.h.opts.Metrics.RedisErrors.WithLabelValues("xread").Inc()
			}
			retry.wait(ctx)
			continue
		}
		retry.reset()
		if len(events) > 0 {
			return s.deliver(encode(events)), nil
		}
	}
}

// releaseBuf lets go of the last batch's entries, and of the buffer itself
// when a catch-up made it large.
func (s *Session) releaseBuf() {
	if cap(s.buf) > 8 {
		s.buf = nil
		return
	}
	clear(s.buf)
	s.buf = s.buf[:0]
}

func (s *Session) deliver(entries []Entry) []Entry {
	s.buf = entries
	s.cursor = entries[len(entries)-1].ID()
	return entries
}

// Leave ends the session's delivery, waiting for its catch-up goroutine,
// detaches it from its room and appends its leave entry (unless another
// replica already reaped it). It reports whether the entry was written.
// ctx should outlive the connection's own context.
func (s *Session) Leave(ctx context.Context) (bool, error) {
	if s.stop != nil {
		s.stop() // ends the catch-up's reads; its writes end with the connection
		s.pumpMu.Lock()
		s.pumpStopped = true
		for s.pumpRunning {
			s.pumpIdle.Wait()
		}
		s.pumpMu.Unlock()
	}
	s.r.forget(s)
	s.h.detach(s)
	left, err := s.h.store.Leave(ctx, s.room, s.member)
	if err != nil {
		return false, fmt.Errorf("leave: %w", err)
	}
	return left, nil
}
