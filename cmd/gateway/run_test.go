package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Every replica a test starts must leave no goroutine behind once run returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseRedisURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in  string
		addrs     string
		password  string
		db        int
		tls, fail bool
	}{
		{name: "single", in: "redis://localhost:6379", addrs: "[localhost:6379]"},
		{name: "password and db", in: "redis://:s3cret@r:6380/2", addrs: "[r:6380]", password: "s3cret", db: 2},
		{name: "tls", in: "rediss://r:6379", addrs: "[r:6379]", tls: true},
		{name: "cluster urls", in: "redis://a:7000, redis://b:7001,redis://c:7002", addrs: "[a:7000 b:7001 c:7002]"},
		{name: "cluster host:port", in: "a:7000,b:7001", addrs: "[a:7000 b:7001]"},
		{name: "bad scheme", in: "http://r:6379", fail: true},
		{name: "empty list", in: " , ", fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseRedisURL(tt.in)
			if tt.fail {
				if err == nil {
					t.Fatalf("parseRedisURL(%q) accepted", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(o.Addrs) != tt.addrs || o.Password != tt.password || o.DB != tt.db || (o.TLSConfig != nil) != tt.tls || !o.ContextTimeoutEnabled {
				t.Fatalf("parseRedisURL(%q) = %+v", tt.in, o)
			}
		})
	}
}

func TestHealthcheck(t *testing.T) {
	r := startReplica(t, testConfig("", "hc", "shared"))
	_, port, _ := net.SplitHostPort(r.addr)
	if err := healthcheck(":"+port, 5*time.Second); err != nil {
		t.Fatalf("healthcheck of a running gateway: %v", err)
	}
	r.stop()
	if err := healthcheck(":"+port, 2*time.Second); err == nil {
		t.Fatal("healthcheck passed with the gateway stopped")
	}
}

// CHAT_DEBUG_ADDR serves the profiler on its own listener, and only there.
func TestProfilerOnItsOwnAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	debugAddr := ln.Addr().String()
	ln.Close()
	cfg := testConfig("", "prof", "shared")
	cfg.DebugAddr = debugAddr
	r := startReplica(t, cfg)
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("http://" + debugAddr + "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("profiler index: %d\n%.200s", code, body)
	}
	if _, body := get("http://" + r.addr + "/debug/pprof/"); strings.Contains(body, "goroutine") {
		t.Fatal("the profiler is served on the public address")
	}
}
