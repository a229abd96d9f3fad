package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/streamchat/streamchat/pkg/chat"
)

// Session is one connection's membership of a room: its cursor and how it
// reads on. Next, TryNext and Follow must not run concurrently with each
// other (one reader at a time, in sequence); Post and Leave may be called
// from another goroutine.
type Session struct {
	h      *Hub
	r      *room
	room   string
	member chat.Member

	// Resumed reports that the entries after JoinRequest.Since are all
	// still in the stream and will be delivered by Next; otherwise Replay
	// holds the recent history.
	Resumed bool
	// Replay is the history to send with "replay":true, oldest first.
	Replay []chat.Event
	// Boundary is the newest entry of the stream when the join read it.
	// Entries after it are live; when resuming, Next delivers the entries
	// up to it first, and the client is ready once it has them.
	Boundary chat.ID
	// Online is the distinct names online when the member joined.
	Online []string

	cursor  chat.ID
	seen    chat.ID      // the room's newest entry at the last empty TryNext
	pending []chat.Event // first page of a resume, already read
	buf     []Entry      // reused by Next

	// follower and follow (its index + 1 among the room's followers, 0
	// when not following) are guarded by the room's mutex.
	follower Follower
	follow   int
}

// A Follower takes a room's new entries straight from its tailer, so a
// connection that keeps up costs no goroutine and no wake-up per batch.
type Follower interface {
	// Offer is given the entries after the session's cursor, oldest first.
	// It must not block: it takes what it can send at once, in order, and
	// returns how many (the cursor moves past those) and whether it keeps
	// following, which it can only when it took them all. Offer is called
	// from one goroutine at a time.
	Offer(entries []Entry) (taken int, ok bool)
	// Wake tells the follower to go on by itself, with TryNext and then
	// Follow: Offer returned false, a batch came before Follow, or the room
	// is stopping. It must not block.
	Wake()
}

// Cursor is the ID of the last entry Next returned (or the starting point).
func (s *Session) Cursor() chat.ID { return s.cursor }

// Next returns the entries after the session's cursor, oldest first, waiting
// until there is at least one, and advances the cursor past them. The slice
// is valid until the next call. It fails with ErrLagged when the entries
// after the cursor are gone from the stream, with ErrClosed when the hub
// closes, and with ctx's error when ctx ends. Redis failures are retried.
func (s *Session) Next(ctx context.Context) ([]Entry, error) {
	if s.h.opts.Direct && len(s.pending) == 0 {
		return s.nextDirect(ctx)
	}
	return s.next(ctx, true) // takes a resume's first page, in either mode
}

// TryNext is Next without the wait: when nothing is ready it returns no
// entries, and Follow then hands over what comes next. Shared mode only
// (see Follows); a connection with nothing to send needs no goroutine.
func (s *Session) TryNext(ctx context.Context) ([]Entry, error) {
	return s.next(ctx, false)
}

// Follows reports whether Follow works: in direct mode there is no room
// tailer to follow, and the caller must loop on Next.
func (s *Session) Follows() bool { return !s.h.opts.Direct }

// Follow registers f for the entries after the last empty TryNext: the
// room's tailer offers each new batch to f until f takes less than all of
// it, and then calls f.Wake (at once, if entries came already or the room
// is stopping). Between Follow and Wake the tailer owns the cursor: the
// caller must not call Next or TryNext. Leave ends following.
func (s *Session) Follow(f Follower) {
	s.follower = f
	s.r.follow(s, s.seen)
}

func (s *Session) takePending() []Entry {
	events := s.pending
	s.pending = nil
	return s.deliver(s.h.encode(events))
}

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
				return s.deliver(s.h.encode(events)), nil
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
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.r.ctx.Err() != nil {
			return nil, ErrClosed
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
			return s.deliver(s.h.encode(events)), nil
		}
	}
}

// releaseBuf lets go of the last batch's frames, and of the buffer itself
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
	s.cursor = entries[len(entries)-1].ID
	return entries
}

// Post appends a message from this session's member and returns its ID
// once Redis has stored it.
func (s *Session) Post(ctx context.Context, text, nonce string) (chat.ID, error) {
	id, err := s.h.store.Append(ctx, chat.Event{Room: s.room, Kind: chat.KindMessage, From: s.member.Name, Text: text, Nonce: nonce})
	if err != nil {
		return chat.ID{}, fmt.Errorf("post: %w", err)
	}
	return id, nil
}

// Leave detaches the session from its room and appends its leave entry
// (unless another replica already reaped it). It reports whether the entry
// was written. ctx should outlive the connection's own context.
func (s *Session) Leave(ctx context.Context) (bool, error) {
	s.r.forget(s)
	s.h.detach(s)
	left, err := s.h.store.Leave(ctx, s.room, s.member)
	if err != nil {
		return false, fmt.Errorf("leave: %w", err)
	}
	return left, nil
}
