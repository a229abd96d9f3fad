package main

import (
	"container/heap"
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"time"
)

// With the poll receiver, publishers send from one scheduler goroutine
// instead of a goroutine each, and their acknowledgements are read by the
// poller's loop like any other frame: a send costs one write(2) and its
// ack one read, with no goroutine woken for either. Thousands of one-message-
// a-second publishers (the many-rooms workloads) cost the load generator
// little more than their deliveries.

// pollPublisher is one publisher of the schedule.
type pollPublisher struct {
	c        *pollConn
	r        *room
	pub      int
	seq      int64
	next     time.Time
	interval time.Duration
	sent     *atomic.Int64
	errs     *atomic.Int64
}

// pendingSend is a sent message waiting for its ack.
type pendingSend struct {
	nonce uint64
	p     *pollPublisher
}

type schedule []*pollPublisher

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].next.Before(s[j].next) }
func (s schedule) Swap(i, j int)      { s[i], s[j] = s[j], s[i] }
func (s *schedule) Push(x any)        { *s = append(*s, x.(*pollPublisher)) }
func (s *schedule) Pop() any {
	old := *s
	p := old[len(old)-1]
	*s = old[:len(old)-1]
	return p
}

// runSchedule sends each publisher's messages at its times until ctx ends,
// then waits up to drain for the acks still due; those that never come are
// counted as failed sends.
func runSchedule(ctx context.Context, pubs []*pollPublisher, size int, drain time.Duration) {
	s := schedule(pubs)
	heap.Init(&s)
	for len(s) > 0 && ctx.Err() == nil {
		p := s[0]
		if d := time.Until(p.next); d > 0 {
			if !sleepCtx(ctx, d) {
				break
			}
			continue
		}
		if err := p.c.post(p, messageText(p.pub, p.seq, size)); err != nil {
			p.errs.Add(1)
		}
		p.seq++
		p.next = p.next.Add(p.interval)
		heap.Fix(&s, 0)
	}
	deadline := time.Now().Add(drain)
	for _, p := range pubs {
		for p.c.inFlight() > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		p.errs.Add(int64(p.c.abandon()))
	}
}

var errGone = errors.New("connection closed")

// post sends text as a message with a nonce of its own and queues it for
// its ack.
func (c *pollConn) post(p *pollPublisher, text string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return errGone
	}
	c.nonce++
	payload := appendMessage(make([]byte, 0, len(text)+64), text, 'p', c.nonce)
	frame := append(frameHeader(0x1, uint64(len(payload))), payload...)
	for len(frame) > 0 {
		n, err := writeNow(c.fd, frame)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
			time.Sleep(time.Millisecond) // the gateway is behind reading
			continue
		case err != nil:
			return err
		}
		frame = frame[n:]
	}
	c.pending = append(c.pending, pendingSend{nonce: c.nonce, p: p})
	return nil
}

// acked matches an ack or error frame to the oldest send in flight (a
// gateway answers a connection's sends in order).
func (c *pollConn) acked(isError bool, b []byte) {
	nonceText, ok := bytesCutPrefix(field(b, fieldNonce), 'p')
	if !ok {
		return
	}
	nonce, rest, ok := parseUint(nonceText)
	if !ok || len(rest) != 0 {
		return
	}
	id, idOK := parseIDBytes(field(b, fieldID))
	// The ack is recorded before the send leaves pending, so that a run
	// that sees nothing in flight has every acknowledged ID.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for len(c.pending) > 0 && c.pending[0].nonce <= nonce {
		head := c.pending[0]
		c.pending = c.pending[1:]
		if head.nonce != nonce {
			head.p.errs.Add(1) // answered out of order: never acknowledged
			continue
		}
		p := head.p
		if isError || !idOK {
			p.errs.Add(1)
			return
		}
		p.sent.Add(1)
		p.r.mu.Lock()
		p.r.published = append(p.r.published, id)
		p.r.mu.Unlock()
		return
	}
}

func (c *pollConn) inFlight() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return len(c.pending)
}

// abandon forgets the sends still in flight and says how many there were.
func (c *pollConn) abandon() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := len(c.pending)
	c.pending = nil
	return n
}

func bytesCutPrefix(b []byte, c byte) ([]byte, bool) {
	if len(b) == 0 || b[0] != c {
		return nil, false
	}
	return b[1:], true
}
