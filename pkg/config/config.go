// Package config reads the gateway's configuration from CHAT_* environment
// variables. Only cmd/ imports it; every other package takes plain values.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Prefix of every environment variable.
const Prefix = "CHAT"

// Tail modes.
const (
	// TailShared runs one Redis reader per active room per replica and fans
	// out from memory; Redis connections grow with rooms, not users.
	TailShared = "shared"
	// TailDirect gives every connection its own XREAD BLOCK loop: the literal
	// design, kept so the two can be measured side by side.
	TailDirect = "direct"
)

// Config is the whole configuration of a gateway replica. Each field's
// default is in its tag; the README documents them all.
type Config struct {
	Addr     string `split_words:"true" default:":8080"`
	RedisURL string `split_words:"true"` // empty: embedded in-memory Redis
	// RedisSentinelMaster, when set, makes RedisURL the list of Sentinels
	// and names the master they watch.
	RedisSentinelMaster string   `split_words:"true"`
	ReplicaID           string   `split_words:"true"` // empty: hostname + random suffix
	StreamMaxlen        int64    `split_words:"true" default:"2000"`
	History             int      `split_words:"true" default:"50"`
	MaxText             int      `split_words:"true" default:"4000"`
	MaxFrame            int64    `split_words:"true" default:"65536"`
	Rate                float64  `split_words:"true" default:"5"`
	Burst               int      `split_words:"true" default:"10"`
	TailMode            string   `split_words:"true" default:"shared"`
	AllowedOrigins      []string `split_words:"true"`
	// AllowedHosts, when set, are the only Host names served (DNS rebinding).
	AllowedHosts   []string      `split_words:"true"`
	TrustedProxies []string      `split_words:"true"` // CIDRs whose X-Forwarded-For is believed
	PingInterval   time.Duration `split_words:"true" default:"25s"`
	ShutdownGrace  time.Duration `split_words:"true" default:"10s"`
	// HTTP timeouts of plain requests; a websocket is past them once upgraded.
	HTTPReadTimeout  time.Duration `envconfig:"HTTP_READ_TIMEOUT" default:"15s"`
	HTTPWriteTimeout time.Duration `envconfig:"HTTP_WRITE_TIMEOUT" default:"30s"`
	HTTPIdleTimeout  time.Duration `envconfig:"HTTP_IDLE_TIMEOUT" default:"60s"`
	// WriteTimeout bounds each websocket write: a client that stops
	// reading is dropped after it.
	WriteTimeout time.Duration `split_words:"true" default:"10s"`
	// StoreTimeout bounds each Redis call made for a client.
	StoreTimeout time.Duration `split_words:"true" default:"5s"`
	// TailInterval is the least time between two reads of one Redis
	// node's rooms in shared mode, so that a busy replica collects more
	// entries per read (0: read as soon as a room has news).
	TailInterval time.Duration `split_words:"true" default:"0s"`
	// AppendLinger gathers the messages that arrive within it of each
	// other into one Redis pipeline (0: each goes at once).
	AppendLinger time.Duration `split_words:"true" default:"0s"`
	// DedupeWindow is how long a sent nonce is remembered.
	DedupeWindow time.Duration `split_words:"true" default:"5m"`
	// AckWaitReplicas > 0: WAIT for that many Redis replicas before an ack.
	AckWaitReplicas int           `split_words:"true" default:"0"`
	AckWaitTimeout  time.Duration `split_words:"true" default:"1s"`
	LogLevel        string        `split_words:"true" default:"info"`
	LogFormat       string        `split_words:"true" default:"json"`
	// Auth is "anonymous" or "jwt"; with jwt exactly one of the key
	// settings is set.
	Auth          string `default:"anonymous"`
	JWTSecret     string `envconfig:"JWT_SECRET"`
	JWTPublicKey  string `envconfig:"JWT_PUBLIC_KEY"` // PEM, or the path of a PEM file
	JWTJWKSURL    string `envconfig:"JWT_JWKS_URL"`
	JWTIssuer     string `envconfig:"JWT_ISSUER"`
	JWTAudience   string `envconfig:"JWT_AUDIENCE"`
	APIKey        string `envconfig:"API_KEY"`
	MaxConnsPerIP int    `envconfig:"MAX_CONNS_PER_IP" default:"50"`
	// Files: the largest upload, how long files are kept, each
	// connection's upload budget (bytes/s) and each room's space.
	MaxFile       int64         `split_words:"true" default:"2097152"`
	FileTTL       time.Duration `split_words:"true" default:"24h"`
	UploadRate    int64         `split_words:"true" default:"262144"`
	RoomFileQuota int64         `split_words:"true" default:"268435456"`
	// HTTP header limits: slow or huge headers must not hold sockets.
	HTTPHeaderTimeout  time.Duration `envconfig:"HTTP_HEADER_TIMEOUT" default:"10s"`
	HTTPMaxHeaderBytes int           `envconfig:"HTTP_MAX_HEADER_BYTES" default:"16384"`
	// DebugAddr, when set, serves Go's profiler (/debug/pprof/) on its own
	// listener, never on Addr.
	DebugAddr string `split_words:"true"`
}

// FromEnv reads and validates the configuration. The error names the
// offending variable.
func FromEnv() (Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if c.ReplicaID == "" {
		c.ReplicaID = DefaultReplicaID()
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Default returns the configuration with every default applied, as FromEnv
// would with an empty environment (the replica ID is left empty).
func Default() Config {
	var c Config
	// Defaults come from the struct tags so they are written in one place.
	if err := envconfig.Process("CHAT_DEFAULTS_ONLY_"+fmt.Sprint(os.Getpid()), &c); err != nil {
		panic("config: defaults do not parse: " + err.Error())
	}
	return c
}

// Validate checks every field and names the environment variable of the
// first bad one.
func (c Config) Validate() error {
	bad := func(name, why string) error {
		return fmt.Errorf("config: %s_%s %s", Prefix, name, why)
	}
	switch {
	case c.Addr == "":
		return bad("ADDR", "must not be empty")
	case c.DebugAddr != "" && c.DebugAddr == c.Addr:
		return bad("DEBUG_ADDR", "must differ from CHAT_ADDR: the profiler is never public")
	case c.RedisSentinelMaster != "" && c.RedisURL == "":
		return bad("REDIS_SENTINEL_MASTER", "needs CHAT_REDIS_URL to list the Sentinels")
	case c.StreamMaxlen < 100:
		return bad("STREAM_MAXLEN", "must be at least 100")
	case c.History < 1 || c.History > 1000:
		return bad("HISTORY", "must be between 1 and 1000")
	case c.MaxText < 1:
		return bad("MAX_TEXT", "must be at least 1")
	case c.MaxFrame < 128:
		return bad("MAX_FRAME", "must be at least 128 bytes")
	case c.Rate <= 0:
		return bad("RATE", "must be positive")
	case c.Burst < 1:
		return bad("BURST", "must be at least 1")
	case c.TailMode != TailShared && c.TailMode != TailDirect:
		return bad("TAIL_MODE", `must be "shared" or "direct"`)
	case c.PingInterval < 100*time.Millisecond:
		return bad("PING_INTERVAL", "must be at least 100ms")
	case c.ShutdownGrace < 0:
		return bad("SHUTDOWN_GRACE", "must not be negative")
	case c.HTTPReadTimeout < time.Second:
		return bad("HTTP_READ_TIMEOUT", "must be at least 1s")
	case c.HTTPWriteTimeout < time.Second:
		return bad("HTTP_WRITE_TIMEOUT", "must be at least 1s")
	case c.HTTPIdleTimeout < 100*time.Millisecond:
		return bad("HTTP_IDLE_TIMEOUT", "must be at least 100ms")
	case c.WriteTimeout < 100*time.Millisecond:
		return bad("WRITE_TIMEOUT", "must be at least 100ms")
	case c.StoreTimeout < 10*time.Millisecond:
		return bad("STORE_TIMEOUT", "must be at least 10ms")
	case c.DedupeWindow < time.Second:
		return bad("DEDUPE_WINDOW", "must be at least 1s")
	case c.AckWaitReplicas < 0:
		return bad("ACK_WAIT_REPLICAS", "must not be negative")
	case c.AckWaitReplicas > 0 && c.RedisURL == "":
		return bad("ACK_WAIT_REPLICAS", "needs CHAT_REDIS_URL: the embedded Redis has no replicas")
	case c.AckWaitTimeout < time.Millisecond:
		return bad("ACK_WAIT_TIMEOUT", "must be at least 1ms")
	case c.Auth != AuthAnonymous && c.Auth != AuthJWT:
		return bad("AUTH", `must be "anonymous" or "jwt"`)
	case c.Auth == AuthJWT && keySources(c) != 1:
		return bad("AUTH", "jwt needs exactly one of CHAT_JWT_SECRET, CHAT_JWT_PUBLIC_KEY and CHAT_JWT_JWKS_URL")
	case c.JWTSecret != "" && len(c.JWTSecret) < 32:
		return bad("JWT_SECRET", "must be at least 32 bytes")
	case c.APIKey != "" && len(c.APIKey) < 16:
		return bad("API_KEY", "must be at least 16 characters")
	case c.MaxFile < 1024 || c.MaxFile > 64<<20:
		return bad("MAX_FILE", "must be 1 KiB to 64 MiB")
	case c.FileTTL < time.Second:
		return bad("FILE_TTL", "must be at least 1s")
	case c.UploadRate < 1024:
		return bad("UPLOAD_RATE", "must be at least 1024 bytes per second")
	case c.RoomFileQuota < c.MaxFile:
		return bad("ROOM_FILE_QUOTA", "must be at least CHAT_MAX_FILE")
	case c.TailInterval < 0 || c.TailInterval > time.Second:
		return bad("TAIL_INTERVAL", "must be between 0 and 1s")
	case c.AppendLinger < 0 || c.AppendLinger > 100*time.Millisecond:
		return bad("APPEND_LINGER", "must be between 0 and 100ms")
	case c.MaxConnsPerIP < 0:
		return bad("MAX_CONNS_PER_IP", "must not be negative (0: no cap)")
	case c.HTTPHeaderTimeout < 100*time.Millisecond:
		return bad("HTTP_HEADER_TIMEOUT", "must be at least 100ms")
	case c.HTTPMaxHeaderBytes < 1024:
		return bad("HTTP_MAX_HEADER_BYTES", "must be at least 1024")
	case c.LogFormat != "json" && c.LogFormat != "console":
		return bad("LOG_FORMAT", `must be "json" or "console"`)
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(strings.TrimSpace(p)); err != nil {
			return bad("TRUSTED_PROXIES", fmt.Sprintf("has %q, not a CIDR like 10.0.0.0/8", p))
		}
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return bad("LOG_LEVEL", "must be debug, info, warn or error")
	}
	return nil
}

// Authentication modes (CHAT_AUTH).
const (
	AuthAnonymous = "anonymous"
	AuthJWT       = "jwt"
)

func keySources(c Config) int {
	n := 0
	for _, s := range []string{c.JWTSecret, c.JWTPublicKey, c.JWTJWKSURL} {
		if s != "" {
			n++
		}
	}
	return n
}

// PublicKeyPEM returns CHAT_JWT_PUBLIC_KEY as PEM: the value itself, or the
// file it names.
func (c Config) PublicKeyPEM() ([]byte, error) {
	if c.JWTPublicKey == "" || strings.Contains(c.JWTPublicKey, "-----BEGIN") {
		return []byte(c.JWTPublicKey), nil
	}
	b, err := os.ReadFile(c.JWTPublicKey)
	if err != nil {
		return nil, fmt.Errorf("config: %s_JWT_PUBLIC_KEY: %w", Prefix, err)
	}
	return b, nil
}

// Proxies returns TrustedProxies parsed (Validate has checked them).
func (c Config) Proxies() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.TrustedProxies))
	for _, p := range c.TrustedProxies {
		if pfx, err := netip.ParsePrefix(strings.TrimSpace(p)); err == nil {
			out = append(out, pfx)
		}
	}
	return out
}

// DefaultReplicaID is the hostname plus a random suffix, so two replicas on
// one host (or two lives of one pod) are told apart in logs.
func DefaultReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "gateway"
	}
	return host + "-" + randomSuffix()
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
