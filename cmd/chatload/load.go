package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/client"
	"github.com/streamchat/streamchat/pkg/token"
)

// loadConfig is one workload.
type loadConfig struct {
	URLs []string // gateway base URLs (ws://host:port)
	// ByRoom puts all of a room's clients on one gateway (room i on URL
	// i%len(URLs)), the placement of earlier runs. By default each room's
	// clients are spread over every gateway, as a load balancer would.
	ByRoom     bool
	Rooms      int
	Clients    int     // per room, publishers included
	Publishers int     // per room
	Rate       float64 // messages per second per room
	Size       int     // message bytes
	Duration   time.Duration
	Ramp       float64  // connections per second
	Sources    []net.IP // local addresses to spread connections over
	Procs      []proc   // processes whose CPU and memory to report
	Progress   io.Writer
	Idle       bool   // connect and hold only: no publishing
	Sample     func() // called once publishing ends, connections still open
	// Secret, when set, signs every client in with an HS256 token (the
	// gateways run CHAT_AUTH=jwt with this CHAT_JWT_SECRET).
	Secret []byte
	// Receiver is how clients read: receiverPoll (the default),
	// receiverLean or receiverClient.
	Receiver string
}

// result is what one run measured.
type result struct {
	Config struct {
		Rooms, Clients, Publishers, Size int
		Rate                             float64
		Duration                         string
	} `json:"config"`
	Connected          int64              `json:"connected"`
	ConnectErrors      int64              `json:"connect_errors"`
	ConnectSeconds     float64            `json:"connect_seconds"`
	ConnectRate        float64            `json:"connect_rate"`
	Sent               int64              `json:"sent"`
	SendErrors         int64              `json:"send_errors"`
	Expected           int64              `json:"expected_deliveries"`
	Delivered          int64              `json:"delivered"`
	Lost               int64              `json:"lost"`
	Duplicated         int64              `json:"duplicated"`
	OutOfOrder         int64              `json:"out_of_order"`
	Window             float64            `json:"window_seconds"`
	DeliveriesPerSec   float64            `json:"deliveries_per_second"`
	LatencyMicros      map[string]int64   `json:"latency_us"`
	Procs              []procUsage        `json:"processes,omitempty"`
	CPUMicrosPerDeliv  map[string]float64 `json:"cpu_us_per_delivery,omitempty"`
	SyscallsPerDeliv   map[string]float64 `json:"syscalls_per_delivery,omitempty"`
	RSSKiBPerConn      map[string]float64 `json:"rss_kib_per_connection,omitempty"`
	Failures           []string           `json:"failures,omitempty"`
	latency            *hdrhistogram.Histogram
	idleRSSBeforeConns map[string]int64
}

// ok reports whether every delivery was exact.
func (r *result) ok() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.OutOfOrder == 0 && r.SendErrors == 0 && r.ConnectErrors == 0
}

// receiver is one connection's view of its room: what it must see and what
// it saw.
type receiver struct {
	room   *room
	conn   loadConn
	ready  atomic.Bool
	cursor chat.ID // ready.cursor: every message after it must arrive

	mu        sync.Mutex
	last      chat.ID
	lastSeq   []int64 // per publisher; -1 before the first
	delivered int64
	dups      int64
	ooo       int64
	gaps      int64
}

type room struct {
	name      string
	mu        sync.Mutex
	latency   *hdrhistogram.Histogram
	published []chat.ID // acknowledged message IDs
	receivers []*receiver
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, 60_000_000, 3) // 1 µs .. 60 s, 3 significant digits
}

// messageText is "pub seq unixnano " padded to size bytes, so a receiver
// knows who sent it, in which order, and when.
func messageText(pub int, seq int64, size int) string {
	s := strconv.Itoa(pub) + " " + strconv.FormatInt(seq, 10) + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + " "
	if len(s) < size {
		s += strings.Repeat("x", size-len(s))
	}
	return s
}

func parseText(text string) (pub int, seq int64, sent int64, ok bool) {
	f := strings.SplitN(text, " ", 4)
	if len(f) < 3 {
		return 0, 0, 0, false
	}
	p, err1 := strconv.Atoi(f[0])
	s, err2 := strconv.ParseInt(f[1], 10, 64)
	t, err3 := strconv.ParseInt(f[2], 10, 64)
	return p, s, t, err1 == nil && err2 == nil && err3 == nil
}

// onEvent is the client receiver's view of a decoded frame.
func (rc *receiver) onEvent(ev client.Event) {
	switch ev.Type {
	case "ready":
		if c, err := chat.ParseID(ev.Cursor); err == nil {
			rc.readyAt(c)
		}
	case "message":
		if !rc.ready.Load() || ev.Replay {
			return
		}
		now := time.Now().UnixNano()
		id, err := chat.ParseID(ev.ID)
		pub, seq, sent, ok := parseText(ev.Text)
		if err != nil || !ok {
			return // not ours
		}
		rc.message(id, pub, seq, sent, now)
	}
}

// onFrame is the lean receiver's view of a frame of type typ: it finds
// what it checks by scanning the bytes, and allocates nothing.
func (rc *receiver) onFrame(typ, b []byte) {
	switch {
	case bytes.Equal(typ, typeReady):
		if c, ok := parseIDBytes(field(b, fieldCursor)); ok {
			rc.readyAt(c)
		}
	case bytes.Equal(typ, typeMessage):
		if !rc.ready.Load() || bytes.Contains(b, replayTrue) {
			return
		}
		now := time.Now().UnixNano()
		id, ok1 := parseIDBytes(field(b, fieldID))
		pub, seq, sent, ok2 := parseTextBytes(field(b, fieldText))
		if !ok1 || !ok2 {
			return // not ours
		}
		rc.message(id, pub, seq, sent, now)
	}
}

func (rc *receiver) readyAt(cursor chat.ID) {
	if rc.ready.Load() {
		return
	}
	rc.cursor = cursor
	rc.mu.Lock()
	rc.last = cursor
	rc.mu.Unlock()
	rc.ready.Store(true)
}

// message checks one live message: after the last one, in each
// publisher's order, none missing.
func (rc *receiver) message(id chat.ID, pub int, seq, sent, now int64) {
	rc.mu.Lock()
	switch {
	case !rc.last.Less(id):
		if id == rc.last {
			rc.dups++
		} else {
			rc.ooo++
		}
	default:
		rc.last = id
		rc.delivered++
		if pub >= 0 && pub < len(rc.lastSeq) {
			if prev := rc.lastSeq[pub]; prev >= 0 && seq > prev+1 {
				rc.gaps += seq - prev - 1
			} else if prev >= 0 && seq <= prev {
				rc.ooo++
			}
			rc.lastSeq[pub] = seq
		}
	}
	rc.mu.Unlock()
	rc.room.mu.Lock()
	_ = rc.room.latency.RecordValue(max(1, (now-sent)/1000))
	rc.room.mu.Unlock()
}

// gatewayOf is the gateway of client i, which is in room i%rooms.
func gatewayOf(i, rooms, gateways int, byRoom bool) int {
	if byRoom {
		return (i % rooms) % gateways
	}
	// The k-th client of room r: the room's clients take the gateways in
	// turn, each room starting on a different one.
	k, r := i/rooms, i%rooms
	return (k + r) % gateways
}

// runLoad connects every client, publishes for the duration, waits for the
// deliveries to drain, and checks every receiver.
func runLoad(ctx context.Context, cfg loadConfig) (*result, error) {
	res := &result{LatencyMicros: map[string]int64{}}
	res.Config.Rooms, res.Config.Clients, res.Config.Publishers = cfg.Rooms, cfg.Clients, cfg.Publishers
	res.Config.Size, res.Config.Rate, res.Config.Duration = cfg.Size, cfg.Rate, cfg.Duration.String()
	if cfg.Clients < cfg.Publishers {
		return nil, errors.New("-clients must be at least -publishers")
	}
	transports := make([]*http.Client, max(1, len(cfg.Sources)))
	netDialers := make([]*net.Dialer, len(transports))
	for i := range transports {
		d := &net.Dialer{Timeout: 10 * time.Second}
		if len(cfg.Sources) > 0 {
			d.LocalAddr = &net.TCPAddr{IP: cfg.Sources[i]}
		}
		netDialers[i] = d
		transports[i] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: -1}}
	}
	dl, err := newDialer(cfg.Receiver)
	if err != nil {
		return nil, err
	}
	defer dl.Close() // after the connections close (deferred below)

	rooms := make([]*room, cfg.Rooms)
	runID := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)
	for i := range rooms {
		rooms[i] = &room{name: fmt.Sprintf("load-%s-%d", runID, i), latency: newHistogram()}
	}
	baseline := sampleAll(cfg.Procs)

	// Connect, ramped.
	total := cfg.Rooms * cfg.Clients
	var connected, connectErrors atomic.Int64
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.Ramp)
	start := time.Now()
	stopProgress := progress(ctx, cfg.Progress, func() string {
		return fmt.Sprintf("connecting %d/%d (errors %d)", connected.Load(), total, connectErrors.Load())
	})
	sem := make(chan struct{}, 256) // handshakes in flight
	for i := range total {
		if ctx.Err() != nil {
			break
		}
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		r := rooms[i%cfg.Rooms]
		rc := &receiver{room: r, lastSeq: make([]int64, cfg.Publishers)}
		for p := range rc.lastSeq {
			rc.lastSeq[p] = -1
		}
		r.receivers = append(r.receivers, rc)
		u := fmt.Sprintf("%s/ws?room=%s&name=u%d", strings.TrimSuffix(cfg.URLs[gatewayOf(i, cfg.Rooms, len(cfg.URLs), cfg.ByRoom)], "/"), url.QueryEscape(r.name), i)
		if cfg.Secret != nil {
			t, err := token.Mint(cfg.Secret, fmt.Sprint("u", i), "", nil, 24*time.Hour)
			if err != nil {
				return nil, err
			}
			u += "&token=" + t
		}
		hc, nd := transports[i%len(transports)], netDialers[i%len(transports)]
		publisher := i/cfg.Rooms < cfg.Publishers // the room's first clients publish
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := dl.dial(dctx, u, hc, nd, publisher, rc)
			if err != nil {
				if connectErrors.Add(1) <= 3 {
					fmt.Fprintf(cfg.Progress, "connect: %v\n", err)
				}
				return
			}
			rc.conn = c
			for !rc.ready.Load() && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
			connected.Add(1)
		}()
	}
	wg.Wait()
	stopProgress()
	res.ConnectSeconds = time.Since(start).Seconds()
	res.Connected, res.ConnectErrors = connected.Load(), connectErrors.Load()
	res.ConnectRate = float64(res.Connected) / res.ConnectSeconds
	defer func() {
		var cw sync.WaitGroup
		for _, r := range rooms {
			for _, rc := range r.receivers {
				if rc.conn != nil {
					cw.Add(1)
					go func() { defer cw.Done(); rc.conn.CloseNow() }()
				}
			}
		}
		cw.Wait()
	}()

	// Measure.
	before := sampleAll(cfg.Procs)
	peaks := watchPeaks(ctx, cfg.Procs)
	res.idleRSSBeforeConns = rssOf(baseline)
	window := time.Now()
	var sent, sendErrors atomic.Int64
	delivered := func() int64 {
		var n int64
		for _, r := range rooms {
			for _, rc := range r.receivers {
				rc.mu.Lock()
				n += rc.delivered
				rc.mu.Unlock()
			}
		}
		return n
	}
	// Merging every room's histogram costs this process as much as
	// thousands of deliveries, so the running p99 is refreshed every 10 s.
	var ticks int
	var p99 int64
	stopProgress = progress(ctx, cfg.Progress, func() string {
		if ticks%10 == 9 {
			h := newHistogram()
			for _, r := range rooms {
				r.mu.Lock()
				h.Merge(r.latency)
				r.mu.Unlock()
			}
			p99 = h.ValueAtQuantile(99)
		}
		ticks++
		return fmt.Sprintf("t=%3.0fs conns=%d sent=%d delivered=%d send_errors=%d p99=%s",
			time.Since(window).Seconds(), res.Connected, sent.Load(), delivered(), sendErrors.Load(), micros(p99))
	})
	if !cfg.Idle {
		pctx, cancel := context.WithTimeout(ctx, cfg.Duration)
		var pw sync.WaitGroup
		var scheduled []*pollPublisher
		// Publishers start at evenly spread phases of their interval, so the
		// load is steady instead of every publisher firing in the same instant.
		perPublisher := cfg.Rate / float64(cfg.Publishers)
		interval := time.Duration(float64(time.Second) / perPublisher)
		all := cfg.Rooms * cfg.Publishers
		k := 0
		begin := time.Now()
		for _, r := range rooms {
			for p := 0; p < cfg.Publishers && p < len(r.receivers); p++ {
				rc := r.receivers[p]
				phase := interval * time.Duration(k) / time.Duration(all)
				k++
				if rc.conn == nil {
					continue
				}
				if pc, ok := rc.conn.(*pollConn); ok {
					scheduled = append(scheduled, &pollPublisher{c: pc, r: r, pub: p, next: begin.Add(phase), interval: interval, sent: &sent, errs: &sendErrors})
					continue
				}
				pw.Add(1)
				go func() {
					defer pw.Done()
					publish(pctx, rc.conn, r, p, perPublisher, phase, cfg.Size, &sent, &sendErrors)
				}()
			}
		}
		if len(scheduled) > 0 {
			pw.Go(func() { runSchedule(pctx, scheduled, cfg.Size, 10*time.Second) })
		}
		pw.Wait()
		cancel()
	} else {
		sleepCtx(ctx, cfg.Duration)
	}
	publishEnd := time.Now()
	if cfg.Sample != nil {
		cfg.Sample()
	}

	// Expected deliveries: every acknowledged message after each
	// receiver's cursor.
	var expected int64
	for _, r := range rooms {
		sort.Slice(r.published, func(i, j int) bool { return r.published[i].Less(r.published[j]) })
		for _, rc := range r.receivers {
			if !rc.ready.Load() {
				continue
			}
			i := sort.Search(len(r.published), func(i int) bool { return rc.cursor.Less(r.published[i]) })
			expected += int64(len(r.published) - i)
		}
	}
	// Drain: in-flight deliveries get a few seconds to land.
	deadline := time.Now().Add(10 * time.Second)
	for delivered() < expected && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	after := sampleAll(cfg.Procs)
	stopProgress()

	res.Window = publishEnd.Sub(window).Seconds()
	res.Sent, res.SendErrors, res.Expected = sent.Load(), sendErrors.Load(), expected
	h := newHistogram()
	for _, r := range rooms {
		r.mu.Lock()
		h.Merge(r.latency)
		r.mu.Unlock()
		for _, rc := range r.receivers {
			rc.mu.Lock()
			res.Delivered += rc.delivered
			res.Duplicated += rc.dups
			res.OutOfOrder += rc.ooo
			rc.mu.Unlock()
		}
	}
	res.Lost = max(0, expected-res.Delivered)
	res.DeliveriesPerSec = float64(res.Delivered) / res.Window
	res.latency = h
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}} {
		res.LatencyMicros[q.name] = h.ValueAtQuantile(q.q)
	}
	res.LatencyMicros["max"] = h.Max()
	res.Procs = usage(before, after)
	peak := peaks()
	for i := range res.Procs {
		res.Procs[i].PeakRSSKiB = max(peak[res.Procs[i].PID], res.Procs[i].RSSKiB)
	}
	res.CPUMicrosPerDeliv = map[string]float64{}
	res.SyscallsPerDeliv = map[string]float64{}
	res.RSSKiBPerConn = map[string]float64{}
	for _, u := range res.Procs {
		if res.Delivered > 0 {
			res.CPUMicrosPerDeliv[u.Name] += u.CPUSeconds * 1e6 / float64(res.Delivered)
			res.SyscallsPerDeliv[u.Name] += float64(u.Syscalls) / float64(res.Delivered)
		}
	}
	for name, kib := range rssOf(after) {
		if res.Connected > 0 {
			res.RSSKiBPerConn[name] = float64(kib-res.idleRSSBeforeConns[name]) / float64(res.Connected)
		}
	}
	if res.Lost > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d deliveries lost", res.Lost))
	}
	if res.Duplicated > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d duplicated", res.Duplicated))
	}
	if res.OutOfOrder > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d out of order", res.OutOfOrder))
	}
	if res.SendErrors > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d sends failed", res.SendErrors))
	}
	if res.ConnectErrors > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d connections failed", res.ConnectErrors))
	}
	return res, nil
}

// publish sends at rate messages per second on a fixed schedule until ctx
// ends, recording every acknowledged ID.
func publish(ctx context.Context, c loadConn, r *room, pub int, rate float64, phase time.Duration, size int, sent, errs *atomic.Int64) {
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now().Add(phase)
	for seq := int64(0); ; seq++ {
		if !sleepCtx(ctx, time.Until(next)) {
			return
		}
		next = next.Add(interval)
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		id, err := c.send(sctx, messageText(pub, seq, size))
		cancel()
		if err != nil {
			errs.Add(1)
			continue
		}
		sent.Add(1)
		r.mu.Lock()
		r.published = append(r.published, id)
		r.mu.Unlock()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// progress prints line() every second until stopped.
func progress(ctx context.Context, w io.Writer, line func() string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintln(w, line())
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

func micros(us int64) string {
	switch {
	case us >= 1_000_000:
		return fmt.Sprintf("%.2fs", float64(us)/1e6)
	case us >= 1000:
		return fmt.Sprintf("%.2fms", float64(us)/1e3)
	}
	return fmt.Sprintf("%dµs", us)
}
