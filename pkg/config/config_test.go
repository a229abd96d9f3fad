package config

import (
	"strings"
	"testing"
	"time"
)

func TestFromEnvDefaults(t *testing.T) {
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8080" || c.StreamMaxlen != 2000 || c.History != 50 || c.MaxText != 4000 ||
		c.MaxFrame != 65536 || c.Rate != 5 || c.Burst != 10 || c.TailMode != TailShared ||
		c.PingInterval != 25*time.Second || c.ShutdownGrace != 10*time.Second ||
		c.LogLevel != "info" || c.LogFormat != "json" || c.RedisURL != "" || len(c.AllowedOrigins) != 0 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.DedupeWindow != 5*time.Minute || c.AckWaitReplicas != 0 || c.AckWaitTimeout != time.Second || c.StoreTimeout != 5*time.Second ||
		c.WriteTimeout != 10*time.Second || c.HTTPReadTimeout != 15*time.Second || c.HTTPWriteTimeout != 30*time.Second ||
		c.HTTPIdleTimeout != time.Minute || len(c.AllowedHosts) != 0 || c.Auth != AuthAnonymous || c.MaxConnsPerIP != 50 ||
		c.HTTPHeaderTimeout != 10*time.Second || c.HTTPMaxHeaderBytes != 16384 || c.APIKey != "" || c.AppendLinger != 0 {
		t.Fatalf("unexpected reliability defaults: %+v", c)
	}
	if c.ReplicaID == "" {
		t.Fatal("replica id not generated")
	}
	if d := Default(); d.Addr != c.Addr || d.History != c.History {
		t.Fatalf("Default() differs from FromEnv: %+v", d)
	}
}

func TestFromEnvValues(t *testing.T) {
	t.Setenv("CHAT_REDIS_URL", "redis://r:6379/0")
	t.Setenv("CHAT_ALLOWED_ORIGINS", "example.com,*.example.org")
	t.Setenv("CHAT_TAIL_MODE", "direct")
	t.Setenv("CHAT_PING_INTERVAL", "3s")
	t.Setenv("CHAT_REPLICA_ID", "r1")
	t.Setenv("CHAT_TRUSTED_PROXIES", "10.0.0.0/8, 172.16.0.0/12")
	t.Setenv("CHAT_ALLOWED_HOSTS", "chat.example.com,*.chat.example.com")
	t.Setenv("CHAT_DEDUPE_WINDOW", "10m")
	t.Setenv("CHAT_ACK_WAIT_REPLICAS", "1")
	t.Setenv("CHAT_HTTP_IDLE_TIMEOUT", "90s")
	t.Setenv("CHAT_APPEND_LINGER", "5ms")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisURL != "redis://r:6379/0" || c.TailMode != TailDirect || c.PingInterval != 3*time.Second ||
		c.ReplicaID != "r1" || len(c.AllowedOrigins) != 2 || c.AllowedOrigins[1] != "*.example.org" ||
		len(c.Proxies()) != 2 || c.Proxies()[1].String() != "172.16.0.0/12" ||
		len(c.AllowedHosts) != 2 || c.DedupeWindow != 10*time.Minute || c.AckWaitReplicas != 1 || c.HTTPIdleTimeout != 90*time.Second ||
		c.AppendLinger != 5*time.Millisecond {
		t.Fatalf("unexpected config: %+v", c)
	}
}

func TestFromEnvRejects(t *testing.T) {
	tests := []struct {
		name, key, value string
	}{
		{"tail mode", "CHAT_TAIL_MODE", "both"},
		{"rate not a number", "CHAT_RATE", "fast"},
		{"rate zero", "CHAT_RATE", "0"},
		{"burst", "CHAT_BURST", "0"},
		{"history", "CHAT_HISTORY", "0"},
		{"history too big", "CHAT_HISTORY", "5000"},
		{"max text", "CHAT_MAX_TEXT", "0"},
		{"max frame", "CHAT_MAX_FRAME", "10"},
		{"stream maxlen", "CHAT_STREAM_MAXLEN", "5"},
		{"ping", "CHAT_PING_INTERVAL", "soon"},
		{"grace", "CHAT_SHUTDOWN_GRACE", "-1s"},
		{"log format", "CHAT_LOG_FORMAT", "xml"},
		{"log level", "CHAT_LOG_LEVEL", "loud"},
		{"trusted proxies", "CHAT_TRUSTED_PROXIES", "10.0.0.0/8,nonsense"},
		{"sentinel without sentinels", "CHAT_REDIS_SENTINEL_MASTER", "mymaster"},
		{"profiler on the public address", "CHAT_DEBUG_ADDR", ":8080"},
		{"dedupe window", "CHAT_DEDUPE_WINDOW", "10ms"},
		{"ack wait replicas negative", "CHAT_ACK_WAIT_REPLICAS", "-1"},
		{"ack wait on the embedded server", "CHAT_ACK_WAIT_REPLICAS", "1"},
		{"store timeout", "CHAT_STORE_TIMEOUT", "1ms"},
		{"write timeout", "CHAT_WRITE_TIMEOUT", "1ms"},
		{"idle timeout", "CHAT_HTTP_IDLE_TIMEOUT", "1ms"},
		{"read timeout", "CHAT_HTTP_READ_TIMEOUT", "1ms"},
		{"auth mode", "CHAT_AUTH", "ldap"},
		{"jwt without a key", "CHAT_AUTH", "jwt"},
		{"short secret", "CHAT_JWT_SECRET", "short"},
		{"short API key", "CHAT_API_KEY", "abc"},
		{"conns per ip", "CHAT_MAX_CONNS_PER_IP", "-1"},
		{"header timeout", "CHAT_HTTP_HEADER_TIMEOUT", "1ms"},
		{"header bytes", "CHAT_HTTP_MAX_HEADER_BYTES", "10"},
		{"append linger negative", "CHAT_APPEND_LINGER", "-1ms"},
		{"append linger too long", "CHAT_APPEND_LINGER", "1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.key, tt.value)
			_, err := FromEnv()
			if err == nil || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("FromEnv with %s=%q: error %v does not name the variable", tt.key, tt.value, err)
			}
		})
	}
}

func TestJWTKeySources(t *testing.T) {
	t.Setenv("CHAT_AUTH", "jwt")
	t.Setenv("CHAT_JWT_SECRET", strings.Repeat("s", 32))
	if _, err := FromEnv(); err != nil {
		t.Fatalf("jwt with a secret: %v", err)
	}
	t.Setenv("CHAT_JWT_JWKS_URL", "https://id.example.com/.well-known/jwks.json")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "CHAT_AUTH") {
		t.Fatalf("jwt with two key sources: %v", err)
	}
}
