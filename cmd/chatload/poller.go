package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/streamchat/streamchat/pkg/chat"
)

// poller reads many websockets from one event loop: it waits on an epoll
// set of every connection and reads each ready socket once. A goroutine per
// connection costs a wake-up, two read(2)s (the second finds nothing and
// parks it) and a trip through the scheduler per delivery; here a delivery
// costs one read(2) and a share of one epoll_wait, so the load generator
// stays far cheaper than the gateways it measures. The epoll set's own
// descriptor waits in Go's network poller: no thread is held in a blocking
// system call, which would have the runtime's monitor wake every 20 µs to
// take its processor back. Publishers send from one scheduler (schedule.go).
type poller struct {
	epfd   int
	file   *os.File // epfd, registered with Go's network poller
	mu     sync.Mutex
	conns  map[int32]*pollConn
	closed atomic.Bool
	done   chan struct{}
}

// pollConn is one connection of a poller.
type pollConn struct {
	p    *poller
	fd   int
	rc   *receiver
	buf  []byte // bytes read and not yet parsed
	gone atomic.Bool

	// The sending side, for a publisher (schedule.go): wmu keeps a write
	// from meeting a closed (and maybe reused) descriptor.
	wmu     sync.Mutex
	closed  bool
	nonce   uint64
	pending []pendingSend
}

func newPoller() (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	p := &poller{epfd: fd, file: os.NewFile(uintptr(fd), "epoll"), conns: map[int32]*pollConn{}, done: make(chan struct{})}
	raw, err := p.file.SyscallConn()
	if err != nil {
		p.file.Close()
		return nil, err
	}
	go p.loop(raw)
	return p, nil
}

// Close ends the loop and every connection still open.
func (p *poller) Close() {
	if p.closed.Swap(true) {
		return
	}
	p.file.Close() // wakes the loop
	<-p.done
}

// handle reads every connection an event names.
func (p *poller) handle(events []syscall.EpollEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range events {
		if c := p.conns[ev.Fd]; c != nil && !c.readable() {
			p.drop(c)
		}
	}
}

func (p *poller) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		p.drop(c)
	}
}

func (p *poller) loop(raw syscall.RawConn) {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	// Read calls the function each time the epoll set becomes readable
	// (it is edge-triggered in Go's poller), so each call takes every
	// ready event, until none is left.
	_ = raw.Read(func(fd uintptr) bool {
		for {
			n, err := epollNow(int(fd), events)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return true
			}
			if n == 0 {
				return p.closed.Load()
			}
			p.handle(events[:n])
		}
	})
	p.dropAll()
}

// drop forgets c and closes its descriptor; only the loop does, so a
// descriptor number is never reused while the loop may still read it.
func (p *poller) drop(c *pollConn) {
	c.gone.Store(true)
	delete(p.conns, int32(c.fd))
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	c.wmu.Lock()
	c.closed = true
	syscall.Close(c.fd)
	c.wmu.Unlock()
}

// dial opens a websocket to u by hand and adds it to the loop; frames go
// to rc.onFrame, acks to the connection's sends (post).
func (p *poller) dial(ctx context.Context, u string, d *net.Dialer, rc *receiver) (*pollConn, error) {
	target, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	nc, err := d.DialContext(ctx, "tcp", target.Host)
	if err != nil {
		return nil, err
	}
	defer nc.Close() // the poller keeps a duplicate of the descriptor
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	br, err := upgrade(nc, target.Host, target.RequestURI())
	if err != nil {
		return nil, err
	}
	leftover, _ := br.Peek(br.Buffered())
	raw, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	if cerr := raw.Control(func(orig uintptr) { fd, err = syscall.Dup(int(orig)) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	c := &pollConn{p: p, fd: fd, rc: rc, buf: append(make([]byte, 0, 4096), leftover...)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		syscall.Close(fd)
		return nil, errors.New("poller closed")
	}
	p.conns[int32(fd)] = c
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		delete(p.conns, int32(fd))
		syscall.Close(fd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	if len(c.buf) > 0 && !c.parse() {
		p.drop(c)
		return nil, errors.New("bad frame after the handshake")
	}
	return c, nil
}

// readable reads what c's socket holds, once (epoll is level-triggered:
// anything left is reported again), and hands on every whole frame. It
// reports false when the connection is over.
func (c *pollConn) readable() bool {
	if len(c.buf) == cap(c.buf) {
		c.buf = append(c.buf, make([]byte, cap(c.buf))...)[:len(c.buf)]
	}
	n, err := readNow(c.fd, c.buf[len(c.buf):cap(c.buf)])
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return true
	}
	if err != nil || n <= 0 {
		return false
	}
	c.buf = c.buf[:len(c.buf)+n]
	return c.parse()
}

// maxFrame bounds one frame, as the other receivers' read limit does.
const maxFrame = 1 << 20

// parse hands on every whole frame in c.buf and keeps the rest.
func (c *pollConn) parse() bool {
	used, ok := c.frames(c.buf)
	if !ok {
		return false
	}
	// Move what is left to the front; a burst (the replay on join) may
	// have grown the buffer, which goes back to its usual size.
	rest := copy(c.buf, c.buf[used:])
	c.buf = c.buf[:rest]
	if cap(c.buf) > 64<<10 && rest < 4096 {
		c.buf = append(make([]byte, 0, 4096), c.buf...)
	}
	return true
}

// frames hands on the whole frames at the start of b and says how many
// bytes they took. Server frames are unmasked, and the gateway writes each
// message as one frame.
func (c *pollConn) frames(b []byte) (used int, ok bool) {
	for {
		rest := b[used:]
		if len(rest) < 2 {
			return used, true
		}
		fin, op := rest[0]&0x80 != 0, rest[0]&0x0f
		n, h := uint64(rest[1]&0x7f), 2
		switch n {
		case 126:
			if len(rest) < 4 {
				return used, true
			}
			n, h = uint64(binary.BigEndian.Uint16(rest[2:])), 4
		case 127:
			if len(rest) < 10 {
				return used, true
			}
			n, h = binary.BigEndian.Uint64(rest[2:]), 10
		}
		if rest[1]&0x80 != 0 || n > maxFrame || !fin {
			return used, false // masked, oversized or fragmented: not what the gateway sends
		}
		if uint64(len(rest)-h) < n {
			return used, true
		}
		payload := rest[h : h+int(n)]
		switch op {
		case 0x1:
			switch typ := frameType(payload); {
			case bytes.Equal(typ, typeAck):
				c.acked(false, payload)
			case bytes.Equal(typ, typeError):
				c.acked(true, payload)
			default:
				c.rc.onFrame(typ, payload)
			}
		case 0x9:
			c.pong(payload)
		case 0x8:
			return used, false
		}
		used += h + int(n)
	}
}

// pong answers a ping with its payload.
func (c *pollConn) pong(payload []byte) {
	if len(payload) > 125 {
		return
	}
	frame := append(frameHeader(0xA, uint64(len(payload))), payload...)
	_, _ = writeNow(c.fd, frame)
}

// CloseNow shuts the socket; the loop sees the end and closes it.
func (c *pollConn) CloseNow() {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	if !c.gone.Load() {
		_ = syscall.Shutdown(c.fd, syscall.SHUT_RDWR)
	}
}

// send is for the goroutine-per-publisher path, which a polled connection
// does not take: its publisher is on the schedule (runSchedule).
func (c *pollConn) send(context.Context, string) (chat.ID, error) {
	return chat.ID{}, errors.New("a polled connection sends through the schedule")
}

// epollNow, readNow and writeNow never block (a zero timeout; a non-blocking
// socket), so they are raw system calls: the runtime's bookkeeping around
// a system call that might block, and the monitor thread it keeps waking,
// cost more here than the calls themselves.
func epollNow(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func readNow(fd int, b []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func writeNow(fd int, b []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
