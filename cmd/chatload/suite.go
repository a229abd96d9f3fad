package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// suiteMain runs the standard comparison: a throwaway redis-server and
// gateway replicas started here, the same workload at several rates, in
// shared and then direct tail mode, reported side by side. With -conns it
// measures idle connections on one replica instead.
func suiteMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chatload suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gatewayBin := fs.String("gateway", "bin/gateway", "gateway binary")
	redisBin := fs.String("redis-server", "redis-server", "redis-server binary")
	replicas := fs.Int("replicas", 2, "gateway replicas")
	modes := fs.String("modes", "shared,direct", "tail modes to compare")
	rates := fs.String("rates", "10,50,100", "messages per second per room")
	rooms := fs.Int("rooms", 20, "rooms")
	clients := fs.Int("clients", 50, "clients per room")
	publishers := fs.Int("publishers", 2, "publishers per room")
	size := fs.Int("size", 64, "message bytes")
	duration := fs.Duration("duration", 30*time.Second, "publishing time per run")
	conns := fs.String("conns", "", "instead: idle connection steps on one replica, e.g. 10000,25000,50000")
	src := fs.String("src", "127.0.0.2-127.0.0.50", "source addresses for the clients")
	jsonDir := fs.String("json", "", "write each run's result as JSON into this directory")
	auth := fs.String("auth", "anonymous", `"jwt": the replicas sign clients in with tokens (and share each user's send budget in Redis)`)
	byRoom := fs.Bool("by-room", false, "put each room's clients on one replica (the old placement) instead of spreading them over all")
	receiverKind := fs.String("receiver", receiverPoll, `how clients read frames: "poll", one event loop for every receiving connection; "lean", a goroutine per connection scanning bytes; "client", pkg/client decoding each frame`)
	redisArgs := fs.String("redis-args", "", `extra redis-server arguments, e.g. "--appendonly yes --appendfsync always"`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	sources, err := parseSources(*src)
	if err != nil {
		return err
	}
	if *conns != "" {
		return connSuite(ctx, *gatewayBin, *redisBin, *conns, sources, stdout, stderr)
	}
	var rateList []float64
	for _, r := range strings.Split(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil {
			return fmt.Errorf("-rates: %w", err)
		}
		rateList = append(rateList, v)
	}
	modeList := strings.Split(*modes, ",")
	results := map[string]map[float64]*result{}
	redisClients := map[string]map[float64]int64{}
	failed := false
	for _, mode := range modeList {
		results[mode] = map[float64]*result{}
		redisClients[mode] = map[float64]int64{}
		for _, rate := range rateList {
			// A fresh Redis and fresh replicas per run, so memory and
			// connection counts are this run's alone.
			var secret []byte
			if *auth == "jwt" {
				secret = []byte("chatload-suite-secret-0123456789abcdef")
			}
			env, err := startEnv(ctx, *redisBin, *gatewayBin, *replicas, mode, stderr, secret, strings.Fields(*redisArgs)...)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "\n== %s mode, %g msg/s per room ==\n", mode, rate)
			cfg := loadConfig{
				URLs: env.urls, Rooms: *rooms, Clients: *clients, Publishers: *publishers, Rate: rate,
				Size: *size, Duration: *duration, Ramp: 1000, Sources: sources, Procs: env.procs, Progress: stderr, Secret: secret,
				ByRoom: *byRoom, Receiver: *receiverKind,
			}
			// This process too: its CPU per delivery shows whether the load
			// generator, rather than the servers, is what is measured.
			cfg.Procs = append(cfg.Procs, proc{Name: "chatload", PID: os.Getpid()})
			cfg.Sample = func() { redisClients[mode][rate] = env.connectedClients(ctx) }
			res, err := runLoad(ctx, cfg)
			env.stop()
			if err != nil {
				return err
			}
			printResult(stderr, res)
			results[mode][rate] = res
			failed = failed || !res.ok()
			if *jsonDir != "" {
				b, _ := json.MarshalIndent(res, "", "  ")
				_ = os.WriteFile(filepath.Join(*jsonDir, fmt.Sprintf("%s-%g.json", mode, rate)), b, 0o644)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	printComparison(stdout, modeList, rateList, results, redisClients, *rooms**clients)
	if failed {
		return errFailed
	}
	return nil
}

func printComparison(w io.Writer, modes []string, rates []float64, results map[string]map[float64]*result, redisClients map[string]map[float64]int64, conns int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "metric\t"
	for _, rate := range rates {
		for _, m := range modes {
			header += fmt.Sprintf("%g/s %s\t", rate, m)
		}
		if len(modes) == 2 {
			header += fmt.Sprintf("%g/s %s/%s\t", rate, modes[0], modes[1])
		}
	}
	fmt.Fprintln(tw, header)
	row := func(name string, get func(r *result, mode string, rate float64) float64, format string) {
		line := name + "\t"
		for _, rate := range rates {
			var vals []float64
			for _, m := range modes {
				r := results[m][rate]
				if r == nil {
					line += "-\t"
					vals = append(vals, 0)
					continue
				}
				v := get(r, m, rate)
				vals = append(vals, v)
				line += fmt.Sprintf(format, v) + "\t"
			}
			if len(modes) == 2 {
				if vals[1] != 0 {
					line += fmt.Sprintf("%.2f", vals[0]/vals[1]) + "\t"
				} else {
					line += "-\t"
				}
			}
		}
		fmt.Fprintln(tw, line)
	}
	row("connections", func(r *result, _ string, _ float64) float64 { return float64(r.Connected) }, "%.0f")
	row("deliveries/s", func(r *result, _ string, _ float64) float64 { return r.DeliveriesPerSec }, "%.0f")
	row("lost+dup+ooo", func(r *result, _ string, _ float64) float64 { return float64(r.Lost + r.Duplicated + r.OutOfOrder) }, "%.0f")
	for _, q := range []string{"p50", "p99", "p99.9"} {
		row(q+" ms", func(r *result, _ string, _ float64) float64 { return float64(r.LatencyMicros[q]) / 1000 }, "%.2f")
	}
	row("gateway CPU µs/delivery", func(r *result, _ string, _ float64) float64 { return r.CPUMicrosPerDeliv["gateway"] }, "%.2f")
	row("gateway syscalls/delivery", func(r *result, _ string, _ float64) float64 { return r.SyscallsPerDeliv["gateway"] }, "%.2f")
	row("redis CPU µs/delivery", func(r *result, _ string, _ float64) float64 { return r.CPUMicrosPerDeliv["redis"] }, "%.2f")
	row("chatload CPU µs/delivery", func(r *result, _ string, _ float64) float64 { return r.CPUMicrosPerDeliv["chatload"] }, "%.2f")
	row("redis connected_clients", func(_ *result, m string, rate float64) float64 { return float64(redisClients[m][rate]) }, "%.0f")
	row("gateway RSS KiB/conn", func(r *result, _ string, _ float64) float64 { return r.RSSKiBPerConn["gateway"] }, "%.1f")
	tw.Flush()
	fmt.Fprintf(w, "(%d connections; CPU is both replicas' user+system time over the publishing window and drain)\n", conns)
}

// env is a redis-server and gateway replicas started for a run.
type env struct {
	urls  []string
	procs []proc
	cmds  []*exec.Cmd
	dir   string
	redis *redis.Client
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEnv(ctx context.Context, redisBin, gatewayBin string, replicas int, mode string, logw io.Writer, secret []byte, redisArgs ...string) (*env, error) {
	e := &env{}
	var err error
	if e.dir, err = os.MkdirTemp("", "chatload"); err != nil {
		return nil, err
	}
	rport, err := freePort()
	if err != nil {
		return nil, err
	}
	rcmd := exec.Command(redisBin, "--port", strconv.Itoa(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", e.dir, "--maxclients", "20000", "--loglevel", "warning")
	rcmd.Args = append(rcmd.Args, redisArgs...)
	// Its own log goes to a file beside its data, not into the table;
	// it is printed only when the server does not start.
	rlog, err := os.Create(filepath.Join(e.dir, "redis.log"))
	if err != nil {
		return nil, err
	}
	defer rlog.Close()
	rcmd.Stdout, rcmd.Stderr = rlog, rlog
	if err := rcmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	e.cmds = append(e.cmds, rcmd)
	e.procs = append(e.procs, proc{Name: "redis", PID: rcmd.Process.Pid})
	e.redis = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rport)})
	if err := waitFor(ctx, func() bool { return e.redis.Ping(ctx).Err() == nil }); err != nil {
		out, _ := os.ReadFile(rlog.Name())
		e.stop()
		return nil, fmt.Errorf("redis-server did not start: %w\n%s", err, out)
	}
	for i := range replicas {
		port, err := freePort()
		if err != nil {
			e.stop()
			return nil, err
		}
		cmd := exec.Command(gatewayBin)
		cmd.Env = append(os.Environ(),
			fmt.Sprintf("CHAT_ADDR=127.0.0.1:%d", port),
			fmt.Sprintf("CHAT_REDIS_URL=redis://127.0.0.1:%d", rport),
			fmt.Sprintf("CHAT_REPLICA_ID=bench-%d", i),
			"CHAT_TAIL_MODE="+mode,
			// Publishers send up to 50 messages/s each; the default
			// per-connection limit (5/s) is for people.
			"CHAT_RATE=1000", "CHAT_BURST=1000",
			"CHAT_LOG_LEVEL=warn",
			"CHAT_ALLOWED_ORIGINS=*",
			// The load comes from a few loopback addresses.
			"CHAT_MAX_CONNS_PER_IP=0",
		)
		if secret != nil {
			cmd.Env = append(cmd.Env, "CHAT_AUTH=jwt", "CHAT_JWT_SECRET="+string(secret))
		}
		cmd.Stdout, cmd.Stderr = logw, logw
		if err := cmd.Start(); err != nil {
			e.stop()
			return nil, fmt.Errorf("start %s: %w", gatewayBin, err)
		}
		e.cmds = append(e.cmds, cmd)
		e.procs = append(e.procs, proc{Name: "gateway", PID: cmd.Process.Pid})
		base := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitFor(ctx, func() bool {
			resp, err := http.Get("http://" + base + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == http.StatusOK
		}); err != nil {
			e.stop()
			return nil, fmt.Errorf("gateway did not start: %w", err)
		}
		e.urls = append(e.urls, "ws://"+base)
	}
	return e, nil
}

func (e *env) connectedClients(ctx context.Context) int64 {
	info, err := e.redis.Info(ctx, "clients").Result()
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n - 1 // not counting this measuring connection
		}
	}
	return -1
}

// stop ends the gateways (SIGTERM, so they drain) and then Redis.
func (e *env) stop() {
	for i := len(e.cmds) - 1; i >= 0; i-- {
		cmd := e.cmds[i]
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	if e.redis != nil {
		_ = e.redis.Close()
	}
	os.RemoveAll(e.dir)
}

func waitFor(ctx context.Context, ok func() bool) error {
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

// connSuite opens idle connections on one replica in steps and reports the
// memory each costs and how fast they connect.
func connSuite(ctx context.Context, gatewayBin, redisBin, steps string, sources []net.IP, stdout, stderr io.Writer) error {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "connections\tconnected\tconnect/s\tgateway RSS KiB/conn\tgateway RSS MiB\t")
	for _, s := range strings.Split(steps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-conns: %w", err)
		}
		// Each connection is a file descriptor in the gateway and another
		// here; both processes share this limit.
		if uint64(n)+512 > lim.Cur {
			fmt.Fprintf(tw, "%d\tnot possible here: RLIMIT_NOFILE is %d per process\t\t\t\t\n", n, lim.Cur)
			continue
		}
		e, err := startEnv(ctx, redisBin, gatewayBin, 1, "shared", stderr, nil)
		if err != nil {
			return err
		}
		rooms := max(1, n/50)
		res, err := runLoad(ctx, loadConfig{
			URLs: e.urls, Rooms: rooms, Clients: n / rooms, Publishers: 0, Rate: 1, Size: 64,
			Duration: 3 * time.Second, Ramp: 5000, Sources: sources, Procs: e.procs, Progress: stderr, Idle: true,
		})
		e.stop()
		if err != nil {
			return err
		}
		var rss int64
		for _, p := range res.Procs {
			if p.Name == "gateway" {
				rss += p.RSSKiB
			}
		}
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.1f\t%.0f\t\n", n, res.Connected, res.ConnectRate, res.RSSKiBPerConn["gateway"], float64(rss)/1024)
		if ctx.Err() != nil {
			break
		}
	}
	return tw.Flush()
}
