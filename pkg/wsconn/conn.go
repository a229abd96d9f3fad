// Package wsconn is the server's half of one websocket connection: the
// handshake (through coder/websocket, which also reads, answers pings and
// runs the close handshake), the writing of text frames (each payload framed
// as it is written, header and payload in one writev, with a non-blocking
// fast path and carry-over of a frame the socket took part of), pings, the
// bound on a stuck write, and close. It knows nothing of rooms or of the
// chat protocol: it sends payloads it is given, and reports the ends it
// decides itself (ping or write timeout) through a callback.
package wsconn

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Ends a connection decides itself, reported through Options.OnEnd.
var (
	// ErrPingTimeout means the peer did not answer a ping within the
	// ping interval.
	ErrPingTimeout = errors.New("ping not answered")
	// ErrWriteTimeout means a write waited longer than the sweeper's
	// timeout: the peer stopped reading.
	ErrWriteTimeout = errors.New("write timed out")
)

// ErrClosing is returned by writes once the connection is closing: no
// message may follow the close frame.
var ErrClosing = errors.New("connection closing")

// Options tune a Conn. The zero value of each field means its default.
type Options struct {
	// OriginPatterns are the Origin host patterns (path.Match syntax)
	// accepted besides the request's own host.
	OriginPatterns []string
	// ReadLimit is the most bytes of one client message; a larger one
	// ends the connection with 1009. Default 65536.
	ReadLimit int64
	// PingInterval is how often the peer is pinged; one that does not
	// answer within the interval is dropped. Default 25s.
	PingInterval time.Duration
	// Sweeper bounds every write; nil leaves writes unbounded, which only
	// tests should do.
	Sweeper *Sweeper
	// OnEnd, when set, is called once, on its own goroutine, when the
	// connection ends itself (ErrPingTimeout, ErrWriteTimeout), after the
	// socket is closed.
	OnEnd func(error)
}

func (o *Options) setDefaults() {
	if o.ReadLimit <= 0 {
		o.ReadLimit = 65536
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
}

// Conn is one accepted websocket connection. Read must be called by one
// goroutine at a time, and must be called for pings and the close
// handshake to work; TryWrite, Write, Close and Drop may be called from any
// goroutine.
type Conn struct {
	ws   *websocket.Conn
	w    wire // in the Conn itself: the tailer's writes touch one object less
	opts Options

	closeOnce sync.Once // the close handshake
	endOnce   sync.Once // pings and the sweeper stop
	stopPing  func()
}

// Accept upgrades the request and starts pinging. A refused handshake
// (a bad Origin, say) has been answered with an HTTP error when it returns
// an error. The Conn's goroutines end when it is closed or dropped.
func Accept(rw http.ResponseWriter, r *http.Request, opts Options) (*Conn, error) {
	opts.setDefaults()
	c := &Conn{opts: opts}
	ws, err := websocket.Accept(hijacker{rw, &c.w}, r, &websocket.AcceptOptions{OriginPatterns: opts.OriginPatterns})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(opts.ReadLimit)
	c.ws = ws
	if opts.Sweeper != nil {
		opts.Sweeper.track(c)
	}
	c.stopPing = c.startPing()
	return c, nil
}

// Read reads the next client message; see websocket.Conn.Read. Every end of
// the connection closes the socket, which ends a Read in progress.
func (c *Conn) Read(ctx context.Context) (websocket.MessageType, []byte, error) {
	return c.ws.Read(ctx)
}

// TryWrite sends payloads as text frames, in order, as far as the socket
// takes them without waiting, and returns how many it took: those that
// went out whole, and one it began, whose rest goes out before anything
// else. whole reports that all it took went out whole. It never blocks and
// keeps no payload but the rest of one; a connection that is closing or
// has no descriptor takes none.
func (c *Conn) TryWrite(payloads [][]byte) (taken int, whole bool) {
	if !c.w.tryLock() {
		return 0, false
	}
	taken, whole, _ = c.w.tryWrite(payloads)
	c.w.mu.Unlock()
	return taken, whole // an error is Write's to report
}

// Write sends payloads as text frames in order, with one writev, waiting
// for the socket until the sweeper's timeout; with none, it sends what
// TryWrite left. After Close or Drop it returns ErrClosing.
func (c *Conn) Write(payloads ...[]byte) error { return c.w.write(payloads...) }

// Close starts the close handshake with code and reason, once, and waits
// for it (coder/websocket bounds the wait); no message is sent after it.
func (c *Conn) Close(code websocket.StatusCode, reason string) {
	c.end()
	c.closeOnce.Do(func() { _ = c.ws.Close(code, reason) })
}

// Drop closes the socket at once, with no handshake: for a peer that is
// gone or not responding, or when time is up. It may follow Close.
func (c *Conn) Drop() {
	c.end()
	_ = c.ws.CloseNow()
}

// end marks the connection closing and stops its pings and sweeping.
func (c *Conn) end() {
	c.w.closing.Store(true)
	c.endOnce.Do(func() {
		if c.stopPing != nil {
			c.stopPing()
		}
		if c.opts.Sweeper != nil {
			c.opts.Sweeper.untrack(c)
		}
	})
}

// fail drops the connection for a reason of its own and reports it.
func (c *Conn) fail(err error) {
	c.Drop()
	if c.opts.OnEnd != nil {
		c.opts.OnEnd(err)
	}
}

// startPing pings the peer every interval on a timer, so an idle
// connection holds no goroutine for it.
func (c *Conn) startPing() (stop func()) {
	interval := c.opts.PingInterval
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	t = time.AfterFunc(interval, func() {
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		err := c.ws.Ping(ctx)
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if err != nil {
			go c.fail(ErrPingTimeout) // not here: fail stops this timer
			return
		}
		t.Reset(interval)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// stuck reports whether a write has been waiting longer than limit.
func (c *Conn) stuck(now time.Time, limit time.Duration) bool {
	start := c.w.writeStart.Load()
	return start != 0 && now.UnixNano()-start > int64(limit)
}

// Sweeper drops connections whose write has not completed within its
// timeout, so a client that stops reading pins neither memory nor a
// goroutine. One Sweeper serves every connection of a server: a timer per
// write would cost more than the write. Its goroutine starts with the
// first connection; Stop ends it.
type Sweeper struct {
	timeout time.Duration

	mu      sync.Mutex
	conns   map[*Conn]struct{}
	started bool
	stopped bool
	stop    chan struct{}
	done    chan struct{}
}

// NewSweeper returns a Sweeper that drops connections stuck in a write for
// longer than timeout (default 10s).
func NewSweeper(timeout time.Duration) *Sweeper {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Sweeper{timeout: timeout, conns: make(map[*Conn]struct{}), stop: make(chan struct{}), done: make(chan struct{})}
}

func (s *Sweeper) track(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = struct{}{}
	if !s.started && !s.stopped {
		s.started = true
		go s.run()
	}
}

func (s *Sweeper) untrack(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Sweeper) run() {
	defer close(s.done)
	t := time.NewTicker(min(time.Second, s.timeout/4))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			for c := range s.conns {
				if c.stuck(now, s.timeout) {
					go c.fail(ErrWriteTimeout)
				}
			}
			s.mu.Unlock()
		}
	}
}

// Stop ends the sweeper's goroutine and waits for it. Writes are not
// bounded after it.
func (s *Sweeper) Stop() {
	s.mu.Lock()
	started := s.started
	if !s.stopped {
		s.stopped = true
		close(s.stop)
	}
	s.mu.Unlock()
	if started {
		<-s.done
	}
}
