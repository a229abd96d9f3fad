// Command gateway runs one streamchat replica: websockets in, Redis Streams
// behind. Configuration comes from CHAT_* environment variables (see the
// README); SIGTERM or SIGINT drains connections and exits.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/streamchat/streamchat/pkg/config"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(2)
	}
	if len(os.Args) > 1 && os.Args[1] == "token" {
		if err := mintMain(cfg, os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "gateway token:", err)
			os.Exit(2)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		// For container health checks: distroless images have no shell or curl.
		if err := healthcheck(cfg.Addr, 3*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "gateway healthcheck:", err)
			os.Exit(1)
		}
		return
	}
	if os.Getenv("GOGC") == "" {
		// Most of a replica's heap is long-lived per-connection state, so
		// the default (GC when the heap doubles) mostly buys idle memory:
		// 50 cuts memory per connection by a fifth for no measurable CPU
		// at 50,000 deliveries/s (BENCHMARKS.md). GOGC overrides it.
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}
