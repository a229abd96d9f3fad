package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"
)

// The abuse run (make abuse): normal rooms with checked traffic on two
// replicas, and beside them connections that send random bytes, huge and
// half-written frames, invalid UTF-8 and floods, bursts of handshakes,
// sockets that never read and idle keep-alive sockets. The normal clients
// must lose nothing, the replicas must stay up, and their memory and open
// descriptors must stay bounded and come back down.

type abuseConfig struct {
	gateway, redis string
	rooms, clients int
	duration       time.Duration
	maxPeakRSS     int64 // MiB a replica may reach
	keep           bool
}

func abuseMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chatload abuse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := abuseConfig{}
	fs.StringVar(&c.gateway, "gateway", "bin/gateway", "gateway binary")
	fs.StringVar(&c.redis, "redis-server", "redis-server", "redis-server binary")
	fs.IntVar(&c.rooms, "rooms", 3, "normal rooms")
	fs.IntVar(&c.clients, "clients", 6, "normal clients per room (two publish)")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "how long the abuse goes on")
	fs.Int64Var(&c.maxPeakRSS, "max-rss", 512, "MiB of resident memory a replica may reach")
	full := fs.Bool("full", false, "the full form: 90 s of abuse")
	fs.BoolVar(&c.keep, "keep", false, "keep the logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *full {
		c.duration = 90 * time.Second
	}
	return runAbuse(ctx, c, stdout, stderr)
}

// gauge is one replica's resident memory, Go heap and open descriptors
// over the run. Descriptors are split: connections to Redis belong to
// pools that are capped and let idle connections go after a minute; every
// other descriptor is the clients' and must come back down at once.
type gauge struct {
	name                       string
	pid                        int
	metrics                    string
	redisPort                  int
	baseRSS, peakRSS, rss      int64 // KiB
	baseHeap, peakHeap, heap   float64
	baseFDs, peakFDs, fds      int
	baseRedis, peakRedis, rdbs int
	died                       bool
}

// fdCounts counts pid's open descriptors, and among them its TCP
// connections to port.
func fdCounts(pid, port int) (total, toPort int) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1, -1
	}
	remote := socketPorts(pid)
	for _, e := range ents {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && remote[strings.TrimSuffix(inode, "]")] == port {
			toPort++
		}
	}
	return len(ents), toPort
}

// socketPorts maps the inode of each TCP socket in pid's network namespace
// to its remote port (/proc/PID/net/tcp and tcp6).
func socketPorts(pid int) map[string]int {
	out := map[string]int{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 10 {
				continue
			}
			_, portHex, _ := strings.Cut(fields[2], ":")
			var port int
			_, _ = fmt.Sscanf(portHex, "%X", &port)
			out[fields[9]] = port
		}
	}
	return out
}

func (g *gauge) sample() {
	s, err := sample(proc{Name: g.name, PID: g.pid})
	if err != nil {
		g.died = true
		return
	}
	total, rdbs := fdCounts(g.pid, g.redisPort)
	g.rss, g.fds, g.rdbs = s.rssKiB, total-rdbs, rdbs
	g.heap = scrapeCounter(g.metrics, "go_memstats_heap_inuse_bytes") / (1 << 20)
	g.peakRSS, g.peakFDs, g.peakRedis, g.peakHeap = max(g.peakRSS, g.rss), max(g.peakFDs, g.fds), max(g.peakRedis, g.rdbs), max(g.peakHeap, g.heap)
}

// abuser is one kind of bad client: run starts connections of its kind
// until ctx ends; counts are what it did and what came of it.
type abuser struct {
	name    string
	run     func(ctx context.Context, a *abuser)
	tried   atomic.Int64 // connections attempted
	refused atomic.Int64 // handled by the server as they should be
	cut     atomic.Int64 // still going when the run ended
}

func runAbuse(ctx context.Context, cfg abuseConfig, stdout, stderr io.Writer) (err error) {
	dir, err := os.MkdirTemp("", "chatload-abuse")
	if err != nil {
		return err
	}
	defer func() { keepOrRemove(dir, cfg.keep || err != nil, stderr) }()
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
	rport, err := freePort()
	if err != nil {
		return err
	}
	rd := redisDaemon(cfg.redis, dir, rport, "--appendonly", "no")
	if err := rd.start(); err != nil {
		return err
	}
	defer rd.stop(syscall.SIGTERM, 10*time.Second)
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rport)})
	defer rdb.Close()
	if err := waitUntil(ctx, 15*time.Second, func() bool { return redisUp(ctx, rdb) }); err != nil {
		return fmt.Errorf("redis-server did not start: %w", err)
	}
	var gws []*daemon
	var addrs []string
	for i := range 2 {
		port, err := freePort()
		if err != nil {
			return err
		}
		g := gatewayDaemon(cfg.gateway, dir, i, port, rport,
			// Short timeouts, so what abusers hold is let go within the run.
			"CHAT_PING_INTERVAL=2s", "CHAT_WRITE_TIMEOUT=3s", "CHAT_HTTP_IDLE_TIMEOUT=2s", "CHAT_HTTP_READ_TIMEOUT=5s",
			// Floods must not trim the normal rooms' entries before the check.
			"CHAT_STREAM_MAXLEN=10000000",
			"CHAT_LOG_LEVEL=warn")
		if err := g.start(); err != nil {
			return err
		}
		defer g.stop(syscall.SIGTERM, 15*time.Second)
		gws = append(gws, g)
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	for i, a := range addrs {
		if err := waitUntil(ctx, 30*time.Second, func() bool { return httpOK("http://" + a + "/readyz") }); err != nil {
			return fmt.Errorf("%s not ready: %w\n%s", gws[i].name, err, gws[i].tail(20))
		}
	}

	// Normal traffic, checked as the fault run checks it.
	normal := &chaosRun{cfg: chaosConfig{rooms: cfg.rooms, clients: cfg.clients, publishers: 2, rate: 4}, log: stderr,
		byRoom: map[string][]*chaosClient{}, rdb: rdb}
	defer normal.disconnect()
	for room := range cfg.rooms {
		for i := range cfg.clients {
			if err := normal.join(ctx, addrs[(room+i)%2], fmt.Sprintf("normal-%d", room), fmt.Sprintf("n%d", i), fromAddr("127.0.0.2")); err != nil {
				return fmt.Errorf("normal client: %w", err)
			}
		}
	}
	if err := normal.waitStarted(ctx); err != nil {
		return fmt.Errorf("normal clients: %w", err)
	}
	normal.begin("abuse")
	if err := normal.recovered(ctx); err != nil {
		return fmt.Errorf("normal clients: %w", err)
	}
	// Baseline: the replicas with the normal clients and nothing else.
	gauges := make([]*gauge, len(gws))
	for i, g := range gws {
		gauges[i] = &gauge{name: g.name, pid: g.pid(), metrics: "http://" + addrs[i] + "/metrics", redisPort: rport}
		gauges[i].sample()
		gauges[i].baseRSS, gauges[i].baseFDs, gauges[i].baseRedis, gauges[i].baseHeap = gauges[i].rss, gauges[i].fds, gauges[i].rdbs, gauges[i].heap
	}
	sampling, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sleepCtx(sampling, 100*time.Millisecond) {
			for _, g := range gauges {
				g.sample()
			}
		}
	}()

	traffic, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	pubsDone := normal.publish(traffic)
	abusing, stopAbuse := context.WithTimeout(ctx, cfg.duration)
	defer stopAbuse()
	abusers := abusersFor(addrs)
	var wg sync.WaitGroup
	logf("%d normal clients in %d rooms on 2 replicas; %d kinds of abuse for %s", len(normal.clients), cfg.rooms, len(abusers), cfg.duration)
	for _, a := range abusers {
		wg.Add(1)
		go func() { defer wg.Done(); a.run(abusing, a) }()
	}
	wg.Wait()
	stopAbuse()
	logf("abuse over; normal traffic goes on while the replicas let go")
	// Everything the abusers held must be let go: ping and write timeouts,
	// the idle timeout.
	settled := waitUntil(ctx, 30*time.Second, func() bool {
		for _, g := range gauges {
			if g.fds > g.baseFDs+8 {
				return false
			}
		}
		return true
	})
	stopTraffic()
	<-pubsDone
	if !waitGroupTimeout(&normal.sendWG, 60*time.Second) {
		return errors.New("normal sends still unacknowledged 60 s after the traffic stopped")
	}
	if err := normal.recovered(ctx); err != nil {
		return fmt.Errorf("normal clients after the abuse: %w", err)
	}
	stopSampling()
	<-sampled

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "abuse\tattempts\thandled as it should be\tcut short by the end\t")
	for _, a := range abusers {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", a.name, a.tried.Load(), a.refused.Load(), a.cut.Load())
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "replica\talive\tRSS MiB base\tpeak\tafter\theap MiB base\tpeak\tafter\tclient fds base\tpeak\tafter\tRedis conns base\tpeak\tafter\t")
	var broken []string
	for _, g := range gauges {
		alive := !g.died && httpOK("http://"+addrs[indexOf(gauges, g)]+"/healthz")
		fmt.Fprintf(tw, "%s\t%v\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t\n", g.name, alive,
			mib(g.baseRSS), mib(g.peakRSS), mib(g.rss), g.baseHeap, g.peakHeap, g.heap, g.baseFDs, g.peakFDs, g.fds, g.baseRedis, g.peakRedis, g.rdbs)
		if !alive {
			broken = append(broken, g.name+" died")
		}
		if mib(g.peakRSS) > float64(cfg.maxPeakRSS) {
			broken = append(broken, fmt.Sprintf("%s reached %.0f MiB", g.name, mib(g.peakRSS)))
		}
		if g.heap > g.baseHeap*2+16 {
			broken = append(broken, fmt.Sprintf("%s holds %.0f MiB of heap after the abuse (%.0f before)", g.name, g.heap, g.baseHeap))
		}
		// The command pool's cap, plus one blocking reader per active room.
		if g.peakRedis > 64+64 {
			broken = append(broken, fmt.Sprintf("%s opened %d Redis connections", g.name, g.peakRedis))
		}
	}
	tw.Flush()
	if settled != nil {
		broken = append(broken, "descriptors did not return to baseline within 30 s")
	}
	fmt.Fprintln(stdout)
	if err := normal.report(ctx, stdout); err != nil {
		broken = append(broken, err.Error())
	}
	if len(broken) > 0 {
		return fmt.Errorf("%w: %s", errViolations, strings.Join(broken, "; "))
	}
	fmt.Fprintln(stdout, "replicas alive, memory and descriptors back to baseline, normal traffic exact")
	return nil
}

// fromAddr is an HTTP client whose connections leave from ip: the normal
// clients are not the abusers' address, as on a real network, so the
// per-address cap keeps the abusers out and lets them in.
func fromAddr(ip string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func indexOf(gs []*gauge, g *gauge) int {
	for i := range gs {
		if gs[i] == g {
			return i
		}
	}
	return -1
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// every runs f every interval, up to limit at a time, until ctx ends.
func every(ctx context.Context, interval time.Duration, limit int, f func()) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	defer wg.Wait()
	for sleepCtx(ctx, interval) {
		select {
		case sem <- struct{}{}:
		default:
			continue // at the limit: skip a beat
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f()
		}()
	}
}

// untilClosed reads from c until the server closes it, limit passes or ctx
// ends, and counts the outcome: handled when the server closed it, cut
// when the run ended first.
func untilClosed(ctx context.Context, a *abuser, c net.Conn, limit time.Duration) {
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	switch {
	case !(errors.As(err, &ne) && ne.Timeout()):
		a.refused.Add(1)
	case ctx.Err() != nil:
		a.cut.Add(1)
	}
}

// rawWS opens a websocket by hand on a plain TCP connection, so frames can
// be written that no library would write.
func rawWS(addr, query string) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br, err := upgrade(c, addr, "/ws?"+query)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, br, nil
}

// upgrade makes the websocket handshake on c, a connection to host, for
// requestURI, and returns the reader holding whatever the server sent
// after it. A refusal with 429 is errTooMany.
func upgrade(c net.Conn, host, requestURI string) (*bufio.Reader, error) {
	key := make([]byte, 16)
	_, _ = crand.Read(key)
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n",
		requestURI, host, base64.StdEncoding.EncodeToString(key)); err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusSwitchingProtocols:
		return br, nil
	case http.StatusTooManyRequests:
		return nil, errTooMany
	}
	return nil, fmt.Errorf("handshake: %s", resp.Status)
}

// errTooMany is a handshake refused with 429: the per-address cap at work.
var errTooMany = errors.New("429: too many connections from this address")

// open is rawWS for an abuser: a refusal by the per-address cap counts as
// handled, as it should be.
func (a *abuser) open(addr, query string) (net.Conn, *bufio.Reader, bool) {
	c, br, err := rawWS(addr, query)
	if errors.Is(err, errTooMany) {
		a.refused.Add(1)
	}
	return c, br, err == nil
}

// frameHeader is a masked client frame header for a payload of n bytes.
func frameHeader(opcode byte, n uint64) []byte {
	h := []byte{0x80 | opcode}
	switch {
	case n < 126:
		h = append(h, 0x80|byte(n))
	case n <= 0xffff:
		h = append(h, 0x80|126, 0, 0)
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = append(h, 0x80|127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(h[2:], n)
	}
	return append(h, 0, 0, 0, 0) // a zero mask leaves the payload as is
}

// flood joins with query and sends text as fast as the server takes it,
// never reading, until the server lets go or the run ends.
func flood(ctx context.Context, a *abuser, addr, query, text string) {
	c, _, ok := a.open(addr, query)
	if !ok {
		return
	}
	defer c.Close()
	frame := append(frameHeader(0x1, uint64(len(text))), text...)
	_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	for ctx.Err() == nil {
		if _, err := c.Write(frame); err != nil {
			a.refused.Add(1) // the server let go of it
			return
		}
	}
	a.cut.Add(1)
}

// What readMatches looks for in the server's frames.
var (
	ackID     = regexp.MustCompile(`"type":"ack","nonce":"[^"]*","id":"([0-9]+-[0-9]+)"`)
	errorCode = regexp.MustCompile(`"type":"error","code":"([a-z_]+)"`)
)

// readMatches reads the server's frames on c until re has matched n times
// in them, or limit has passed, and returns the matches. Frames are read
// as bytes: the short JSON objects these abusers get are never split by
// a frame header.
func readMatches(c net.Conn, br *bufio.Reader, re *regexp.Regexp, n int, limit time.Duration) [][]string {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	var got []byte
	buf := make([]byte, 4096)
	for {
		if m := re.FindAllStringSubmatch(string(got), -1); len(m) >= n {
			return m
		}
		k, err := br.Read(buf)
		got = append(got, buf[:k]...)
		if err != nil {
			return re.FindAllStringSubmatch(string(got), -1)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return b
}

func abusersFor(addrs []string) []*abuser {
	pick := func(i int64) string { return addrs[int(i)%len(addrs)] }
	room := "room=normal-0&name=mallory"
	return []*abuser{
		{name: "random bytes instead of HTTP", run: func(ctx context.Context, a *abuser) {
			every(ctx, 20*time.Millisecond, 50, func() {
				c, err := net.DialTimeout("tcp", pick(a.tried.Add(1)), 2*time.Second)
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = c.Write(randomBytes(4096))
				untilClosed(ctx, a, c, 15*time.Second)
			})
		}},
		{name: "random bytes after the handshake", run: func(ctx context.Context, a *abuser) {
			every(ctx, 50*time.Millisecond, 50, func() {
				c, _, ok := a.open(pick(a.tried.Add(1)), room)
				if !ok {
					return
				}
				defer c.Close()
				_, _ = c.Write(randomBytes(8192))
				untilClosed(ctx, a, c, 15*time.Second)
			})
		}},
		{name: "a frame claiming 1 TiB", run: func(ctx context.Context, a *abuser) {
			every(ctx, 100*time.Millisecond, 20, func() {
				c, _, ok := a.open(pick(a.tried.Add(1)), room)
				if !ok {
					return
				}
				defer c.Close()
				_, _ = c.Write(frameHeader(0x1, 1<<40))
				_, _ = c.Write(make([]byte, 1<<16))
				untilClosed(ctx, a, c, 15*time.Second)
			})
		}},
		{name: "half a frame, then silence", run: func(ctx context.Context, a *abuser) {
			every(ctx, 200*time.Millisecond, 40, func() {
				c, _, ok := a.open(pick(a.tried.Add(1)), room)
				if !ok {
					return
				}
				defer c.Close()
				_, _ = c.Write(frameHeader(0x1, 1000))
				_, _ = c.Write([]byte(`{"type":"mess`))
				// Never another byte, never a pong: the ping timeout ends it.
				untilClosed(ctx, a, c, 20*time.Second)
			})
		}},
		{name: "invalid UTF-8 and bad JSON, fast", run: func(ctx context.Context, a *abuser) {
			every(ctx, 500*time.Millisecond, 4, func() {
				c, _, ok := a.open(pick(a.tried.Add(1)), room)
				if !ok {
					return
				}
				defer c.Close()
				errs := make(chan int, 1)
				go func() {
					// It reads its answers: error events, on a connection
					// that stays open.
					b, _ := io.ReadAll(c)
					errs <- strings.Count(string(b), `"type":"error"`)
				}()
				for _, p := range [][]byte{{0xff, 0xfe, 0xfd}, []byte(`{"type":`), []byte(`{"type":"message","text":"\ud800"}`), randomBytes(200)} {
					for range 20 {
						if _, err := c.Write(append(frameHeader(0x1, uint64(len(p))), p...)); err != nil {
							return
						}
					}
				}
				sleepCtx(ctx, 2*time.Second)
				_ = c.SetReadDeadline(time.Now())
				if <-errs > 0 {
					a.refused.Add(1)
				}
			})
		}},
		{name: "flood of messages, never reading", run: func(ctx context.Context, a *abuser) {
			every(ctx, time.Second, 4, func() { flood(ctx, a, pick(a.tried.Add(1)), "room=normal-1&name=flood", "spam spam spam spam") })
		}},
		{name: "typing flood, never reading", run: func(ctx context.Context, a *abuser) {
			every(ctx, time.Second, 2, func() { flood(ctx, a, pick(a.tried.Add(1)), "room=normal-0&name=typist", `{"type":"typing"}`) })
		}},
		{name: "edits and deletes of another's message, bad reactions", run: func(ctx context.Context, a *abuser) {
			every(ctx, time.Second, 2, func() {
				n := a.tried.Add(1)
				owner, obr, ok := a.open(pick(n), fmt.Sprintf("room=abuse-amend&name=owner&client=abuse-owner-%016d", n))
				if !ok {
					return
				}
				defer owner.Close()
				send := func(c net.Conn, frames ...string) bool {
					for _, f := range frames {
						if _, err := c.Write(append(frameHeader(0x1, uint64(len(f))), f...)); err != nil {
							return false
						}
					}
					return true
				}
				if !send(owner, `{"type":"message","text":"mine","nonce":"n1"}`) {
					return
				}
				acks := readMatches(owner, obr, ackID, 1, 5*time.Second)
				if len(acks) == 0 {
					return
				}
				id := acks[0][1]
				// Same name, another browser: not the author.
				thief, tbr, ok := a.open(pick(n+1), "room=abuse-amend&name=owner")
				if !ok {
					return
				}
				defer thief.Close()
				if !send(thief,
					`{"type":"edit","id":"`+id+`","text":"not yours","nonce":"e"}`,
					`{"type":"delete","id":"`+id+`","nonce":"d"}`,
					`{"type":"react","id":"`+id+`","emoji":"<script>","on":true,"nonce":"r"}`,
					`{"type":"react","id":"1-1","emoji":"👍","on":true,"nonce":"x"}`) {
					return
				}
				codes := map[string]int{}
				for _, m := range readMatches(thief, tbr, errorCode, 4, 5*time.Second) {
					codes[m[1]]++
				}
				if codes["forbidden"] == 2 && codes["bad_request"] == 1 && codes["not_found"] == 1 {
					a.refused.Add(1)
				}
			})
		}},
		{name: "a burst of 300 handshakes", run: func(ctx context.Context, a *abuser) {
			burst := func() {
				var wg sync.WaitGroup
				for i := range 300 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						a.tried.Add(1)
						dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
						defer cancel()
						ws, resp, err := websocket.Dial(dctx, fmt.Sprintf("ws://%s/ws?room=burst-%d&name=b%d", pick(int64(i)), i%10, i), nil)
						switch {
						case err == nil:
							_ = ws.CloseNow()
							a.refused.Add(1)
						case resp != nil && resp.StatusCode == http.StatusTooManyRequests:
							a.refused.Add(1) // the per-address cap
						}
					}()
				}
				wg.Wait()
			}
			burst()
			if sleepCtx(ctx, 5*time.Second) {
				burst()
			}
		}},
		{name: "joined, never reading", run: func(ctx context.Context, a *abuser) {
			every(ctx, 100*time.Millisecond, 50, func() {
				c, _, ok := a.open(pick(a.tried.Add(1)), "room=normal-2&name=deaf")
				if !ok {
					return
				}
				defer c.Close()
				// Not a byte read, so the server's pings go unanswered: it
				// must let go of the socket, which the peek sees as the end.
				time.Sleep(10 * time.Second)
				untilClosed(ctx, a, c, 20*time.Second)
			})
		}},
		{name: "idle keep-alive after one request", run: func(ctx context.Context, a *abuser) {
			every(ctx, 20*time.Millisecond, 200, func() {
				c, err := net.DialTimeout("tcp", pick(a.tried.Add(1)), 2*time.Second)
				if err != nil {
					return
				}
				defer c.Close()
				fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
				untilClosed(ctx, a, c, 15*time.Second)
			})
		}},
		{name: "headers a byte a second", run: func(ctx context.Context, a *abuser) {
			every(ctx, 200*time.Millisecond, 50, func() {
				c, err := net.DialTimeout("tcp", pick(a.tried.Add(1)), 2*time.Second)
				if err != nil {
					return
				}
				defer c.Close()
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n")
				for range 30 {
					if ctx.Err() != nil {
						a.cut.Add(1)
						return
					}
					if _, err := c.Write([]byte("X")); err != nil {
						a.refused.Add(1) // the header timeout let go of it
						return
					}
					time.Sleep(time.Second)
				}
			})
		}},
		{name: "bad handshakes", run: func(ctx context.Context, a *abuser) {
			bad := []string{"room=" + strings.Repeat("a", 5000), "room=UPPER&name=x", "name=%E2%80%AEevil", "name=" + strings.Repeat("n", 100),
				"name=ok&client=short", "name=ok&since=" + strings.Repeat("9", 60), "name=a%00b"}
			every(ctx, 20*time.Millisecond, 20, func() {
				i := a.tried.Add(1)
				c, br, err := rawWS(pick(i), bad[int(i)%len(bad)])
				if err != nil {
					a.refused.Add(1) // refused before the upgrade
					return
				}
				defer c.Close()
				_ = br
				// An error event, then the close: 1008 for a refusal, a ping
				// timeout for the one that is let in (a bad since is ignored).
				untilClosed(ctx, a, c, 20*time.Second)
			})
		}},
	}
}
