// Package gateway serves the HTTP side of a replica: the routes (routes.go),
// the chat protocol over each websocket (handshake and authentication,
// greeting, the read loop and its command dispatch), the HTTP API, the one
// table of client-visible failures (errors.go), and the drain on shutdown.
// Rooms, cursors and delivery live behind the Hub; the websocket's writing
// half is a wsconn.Conn, which the hub writes the room's entries to.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/metrics"
	"github.com/streamchat/streamchat/pkg/wsconn"
)

// Hub is what the gateway needs from the rooms of this replica.
type Hub interface {
	// Join enters a room and returns the session and its greeting.
	Join(ctx context.Context, req hub.JoinRequest) (Session, hub.Greeting, error)
	// Post appends an event unless its sender already posted its nonce;
	// a *chat.Error means it was refused.
	Post(ctx context.Context, e chat.Event, sender string) (chat.Ack, error)
	// Amend applies an edit, delete or reaction and appends its entry;
	// a *chat.Error means it was refused and nothing changed.
	Amend(ctx context.Context, a chat.Amendment) (chat.Ack, error)
	// Healthy reports an error when a room's tail is stuck.
	Healthy() error
}

// Session is one connection's membership of a room (hub.Session).
type Session interface {
	// Next returns the entries after the cursor, waiting for one; only
	// before Start.
	Next(ctx context.Context) ([]hub.Entry, error)
	// Start hands delivery to the hub, which writes to f from then on;
	// onEnd reports why it stopped, if it stops before Leave.
	Start(f hub.Follower, onEnd func(error))
	// Leave ends the membership and appends the leave entry.
	Leave(ctx context.Context) (bool, error)
}

// Storage is what the gateway reads directly: readiness and room stats.
type Storage interface {
	Ping(ctx context.Context) error
	// Stat describes a room's stream.
	Stat(ctx context.Context, room string) (chat.RoomStat, error)
	// Before returns up to n messages older than before, newest first,
	// and whether more may remain.
	Before(ctx context.Context, room string, before chat.ID, n int) ([]chat.Event, bool, error)
	// RecordDirect and Conversations keep each user's list of
	// direct-message partners.
	RecordDirect(ctx context.Context, a, b string) error
	Conversations(ctx context.Context, uid string) ([]string, error)
	// PutFile stores a room's file for ttl unless the room's files would
	// pass quota bytes (chat.ErrFileQuota); GetFile reads it back
	// (chat.ErrNoFile when gone).
	PutFile(ctx context.Context, room, id string, b chat.Blob, ttl time.Duration, quota int64) error
	GetFile(ctx context.Context, room, id string) (chat.Blob, error)
	// States sets the current state of the changed messages among events
	// (history pages show messages as they are now).
	States(ctx context.Context, room string, events []chat.Event, uid, author string) error
	// Typing sends a typing notice to the room's other members unless
	// the same user (uid, else the anonymous author hash) sent one within
	// chat.TypingInterval.
	Typing(ctx context.Context, room, conn, uid, author string, frame []byte) (bool, error)
	// Joined records a signed-in user's join and returns their read
	// marker; MarkRead moves it forward; Rooms lists their rooms with
	// unread counts, resolve naming each listed room's stream.
	Joined(ctx context.Context, uid, room string, boundary chat.ID) (chat.ID, error)
	MarkRead(ctx context.Context, uid, room string, id chat.ID) (chat.ID, error)
	Rooms(ctx context.Context, uid string, resolve func(string) string) ([]chat.RoomSummary, error)
}

// FromHub adapts the hub to the gateway's Hub; every wiring site uses it.
func FromHub(h *hub.Hub) Hub { return hubAdapter{h} }

type hubAdapter struct{ *hub.Hub }

func (a hubAdapter) Join(ctx context.Context, req hub.JoinRequest) (Session, hub.Greeting, error) {
	s, g, err := a.Hub.Join(ctx, req)
	if err != nil {
		return nil, g, err // not a typed nil in the interface
	}
	return s, g, nil
}

// Options tune a Server. The zero value of each field means its default.
type Options struct {
	// Replica names this replica in hello and in logs.
	Replica string
	// MaxText is the most characters a message may hold. Default 4000.
	MaxText int
	// MaxFrame is the most bytes of one client frame; a larger one closes
	// the connection with 1009. Default 65536.
	MaxFrame int64
	// Rate and Burst limit the frames each connection may send. Defaults
	// 5 per second, burst 10.
	Rate  float64
	Burst int
	// TrustedProxies are the networks whose X-Forwarded-For header is
	// believed when naming a client's address in logs. Default: none.
	TrustedProxies []netip.Prefix
	// AllowedOrigins are extra Origin host patterns (path.Match syntax,
	// e.g. "*.example.com") accepted on the handshake besides the request's
	// own host.
	AllowedOrigins []string
	// AllowedHosts, when set, are the host names (path.Match patterns)
	// this server answers to; any other Host gets 421, the defence against
	// DNS rebinding. Default: any host.
	AllowedHosts []string
	// PingInterval is how often the server pings each client; a client
	// that does not answer within the interval is dropped. Default 25s.
	PingInterval time.Duration
	// WriteTimeout bounds every write to a client, so a client that stops
	// reading is dropped instead of pinning memory. Default 10s.
	WriteTimeout time.Duration
	// StoreTimeout bounds each storage call made for a client. Default 5s.
	StoreTimeout time.Duration
	// Auth decides who a websocket speaks as. Default: Anonymous, the
	// name the client asks for.
	Auth Authenticator
	// Limiter, when set, is the send budget of signed-in users, shared by
	// every replica; anonymous connections keep their own (Rate, Burst).
	Limiter SendLimiter
	// MaxConnsPerAddr caps the open websockets per client address on this
	// replica (the address honours TrustedProxies); one more gets HTTP 429
	// before the upgrade. 0: no cap.
	MaxConnsPerAddr int
	// APIKey, when set, enables the publish and history API for requests
	// with Authorization: Bearer APIKey.
	APIKey string
	// MaxFile is the most bytes of one uploaded file (its binary frame).
	// Default 2 MiB.
	MaxFile int64
	// FileTTL is how long files are kept. Default 24h.
	FileTTL time.Duration
	// UploadRate is each connection's upload budget in bytes per second,
	// with bursts of MaxFile (or one second's worth, when larger). Default
	// 256 KiB/s.
	UploadRate int64
	// RoomFileQuota is the most bytes of files a room holds at once.
	// Default 256 MiB.
	RoomFileQuota int64
	// Metrics receives the gateway's counters. Default: discarded.
	Metrics *metrics.Metrics
	// MetricsHandler, when set, is served at GET /metrics.
	MetricsHandler http.Handler
}

func (o *Options) setDefaults() {
	if o.MaxText <= 0 {
		o.MaxText = 4000
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = 65536
	}
	if o.Rate <= 0 {
		o.Rate = 5
	}
	if o.Burst <= 0 {
		o.Burst = 10
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 5 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = metrics.Discard()
	}
	if o.MaxFile <= 0 {
		o.MaxFile = 2 << 20
	}
	if o.FileTTL <= 0 {
		o.FileTTL = 24 * time.Hour
	}
	if o.UploadRate <= 0 {
		o.UploadRate = 256 << 10
	}
	if o.RoomFileQuota <= 0 {
		o.RoomFileQuota = 256 << 20
	}
	if o.Auth == nil {
		o.Auth = Anonymous{}
	}
}

// Server is the HTTP and websocket front of one replica.
type Server struct {
	hub   Hub
	store Storage
	web   http.Handler
	log   *zap.Logger
	opts  Options

	// ctx is the lifetime of every connection: connections outlive the
	// request that opened them and end with the server, not with r.Context().
	ctx    context.Context
	cancel context.CancelFunc

	sweeper  *wsconn.Sweeper // bounds every write; ended by Drain
	perAddr  *addrCounter
	botMu    sync.Mutex
	bots     map[string]*rate.Limiter // publish API senders without a shared limiter
	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining bool
	wg       sync.WaitGroup
}

// New returns a Server. web serves everything that is not an API path.
// Drain ends the Server, including the background goroutine its first
// websocket starts.
func New(h Hub, store Storage, web http.Handler, log *zap.Logger, opts Options) *Server {
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		hub:     h,
		store:   store,
		web:     web,
		log:     log.Named("gateway"),
		opts:    opts,
		ctx:     ctx,
		cancel:  cancel,
		sweeper: wsconn.NewSweeper(opts.WriteTimeout),
		perAddr: newAddrCounter(opts.MaxConnsPerAddr),
		conns:   make(map[*conn]struct{}),
	}
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// track registers a connection unless the server is draining.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) isTracked(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.conns[c]
	return ok
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Conns returns how many websocket connections are open.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// closeSpacing caps how fast Drain closes connections, so that a replica
// with few clients drains at once while one with many spreads its clients'
// reconnects instead of sending them all to the other replicas in the same
// instant.
const closeSpacing = 2 * time.Millisecond

// Drain makes /readyz fail, refuses new connections, closes every open
// websocket with 1001 (going away) spread over at most half the time left
// on ctx, and waits for each connection to finish, its leave entry
// included. When ctx ends first, the remaining connections are dropped.
// Call it after the HTTP server has stopped accepting.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	if len(conns) > 0 {
		step := closeSpacing
		if deadline, ok := ctx.Deadline(); ok {
			step = min(step, time.Until(deadline)/2/time.Duration(len(conns)))
		}
		// The i-th close is due at start + i*step. Pacing by that schedule,
		// not by a sleep after each close, keeps coarse timers from
		// stretching the spread past its share of the grace; and a
		// connection that ended meanwhile costs no time at all.
		start := time.Now()
		for i, c := range conns {
			if !s.isTracked(c) {
				continue
			}
			if d := time.Until(start.Add(time.Duration(i) * step)); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
			go c.fail(errShutdown)
		}
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer s.sweeper.Stop()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel() // drop what is left
		s.mu.Lock()
		for c := range s.conns {
			c.ws.Drop()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

func newConnID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
