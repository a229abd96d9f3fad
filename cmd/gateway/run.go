package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/streamchat/streamchat/pkg/config"
	"github.com/streamchat/streamchat/pkg/gateway"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/metrics"
	"github.com/streamchat/streamchat/pkg/store"
	"github.com/streamchat/streamchat/pkg/token"
	"github.com/streamchat/streamchat/pkg/web"
	"github.com/streamchat/streamchat/pkg/wsconn"
)

// The store is what the hub reads and writes, and what the gateway reads
// directly; a websocket connection is what the hub writes a room to.
var (
	_ hub.Store             = (*store.Store)(nil)
	_ gateway.Storage       = (*store.Store)(nil)
	_ hub.Follower          = (*wsconn.Conn)(nil)
	_ gateway.SendLimiter   = (*store.SendLimiter)(nil)
	_ gateway.Authenticator = (*token.Verifier)(nil)
)

// run serves until ctx ends, then drains within cfg.ShutdownGrace. Logs go
// to stdout; the "listening" line carries the bound address.
func run(ctx context.Context, cfg config.Config, stdout io.Writer) error {
	log, err := newLogger(cfg, stdout)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("replica", cfg.ReplicaID))

	rdb, blocking, closeRedis, err := openRedis(cfg.RedisURL, cfg.RedisSentinelMaster, log)
	if err != nil {
		return err
	}
	defer closeRedis()

	reg := prometheus.NewRegistry()
	m := metrics.New(reg, version)
	st := store.New(rdb, store.Options{MaxLen: cfg.StreamMaxlen, Blocking: blocking, DedupeWindow: cfg.DedupeWindow,
		AckReplicas: cfg.AckWaitReplicas, AckTimeout: cfg.AckWaitTimeout,
		Linger: cfg.AppendLinger, OnBatch: func(n int) { m.AppendBatch.Observe(float64(n)) }})
	h := hub.New(st, log, hub.Options{Direct: cfg.TailMode == config.TailDirect, History: cfg.History, Metrics: m,
		OpenBells: hub.OpenWith(st.NewBells), ReadInterval: cfg.TailInterval})
	defer h.Close()
	auth, closeAuth, err := authenticator(cfg, log)
	if err != nil {
		return err
	}
	defer closeAuth()
	var limiter gateway.SendLimiter
	if cfg.Auth == config.AuthJWT {
		limiter = st.SendLimiter(cfg.Rate, cfg.Burst)
	}
	gw := gateway.New(gateway.FromHub(h), st, web.Handler(), log, gateway.Options{
		Auth:            auth,
		Limiter:         limiter,
		MaxConnsPerAddr: cfg.MaxConnsPerIP,
		APIKey:          cfg.APIKey,
		MaxFile:         cfg.MaxFile,
		FileTTL:         cfg.FileTTL,
		UploadRate:      cfg.UploadRate,
		RoomFileQuota:   cfg.RoomFileQuota,
		Replica:         cfg.ReplicaID,
		MaxText:         cfg.MaxText,
		MaxFrame:        cfg.MaxFrame,
		Rate:            cfg.Rate,
		Burst:           cfg.Burst,
		AllowedOrigins:  cfg.AllowedOrigins,
		AllowedHosts:    cfg.AllowedHosts,
		StoreTimeout:    cfg.StoreTimeout,
		WriteTimeout:    cfg.WriteTimeout,
		TrustedProxies:  cfg.Proxies(),
		PingInterval:    cfg.PingInterval,
		Metrics:         m,
		MetricsHandler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler: gw.Handler(),
		// Slow or huge headers must not hold sockets (slowloris).
		ReadHeaderTimeout: cfg.HTTPHeaderTimeout,
		MaxHeaderBytes:    cfg.HTTPMaxHeaderBytes,
		// Plain requests only: the upgrade hijacks the socket, which clears
		// its deadlines, and the websocket has its own pings and write
		// timeout. Without IdleTimeout an idle keep-alive socket is held
		// for ever.
		ReadTimeout:  cfg.HTTPReadTimeout,
		WriteTimeout: cfg.HTTPWriteTimeout,
		IdleTimeout:  cfg.HTTPIdleTimeout,
		ErrorLog:     zap.NewStdLog(log.Named("http")),
	}
	if cfg.DebugAddr != "" {
		// Before "listening": once that is logged, every listener is up.
		stop, err := serveProfiler(cfg.DebugAddr, log)
		if err != nil {
			_ = ln.Close()
			return err
		}
		defer stop()
	}
	log.Info("listening", zap.String("addr", ln.Addr().String()), zap.String("tail_mode", cfg.TailMode), zap.String("version", version))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down", zap.Duration("grace", cfg.ShutdownGrace), zap.Int("connections", gw.Conns()))
	// A fresh context: the one that told us to stop is already done.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	// Shutdown stops accepting and ends plain HTTP requests; it does not
	// wait for websockets, which Drain closes with 1001.
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("http shutdown", zap.Error(err))
	}
	if err := gw.Drain(shutdownCtx); err != nil {
		log.Warn("drain did not finish within the grace period", zap.Error(err))
	}
	// Tailers may sit in a blocking XREAD; closing the client ends it now
	// instead of at the end of the block.
	h.Stop()
	closeRedis()
	h.Close()
	log.Info("stopped")
	return nil
}

// authenticator returns who a websocket speaks as under CHAT_AUTH, and the
// function that stops it (the JWKS refresh).
func authenticator(cfg config.Config, log *zap.Logger) (gateway.Authenticator, func(), error) {
	if cfg.Auth != config.AuthJWT {
		return gateway.Anonymous{}, func() {}, nil
	}
	pem, err := cfg.PublicKeyPEM()
	if err != nil {
		return nil, nil, err
	}
	v, err := token.New(token.Options{
		Secret: []byte(cfg.JWTSecret), PublicKey: pem, JWKSURL: cfg.JWTJWKSURL,
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience,
		OnRefreshError: func(err error) { log.Warn("JWKS refresh failed", zap.Error(err)) },
	})
	if err != nil {
		return nil, nil, fmt.Errorf("CHAT_AUTH=jwt: %w", err)
	}
	return v, v.Close, nil
}

// serveProfiler serves Go's profiler on its own listener, so CPU and heap
// profiles can be taken from a running replica (go tool pprof
// http://ADDR/debug/pprof/profile). It returns the function that stops it.
func serveProfiler(addr string, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s (CHAT_DEBUG_ADDR): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	log.Info("profiler listening", zap.String("addr", ln.Addr().String()))
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}

func newLogger(cfg config.Config, out io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("CHAT_LOG_LEVEL: %w", err)
	}
	var enc zapcore.Encoder
	if cfg.LogFormat == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(out), level), zap.ErrorOutput(zapcore.AddSync(out))), nil
}

// openRedis connects to CHAT_REDIS_URL, or starts the embedded server when
// it is empty. It returns two clients on the same server: a small pool for
// commands, and a pool for blocking reads, which hold a connection each (one
// per active room in shared mode, one per user in direct mode). The returned
// close function may be called more than once.
func openRedis(url, sentinelMaster string, log *zap.Logger) (cmds, blocking redis.UniversalClient, closeAll func(), err error) {
	var opts *redis.UniversalOptions
	var mr *miniredis.Miniredis
	if url == "" {
		mr = miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return nil, nil, nil, fmt.Errorf("start embedded redis: %w", err)
		}
		log.Warn("CHAT_REDIS_URL is not set: using an embedded in-memory Redis, for trying streamchat out only (one replica, nothing persisted)")
		opts = universalOptions([]string{mr.Addr()}, nil)
	} else if opts, err = parseRedisURL(url); err != nil {
		return nil, nil, nil, err
	}
	// With a master name the addresses are Sentinels, and go-redis follows
	// their failovers.
	opts.MasterName = sentinelMaster
	cmdOpts, blockOpts := *opts, *opts
	// Commands are short; a burst of joins or leaves queues for a pooled
	// connection instead of opening one per user.
	cmdOpts.PoolSize = 64
	cmdOpts.ConnMaxIdleTime = time.Minute
	// Lazily opened, and idle ones closed after a minute, so a high cap
	// costs nothing until rooms (or direct-mode users) need it.
	blockOpts.PoolSize = 10000
	blockOpts.ConnMaxIdleTime = time.Minute
	// A blocking reader sends tiny commands and reads batches of entries;
	// go-redis' 32 KiB default buffers, both ways, would cost 64 KiB a room.
	blockOpts.ReadBufferSize = 16 << 10
	blockOpts.WriteBufferSize = 1 << 10
	cmds, blocking = redis.NewUniversalClient(&cmdOpts), redis.NewUniversalClient(&blockOpts)
	return cmds, blocking, sync.OnceFunc(func() {
		_ = cmds.Close()
		_ = blocking.Close()
		if mr != nil {
			mr.Close()
		}
	}), nil
}

// parseRedisURL accepts redis:// or rediss:// URLs, or a comma-separated
// list of cluster nodes (URLs or host:port), which selects Redis Cluster —
// or, with CHAT_REDIS_SENTINEL_MASTER, the Sentinels.
func parseRedisURL(raw string) (*redis.UniversalOptions, error) {
	parts := strings.Split(raw, ",")
	var first *redis.Options
	addrs := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.Contains(p, "://") {
			addrs = append(addrs, p)
			continue
		}
		o, err := redis.ParseURL(p)
		if err != nil {
			return nil, fmt.Errorf("CHAT_REDIS_URL: %w", err)
		}
		if first == nil {
			first = o
		}
		addrs = append(addrs, o.Addr)
	}
	if len(addrs) == 0 {
		return nil, errors.New("CHAT_REDIS_URL: no address")
	}
	return universalOptions(addrs, first), nil
}

func universalOptions(addrs []string, from *redis.Options) *redis.UniversalOptions {
	o := &redis.UniversalOptions{
		Addrs: addrs,
		// Callers' contexts bound every command, including the bounded
		// XREAD BLOCK of the tailers.
		ContextTimeoutEnabled: true,
	}
	if from != nil {
		o.Username, o.Password, o.DB, o.TLSConfig = from.Username, from.Password, from.DB, from.TLSConfig
	}
	return o
}
