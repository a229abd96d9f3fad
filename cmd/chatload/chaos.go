package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/client"
)

// The fault run (make chaos): a real redis-server with the append-only
// file, gateway replicas behind a load balancer, and clients that
// reconnect, resume and resend as the browser client does, in several
// rooms with traffic flowing; then, one at a time with the traffic going
// on, the faults an operator meets. At the end every client's log is
// checked against its room's stream, and every acknowledged send must be
// in it exactly once.

type chaosConfig struct {
	gateway, redis        string
	replicas, rooms       int
	clients, publishers   int
	rate                  float64 // messages per second per room
	settle                time.Duration
	replicaStop, redisOut time.Duration // SIGSTOP lengths
	stall                 time.Duration
	burst                 int
	storeTimeout          time.Duration
	keep                  bool
}

func chaosMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chatload chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := chaosConfig{}
	fs.StringVar(&c.gateway, "gateway", "bin/gateway", "gateway binary")
	fs.StringVar(&c.redis, "redis-server", "redis-server", "redis-server binary")
	fs.IntVar(&c.replicas, "replicas", 3, "gateway replicas")
	fs.IntVar(&c.rooms, "rooms", 4, "rooms")
	fs.IntVar(&c.clients, "clients", 8, "clients per room, publishers included")
	fs.IntVar(&c.publishers, "publishers", 2, "publishers per room")
	fs.Float64Var(&c.rate, "rate", 10, "messages per second per room")
	full := fs.Bool("full", false, "the full form: longer traffic between faults, Redis stopped for 7 s")
	fs.BoolVar(&c.keep, "keep", false, "keep the logs and data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.settle, c.replicaStop, c.redisOut, c.stall, c.burst, c.storeTimeout = 2*time.Second, 10*time.Second, 3*time.Second, 12*time.Second, 2000, time.Second
	if *full {
		c.settle, c.redisOut = 10*time.Second, 7*time.Second
	}
	if c.replicas < 2 || c.rooms < 1 || c.clients < c.publishers+2 || c.publishers < 1 || c.rate <= 0 {
		return errors.New("need -replicas ≥ 2, -rooms ≥ 1, -publishers ≥ 1, -clients ≥ publishers+2 and a positive -rate")
	}
	return runChaos(ctx, c, stdout, stderr)
}

// chaosClient is one client of a room and everything it was shown.
type chaosClient struct {
	room, name string
	conn       *client.Conn
	stallUntil atomic.Int64 // unix ns; the reader blocks until then

	mu      sync.Mutex
	start   chat.ID // the first ready's cursor
	started bool
	views   [][]chat.ID
	hellos  []time.Time // of reconnections
	readys  []time.Time
	markers map[string]bool
}

func (c *chaosClient) onEvent(ev client.Event) {
	if until := c.stallUntil.Load(); until != 0 {
		// Not reading: the socket fills, then the server gives up on it.
		time.Sleep(time.Until(time.Unix(0, until)))
		c.stallUntil.Store(0)
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case ev.Type == "hello":
		if c.started || len(c.views) > 0 {
			c.hellos = append(c.hellos, now)
		}
		if !ev.Resumed || len(c.views) == 0 {
			c.views = append(c.views, nil)
		}
	case ev.Type == "ready":
		c.readys = append(c.readys, now)
		if !c.started {
			c.start, _ = chat.ParseID(ev.Cursor)
			c.started = true
		}
	case ev.IsEntry():
		id, err := chat.ParseID(ev.ID)
		if err != nil || len(c.views) == 0 {
			return
		}
		c.views[len(c.views)-1] = append(c.views[len(c.views)-1], id)
		if strings.HasPrefix(ev.Text, "marker ") {
			c.markers[ev.Text] = true
		}
	}
}

func (c *chaosClient) has(marker string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.markers[marker]
}

// sendRecord is one message a publisher got acknowledged.
type sendRecord struct {
	room, nonce string
	id          chat.ID
	at          time.Time
	retried     bool // sent more than once: after an error, a timeout or a drop
	duplicate   bool // the ack said the nonce was already stored
}

// phase is one stretch of the run: a fault, and the traffic until the next.
type phase struct {
	name        string
	start       time.Time
	faults      []time.Time // when each of its signals was sent
	lossAllowed string      // why losing acknowledged entries is expected
}

type chaosRun struct {
	cfg      chaosConfig
	dir      string
	log      io.Writer
	redis    *daemon
	rdb      *redis.Client
	gateways []*daemon
	health   []string
	lb       *balancer
	clients  []*chaosClient
	byRoom   map[string][]*chaosClient

	mu       sync.Mutex
	phases   []*phase
	sent     []sendRecord
	failed   []string // sends never acknowledged
	sendWG   sync.WaitGroup
	markerNo int
}

func runChaos(ctx context.Context, cfg chaosConfig, stdout, stderr io.Writer) (err error) {
	r := &chaosRun{cfg: cfg, log: stderr, byRoom: map[string][]*chaosClient{}}
	if r.dir, err = os.MkdirTemp("", "chatload-chaos"); err != nil {
		return err
	}
	defer func() { keepOrRemove(r.dir, cfg.keep || err != nil, stderr) }()
	if err := r.startCluster(ctx); err != nil {
		r.stopCluster()
		return err
	}
	defer r.stopCluster()
	if err := r.connect(ctx); err != nil {
		return err
	}
	defer r.disconnect()

	traffic, stopTraffic := context.WithCancel(ctx)
	pubsDone := r.publish(traffic)
	faultErr := r.faults(ctx)
	stopTraffic()
	<-pubsDone
	// Sends still retrying get a bounded time to land.
	if !waitGroupTimeout(&r.sendWG, 60*time.Second) {
		return errors.New("sends still unacknowledged 60 s after the traffic stopped")
	}
	if faultErr != nil {
		return faultErr
	}
	r.begin("end of run")
	if err := r.recovered(ctx); err != nil {
		return fmt.Errorf("after the last fault: %w", err)
	}
	return r.report(ctx, stdout)
}

func (r *chaosRun) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (r *chaosRun) startCluster(ctx context.Context) error {
	rport, err := freePort()
	if err != nil {
		return err
	}
	r.redis = redisDaemon(r.cfg.redis, r.dir, rport, "--appendonly", "yes", "--appendfsync", "always")
	if err := r.redis.start(); err != nil {
		return err
	}
	r.rdb = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rport), MaxRetries: -1})
	if err := waitUntil(ctx, 15*time.Second, func() bool { return redisUp(ctx, r.rdb) }); err != nil {
		return fmt.Errorf("redis-server did not start: %w\n%s", err, r.redis.tail(20))
	}
	var addrs []string
	for i := range r.cfg.replicas {
		port, err := freePort()
		if err != nil {
			return err
		}
		g := gatewayDaemon(r.cfg.gateway, r.dir, i, port, rport,
			// Publishers send faster than a person; nothing trims the
			// stream during the run, so every entry can be checked.
			"CHAT_RATE=1000", "CHAT_BURST=1000", "CHAT_STREAM_MAXLEN=10000000",
			"CHAT_STORE_TIMEOUT="+r.cfg.storeTimeout.String(), "CHAT_SHUTDOWN_GRACE=5s", "CHAT_LOG_LEVEL=info")
		if err := g.start(); err != nil {
			return err
		}
		r.gateways = append(r.gateways, g)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		addrs = append(addrs, addr)
		r.health = append(r.health, "http://"+addr+"/readyz")
	}
	for i := range r.gateways {
		if err := r.waitGateway(ctx, i); err != nil {
			return err
		}
	}
	r.lb, err = newBalancer(addrs)
	r.logf("redis-server (appendonly yes, appendfsync always) pid %d, %d replicas behind %s, data in %s", r.redis.pid(), len(addrs), r.lb.addr(), r.dir)
	return err
}

func (r *chaosRun) waitGateway(ctx context.Context, i int) error {
	if err := waitUntil(ctx, 30*time.Second, func() bool { return httpOK(r.health[i]) }); err != nil {
		return fmt.Errorf("%s not ready: %w\n%s", r.gateways[i].name, err, r.gateways[i].tail(20))
	}
	return nil
}

func (r *chaosRun) stopCluster() {
	if r.lb != nil {
		r.lb.close()
	}
	for _, g := range r.gateways {
		g.stop(syscall.SIGTERM, 15*time.Second)
	}
	if r.rdb != nil {
		_ = r.rdb.Close()
	}
	if r.redis != nil {
		r.redis.stop(syscall.SIGTERM, 15*time.Second)
	}
}

// connect opens every client through the load balancer and waits until
// each is ready.
func (r *chaosRun) connect(ctx context.Context) error {
	for room := range r.cfg.rooms {
		name := fmt.Sprintf("chaos-%d", room)
		for i := range r.cfg.clients {
			addr, httpc := r.lb.addr(), (*http.Client)(nil)
			if room == 0 && i == r.cfg.clients-2 {
				// The reader that will stall: straight to the last replica,
				// past the balancer's buffers, with a 4 KiB receive
				// buffer, so the replica soon sees a client that is not
				// reading.
				addr = strings.TrimSuffix(strings.TrimPrefix(r.health[len(r.health)-1], "http://"), "/readyz")
				httpc = smallReceiveBuffer()
			}
			if err := r.join(ctx, addr, name, fmt.Sprintf("c%d", i), httpc); err != nil {
				return err
			}
		}
	}
	r.logf("%d clients in %d rooms, %d publishers per room at %g messages/s per room", len(r.clients), r.cfg.rooms, r.cfg.publishers, r.cfg.rate)
	return r.waitStarted(ctx)
}

// join opens a client named name in room on the gateway at addr, which
// reconnects, resumes and resends as the browser client does.
func (r *chaosRun) join(ctx context.Context, addr, room, name string, httpc *http.Client) error {
	c := &chaosClient{room: room, name: name, markers: map[string]bool{}}
	url := fmt.Sprintf("ws://%s/ws?room=%s&name=%s", addr, room, name)
	conn, _, err := client.Dial(ctx, url, &client.Options{
		Reconnect: true, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, OnEvent: c.onEvent, HTTPClient: httpc})
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	c.conn = conn
	r.clients = append(r.clients, c)
	r.byRoom[room] = append(r.byRoom[room], c)
	return nil
}

// waitStarted waits until every client has had its first ready.
func (r *chaosRun) waitStarted(ctx context.Context) error {
	return waitUntil(ctx, 30*time.Second, func() bool {
		for _, c := range r.clients {
			c.mu.Lock()
			ok := c.started
			c.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
}

func (r *chaosRun) disconnect() {
	for _, c := range r.clients {
		c.conn.CloseNow()
	}
}

// publish starts the publishers: the first clients of each room, each
// sending at its share of the room's rate, one message at a time.
func (r *chaosRun) publish(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(r.cfg.publishers) / r.cfg.rate)
	for _, clients := range r.byRoom {
		for p := range r.cfg.publishers {
			c := clients[p]
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTicker(interval)
				defer t.Stop()
				for seq := 0; ; seq++ {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					r.send(c, fmt.Sprintf("%s %s %d", c.room, c.name, seq))
				}
			}()
		}
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

// send posts text as c until it is acknowledged, retrying with the same
// nonce after an unavailable answer or a timeout, as a client should.
func (r *chaosRun) send(c *chaosClient, text string) {
	r.sendWG.Add(1)
	defer r.sendWG.Done()
	nonce := client.NewNonce()
	deadline := time.Now().Add(90 * time.Second)
	retried := false
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ack, err := c.conn.SendNonce(ctx, nonce, text)
		cancel()
		if err == nil {
			id, _ := chat.ParseID(ack.ID)
			r.mu.Lock()
			r.sent = append(r.sent, sendRecord{room: c.room, nonce: nonce, id: id, at: time.Now(), retried: retried || ack.Resent > 0, duplicate: ack.Duplicate})
			r.mu.Unlock()
			return
		}
		var se *client.ServerError
		if (errors.As(err, &se) && se.Code != "unavailable") || errors.Is(err, client.ErrClosed) || time.Now().After(deadline) {
			r.mu.Lock()
			r.failed = append(r.failed, fmt.Sprintf("%s %q: %v", c.room, text, err))
			r.mu.Unlock()
			return
		}
		retried = true
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *chaosRun) begin(name string) *phase {
	ph := &phase{name: name, start: time.Now()}
	r.mu.Lock()
	r.phases = append(r.phases, ph)
	r.mu.Unlock()
	r.logf("── %s", name)
	return ph
}

func (ph *phase) mark() { ph.faults = append(ph.faults, time.Now()) }

// recovered waits until every replica is ready and a marker sent to each
// room has reached every client in it.
func (r *chaosRun) recovered(ctx context.Context) error {
	for i := range r.gateways {
		if err := r.waitGateway(ctx, i); err != nil {
			return err
		}
	}
	r.markerNo++
	marker := fmt.Sprintf("marker %d", r.markerNo)
	var wg sync.WaitGroup
	for _, clients := range r.byRoom {
		wg.Add(1)
		go func() { defer wg.Done(); r.send(clients[len(clients)-1], marker) }()
	}
	wg.Wait()
	return waitUntil(ctx, 60*time.Second, func() bool {
		for _, c := range r.clients {
			if !c.has(marker) {
				return false
			}
		}
		return true
	})
}

func (r *chaosRun) setFsync(ctx context.Context, mode string) error {
	if err := r.rdb.ConfigSet(ctx, "appendfsync", mode).Err(); err != nil {
		return fmt.Errorf("CONFIG SET appendfsync %s: %w", mode, err)
	}
	return nil
}

func (r *chaosRun) restartRedis(ctx context.Context, ph *phase, sig syscall.Signal) error {
	ph.mark()
	r.redis.stop(sig, 15*time.Second)
	if err := r.redis.start(); err != nil {
		return err
	}
	if err := waitUntil(ctx, 30*time.Second, func() bool { return redisUp(ctx, r.rdb) }); err != nil {
		return fmt.Errorf("redis-server did not come back: %w\n%s", err, r.redis.tail(20))
	}
	return nil
}

// faults runs each fault in turn, with traffic before and after.
func (r *chaosRun) faults(ctx context.Context) error {
	steady := func() bool { return sleepCtx(ctx, r.cfg.settle) }
	steps := []struct {
		name string
		run  func(ph *phase) error
	}{
		{"steady traffic", func(*phase) error { return nil }},
	}
	for i := range r.gateways {
		steps = append(steps, struct {
			name string
			run  func(ph *phase) error
		}{fmt.Sprintf("rolling deploy: SIGTERM replica %d, restart", i), func(ph *phase) error {
			ph.mark()
			r.gateways[i].stop(syscall.SIGTERM, 15*time.Second)
			if err := r.gateways[i].start(); err != nil {
				return err
			}
			return r.waitGateway(ctx, i)
		}})
	}
	steps = append(steps, []struct {
		name string
		run  func(ph *phase) error
	}{
		{"SIGKILL replica 0, restart", func(ph *phase) error {
			ph.mark()
			r.gateways[0].stop(syscall.SIGKILL, time.Second)
			if err := r.gateways[0].start(); err != nil {
				return err
			}
			return r.waitGateway(ctx, 0)
		}},
		{fmt.Sprintf("SIGSTOP replica 1 for %s", r.cfg.replicaStop), func(ph *phase) error {
			ph.mark()
			if err := r.gateways[1].signal(syscall.SIGSTOP); err != nil {
				return err
			}
			sleepCtx(ctx, r.cfg.replicaStop)
			return r.gateways[1].signal(syscall.SIGCONT)
		}},
		{"Redis clean restart (SIGTERM)", func(ph *phase) error {
			return r.restartRedis(ctx, ph, syscall.SIGTERM)
		}},
		{fmt.Sprintf("SIGSTOP Redis for %s (store timeout %s)", r.cfg.redisOut, r.cfg.storeTimeout), func(ph *phase) error {
			ph.mark()
			if err := r.redis.signal(syscall.SIGSTOP); err != nil {
				return err
			}
			sleepCtx(ctx, r.cfg.redisOut)
			return r.redis.signal(syscall.SIGCONT)
		}},
		{fmt.Sprintf("a reader stops for %s under a burst of %d × 3.5 kB", r.cfg.stall, r.cfg.burst), func(ph *phase) error {
			room := r.byRoom["chaos-0"]
			stalled := room[len(room)-2]
			ph.mark()
			stalled.stallUntil.Store(time.Now().Add(r.cfg.stall).UnixNano())
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Large messages: loopback sockets buffer megabytes, and
					// the burst must outgrow them and the room's window.
					pad := strings.Repeat("x", 3500)
					for i := w; i < r.cfg.burst; i += 4 {
						r.send(room[0], fmt.Sprintf("burst %d %s", i, pad))
					}
				}()
			}
			wg.Wait()
			sleepCtx(ctx, time.Until(time.Unix(0, stalled.stallUntil.Load())))
			if err := waitUntil(ctx, 30*time.Second, func() bool { return stalled.stallUntil.Load() == 0 }); err != nil {
				return errors.New("the stalled reader did not read again")
			}
			return nil
		}},
		{"SIGKILL Redis, appendfsync always", func(ph *phase) error {
			return r.restartRedis(ctx, ph, syscall.SIGKILL)
		}},
		{"SIGKILL Redis, appendfsync everysec", func(ph *phase) error {
			ph.lossAllowed = "everysec: the last second of acknowledged writes may be lost"
			if err := r.setFsync(ctx, "everysec"); err != nil {
				return err
			}
			steady()
			return r.restartRedis(ctx, ph, syscall.SIGKILL)
		}},
	}...)
	for _, s := range steps {
		ph := r.begin(s.name)
		if !steady() {
			return ctx.Err()
		}
		if err := s.run(ph); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := r.recovered(ctx); err != nil {
			return fmt.Errorf("%s: not recovered: %w", s.name, err)
		}
		if !steady() {
			return ctx.Err()
		}
	}
	return nil
}

// entry is one stream entry, as the check needs it.
type entry struct {
	id    chat.ID
	nonce string
	from  string
}

func (r *chaosRun) readStream(ctx context.Context, room string) ([]entry, error) {
	msgs, err := r.rdb.XRange(ctx, "chat:{"+room+"}:log", "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("xrange %s: %w", room, err)
	}
	out := make([]entry, 0, len(msgs))
	for _, m := range msgs {
		id, err := chat.ParseID(m.ID)
		if err != nil {
			return nil, err
		}
		nonce, _ := m.Values["nonce"].(string)
		from, _ := m.Values["from"].(string)
		out = append(out, entry{id: id, nonce: nonce, from: from})
	}
	return out, nil
}

// tally is one phase's row of the table.
type tally struct {
	reconnected                 map[*chaosClient]bool
	recovery                    []time.Duration
	sends, retried, deduped     int
	lostAcked, missed, vanished int
	duplicated, reordered       int
}

func (r *chaosRun) phaseOf(t time.Time) int {
	i := sort.Search(len(r.phases), func(i int) bool { return r.phases[i].start.After(t) })
	return max(0, i-1)
}

func (r *chaosRun) report(ctx context.Context, w io.Writer) error {
	tallies := make([]tally, len(r.phases))
	for i := range tallies {
		tallies[i].reconnected = map[*chaosClient]bool{}
	}
	at := func(id chat.ID) *tally { return &tallies[r.phaseOf(time.UnixMilli(int64(id.Ms)))] }
	streams := map[string][]entry{}
	for room := range r.byRoom {
		s, err := r.readStream(ctx, room)
		if err != nil {
			return err
		}
		streams[room] = s
	}
	// Acknowledged sends: each in its room's stream, once per nonce.
	for _, s := range r.sent {
		t := &tallies[r.phaseOf(s.at)]
		t.sends++
		if s.retried {
			t.retried++
		}
		if s.duplicate {
			t.deduped++
		}
	}
	for room, stream := range streams {
		have := map[chat.ID]bool{}
		perNonce := map[string]int{}
		for _, e := range stream {
			have[e.id] = true
			if e.nonce != "" {
				perNonce[e.from+"\x00"+e.nonce]++
				if perNonce[e.from+"\x00"+e.nonce] > 1 {
					at(e.id).duplicated++
				}
			}
		}
		for _, s := range r.sent {
			if s.room == room && !have[s.id] {
				at(s.id).lostAcked++
			}
		}
	}
	// Every client's log against its room's stream.
	for _, c := range r.clients {
		c.mu.Lock()
		stream := streams[c.room]
		ids := make([]chat.ID, len(stream))
		for i, e := range stream {
			ids[i] = e.id
		}
		for _, v := range checkViews(ids, c.start, c.views) {
			t := at(v.id)
			switch v.kind {
			case vLost:
				t.missed++
			case vVanished:
				t.vanished++
			case vDuplicated:
				t.duplicated++
			case vReordered:
				t.reordered++
			}
		}
		for _, h := range c.hellos {
			i := r.phaseOf(h)
			tallies[i].reconnected[c] = true
			var fault time.Time
			for _, f := range r.phases[i].faults {
				if !f.After(h) {
					fault = f
				}
			}
			if fault.IsZero() {
				continue
			}
			for _, rd := range c.readys {
				if !rd.Before(h) {
					tallies[i].recovery = append(tallies[i].recovery, rd.Sub(fault))
					break
				}
			}
		}
		c.mu.Unlock()
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault\treconnected\trecover p50\trecover p99\tsends\tretried\tdeduplicated\tacked lost\tmissed\tshown then lost\tduplicated\treordered\t")
	var broken []string
	for i, ph := range r.phases {
		t := tallies[i]
		p50, p99 := "-", "-"
		if len(t.recovery) > 0 {
			sort.Slice(t.recovery, func(a, b int) bool { return t.recovery[a] < t.recovery[b] })
			p50 = t.recovery[len(t.recovery)/2].Round(time.Millisecond).String()
			p99 = t.recovery[(len(t.recovery)*99)/100].Round(time.Millisecond).String()
		}
		name := ph.name
		if ph.lossAllowed != "" {
			name += " *"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, len(t.reconnected), p50, p99,
			t.sends, t.retried, t.deduped, t.lostAcked, t.missed, t.vanished, t.duplicated, t.reordered)
		if (t.lostAcked+t.missed+t.vanished > 0 && ph.lossAllowed == "") || t.duplicated+t.reordered > 0 {
			broken = append(broken, ph.name)
		}
	}
	tw.Flush()
	for _, ph := range r.phases {
		if ph.lossAllowed != "" {
			fmt.Fprintf(w, "* %s: reported, not a failure (%s)\n", ph.name, ph.lossAllowed)
		}
	}
	fmt.Fprintf(w, "%d clients, %d rooms, %d acknowledged sends, %d never acknowledged\n", len(r.clients), len(r.byRoom), len(r.sent), len(r.failed))
	for _, f := range r.failed {
		fmt.Fprintln(w, "  never acknowledged:", f)
	}
	if len(r.failed) > 0 {
		broken = append(broken, "sends never acknowledged")
	}
	if len(broken) > 0 {
		return fmt.Errorf("%w: %s", errViolations, strings.Join(broken, "; "))
	}
	fmt.Fprintln(w, "no acknowledged send lost, no duplicate, no reordering")
	return nil
}

// smallReceiveBuffer is an HTTP client whose connections have a 4 KiB
// socket receive buffer, set before connecting so the TCP window stays small.
func smallReceiveBuffer() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
