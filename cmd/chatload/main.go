// Command chatload is the load generator and delivery checker of streamchat.
// It opens many websocket clients across gateway replicas, publishes
// time-stamped, sequenced messages, and checks that every receiver gets
// every message published after its ready exactly once and in stream order,
// recording send→receive latency in an HDR histogram. It exits non-zero on
// any loss, duplicate or reordering.
//
//	chatload -url ws://127.0.0.1:8081,ws://127.0.0.1:8082 -rooms 20 -clients 50 -publishers 2 -rate 10 -duration 30s
//
// "chatload suite" runs the standard comparison (see the README and
// BENCHMARKS.md): it starts its own redis-server and gateway replicas.
// "chatload floor" measures the cheapest delivery this machine allows, one
// write(2) of a pre-encoded frame to a waiting loopback reader.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "suite":
		err = suiteMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "chaos":
		err = chaosMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "floor":
		err = floorMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "abuse":
		err = abuseMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
	default:
		err = loadMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(1)
	}
}

var errFailed = errors.New("deliveries were not exact")

func loadMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chatload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	urls := fs.String("url", "ws://127.0.0.1:8080", "comma-separated gateway URLs; clients are spread round-robin")
	rooms := fs.Int("rooms", 20, "rooms")
	clients := fs.Int("clients", 50, "clients per room, publishers included")
	publishers := fs.Int("publishers", 2, "publishers per room")
	rate := fs.Float64("rate", 10, "messages per second per room")
	size := fs.Int("size", 64, "message bytes")
	duration := fs.Duration("duration", 30*time.Second, "publishing time")
	ramp := fs.Float64("ramp", 500, "new connections per second")
	src := fs.String("src", "", "source address range for connections, e.g. 127.0.0.2-127.0.0.50")
	pids := fs.String("pids", "", "processes to measure, e.g. gateway=123,gateway=456,redis=789")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file")
	idle := fs.Bool("idle", false, "connect and hold only, publishing nothing")
	byRoom := fs.Bool("by-room", false, "put each room's clients on one gateway (the old placement) instead of spreading them over all")
	receiverKind := fs.String("receiver", receiverPoll, `how clients read frames: "poll", one event loop for every receiving connection; "lean", a goroutine per connection scanning bytes; "client", pkg/client decoding each frame`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := loadConfig{
		URLs: strings.Split(*urls, ","), Rooms: *rooms, Clients: *clients, Publishers: *publishers,
		Rate: *rate, Size: *size, Duration: *duration, Ramp: *ramp, Progress: stderr, Idle: *idle,
		ByRoom: *byRoom, Receiver: *receiverKind,
	}
	var err error
	if cfg.Sources, err = parseSources(*src); err != nil {
		return err
	}
	if cfg.Procs, err = parseProcs(*pids); err != nil {
		return err
	}
	cfg.Procs = append(cfg.Procs, proc{Name: "chatload", PID: os.Getpid()})
	if cfg.Rooms < 1 || cfg.Clients < 1 || cfg.Rate <= 0 || cfg.Size < 32 || cfg.Ramp <= 0 {
		return errors.New("-rooms, -clients, -rate and -ramp must be positive and -size at least 32")
	}
	res, err := runLoad(ctx, cfg)
	if err != nil {
		return err
	}
	printResult(stdout, res)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if !res.ok() {
		return fmt.Errorf("%w: %s", errFailed, strings.Join(res.Failures, ", "))
	}
	return nil
}

// parseSources expands "a.b.c.d-a.b.c.e" (or a comma list) into addresses.
func parseSources(s string) ([]net.IP, error) {
	if s == "" {
		return nil, nil
	}
	var out []net.IP
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		first := net.ParseIP(lo).To4()
		last := first
		if isRange {
			last = net.ParseIP(hi).To4()
		}
		if first == nil || last == nil {
			return nil, fmt.Errorf("-src %q: want IPv4 addresses or a range a-b", part)
		}
		for ip := ipToInt(first); ip <= ipToInt(last); ip++ {
			out = append(out, net.IPv4(byte(ip>>24), byte(ip>>16), byte(ip>>8), byte(ip)))
			if len(out) > 65536 {
				return nil, fmt.Errorf("-src %q: range too large", part)
			}
		}
	}
	return out, nil
}

func ipToInt(ip net.IP) uint32 {
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

func printResult(w io.Writer, r *result) {
	fmt.Fprintf(w, "\n%-22s %d (%d errors) in %.1fs, %.0f/s\n", "connected", r.Connected, r.ConnectErrors, r.ConnectSeconds, r.ConnectRate)
	fmt.Fprintf(w, "%-22s %d (%d errors)\n", "sent", r.Sent, r.SendErrors)
	fmt.Fprintf(w, "%-22s %d\n", "expected deliveries", r.Expected)
	fmt.Fprintf(w, "%-22s %d\n", "delivered", r.Delivered)
	fmt.Fprintf(w, "%-22s %d\n", "lost", r.Lost)
	fmt.Fprintf(w, "%-22s %d\n", "duplicated", r.Duplicated)
	fmt.Fprintf(w, "%-22s %d\n", "out of order", r.OutOfOrder)
	fmt.Fprintf(w, "%-22s %.0f over %.1fs\n", "deliveries/s", r.DeliveriesPerSec, r.Window)
	l := r.LatencyMicros
	fmt.Fprintf(w, "%-22s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", "latency", micros(l["p50"]), micros(l["p90"]), micros(l["p99"]), micros(l["p99.9"]), micros(l["max"]))
	for _, p := range r.Procs {
		fmt.Fprintf(w, "%-22s pid %d: %.2f CPU-s, RSS %d KiB (peak %d KiB)\n", p.Name, p.PID, p.CPUSeconds, p.RSSKiB, p.PeakRSSKiB)
	}
	for name, us := range r.CPUMicrosPerDeliv {
		fmt.Fprintf(w, "%-22s %.2f µs per delivery\n", name+" CPU", us)
	}
	for name, n := range r.SyscallsPerDeliv {
		fmt.Fprintf(w, "%-22s %.2f per delivery\n", name+" syscalls", n)
	}
	for name, kib := range r.RSSKiBPerConn {
		fmt.Fprintf(w, "%-22s %.1f KiB per connection\n", name+" RSS", kib)
	}
}
