// Package redistest starts throwaway redis-server processes for tests. It is
// imported only by _test.go files. Tests of the Redis path run against a real
// server (7.0 or newer), never a mock; a missing binary fails the test with
// the command that installs it.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvURL names an externally managed Redis to use instead of starting one.
const EnvURL = "CHAT_TEST_REDIS_URL"

const installHint = "redis-server (7.0 or newer) is required by this test: install it with `apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis`, or point " + EnvURL + " at a running Redis"

// Server is one redis-server owned by a test (or by a TestMain, through
// Launch).
type Server struct {
	t        testing.TB // nil when launched from TestMain
	addr     string
	dir      string
	external bool
	cmd      *exec.Cmd
	exited   chan struct{}
	cluster  bool   // started with --cluster-enabled
	sentinel string // "NAME HOST PORT": a Sentinel watching that master
	args     []string
	paused   bool
}

// Start starts a redis-server on a free loopback port with its own temporary
// directory, and stops it when the test ends. With CHAT_TEST_REDIS_URL set it
// uses that server instead (Stop and Restart then fail the test).
func Start(t testing.TB) *Server {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		opts, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("%s=%q: %v", EnvURL, u, err)
		}
		return &Server{t: t, addr: opts.Addr, external: true}
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(installHint)
	}
	checkVersion(t, bin)
	s := &Server{t: t, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), dir: t.TempDir()}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// StartWith is Start with extra redis-server arguments, given after the
// throwaway defaults (no RDB, no AOF), which they override: for example
// "--appendonly", "yes", "--appendfsync", "always". Kill and Restart keep
// the server's directory, so what it persisted is loaded again.
func StartWith(t testing.TB, args ...string) *Server {
	t.Helper()
	if os.Getenv(EnvURL) != "" {
		t.Fatal("this test configures its own redis-server; unset " + EnvURL)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(installHint)
	}
	checkVersion(t, bin)
	s := &Server{t: t, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), dir: t.TempDir(), args: args}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// StartReplica starts a redis-server that replicates primary, and waits
// until a write to the primary reaches it (WAIT), which after a diskless
// first sync is a second or so after the link is up. (Start the primary
// with "--repl-diskless-sync-delay", "0" for the first sync to begin at
// once rather than after 5 s.)
func StartReplica(t testing.TB, primary *Server) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(primary.addr)
	r := StartWith(t, "--replicaof", host, port)
	c, p := r.Client(), primary.Client()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			ctx := context.Background()
			werr := p.Set(ctx, "redistest:replica-check", r.addr, 0).Err()
			n, werr2 := p.Do(ctx, "wait", 1, 200).Int64()
			if werr == nil && werr2 == nil && n >= 1 {
				_ = p.Del(ctx, "redistest:replica-check").Err()
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica of %s: link not up within 10s: %v %q", primary.addr, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the server with SIGKILL, as a crash would: nothing it had not
// yet written to disk survives. Restart starts it again from its directory.
func (s *Server) Kill() {
	s.t.Helper()
	if s.external || s.cmd == nil {
		s.t.Fatal("Kill needs a running local redis-server; unset " + EnvURL)
	}
	s.Resume()
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Pause stops the server with SIGSTOP: connections stay open, commands
// queue unanswered, as with a Redis stalled by a slow disk or a long fork.
func (s *Server) Pause() {
	s.t.Helper()
	if s.external || s.cmd == nil {
		s.t.Fatal("Pause needs a running local redis-server; unset " + EnvURL)
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatal(err)
	}
	s.paused = true
}

// Resume continues a paused server (SIGCONT); it does nothing otherwise.
func (s *Server) Resume() {
	if !s.paused || s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	s.paused = false
}

// Launch starts a redis-server for a whole test binary, from TestMain or an
// example; call Close when done.
func Launch() (*Server, error) {
	if u := os.Getenv(EnvURL); u != "" {
		opts, err := redis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %w", EnvURL, u, err)
		}
		return &Server{addr: opts.Addr, external: true}, nil
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New(installHint)
	}
	port, err := pickPort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		return nil, err
	}
	s := &Server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	if err := s.launch(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Close stops a server started by Launch and removes its directory.
func (s *Server) Close() {
	s.stop()
	if s.t == nil && s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return s.addr }

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.addr }

// Client returns a go-redis client for the server, closed when the test
// ends (the caller closes it for a launched server).
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr})
	if s.t != nil {
		s.t.Cleanup(func() { _ = c.Close() })
	}
	return c
}

// Stop stops the server, as a crash or a network loss would look to clients.
func (s *Server) Stop() {
	s.t.Helper()
	if s.external {
		s.t.Fatal("this test stops Redis and needs a local redis-server; unset " + EnvURL)
	}
	s.stop()
}

// Restart starts a stopped server again on the same address and directory:
// with no data, unless its arguments turned persistence on.
func (s *Server) Restart() {
	s.t.Helper()
	if s.external {
		s.t.Fatal("this test restarts Redis and needs a local redis-server; unset " + EnvURL)
	}
	s.start()
}

func (s *Server) start() {
	s.t.Helper()
	if err := s.launch(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) launch() error {
	host, port, _ := net.SplitHostPort(s.addr)
	cmd := exec.Command("redis-server",
		"--bind", host, "--port", port,
		"--dir", s.dir,
		"--save", "", "--appendonly", "no", // throwaway: nothing to disk
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	cmd.Args = append(cmd.Args, s.args...)
	if s.cluster {
		cmd.Args = append(cmd.Args, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(s.dir, "nodes.conf"))
	}
	if s.sentinel != "" {
		// A Sentinel rewrites its configuration file, so it gets its own.
		conf := filepath.Join(s.dir, "sentinel.conf")
		if err := os.WriteFile(conf, []byte("sentinel monitor "+s.sentinel+" 1\n"), 0o600); err != nil {
			return err
		}
		cmd.Args = append([]string{cmd.Args[0], conf, "--sentinel"}, cmd.Args[1:]...)
	}
	logPath := filepath.Join(s.dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("redis log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}(s.exited)

	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(logPath)
			s.cmd = nil
			return fmt.Errorf("redis-server exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("redis-server on %s did not answer PING within 10s: %w", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	if s.paused {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
		s.paused = false
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Prefix returns a key prefix unique to this test, so tests can share one
// server (including an external one) without seeing each other's keys.
func Prefix(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := pickPort()
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return port
}

func pickPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var versionRE = regexp.MustCompile(`v=(\d+)\.`)

func checkVersion(t testing.TB, bin string) {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("cannot read the version of %s from %q", bin, strings.TrimSpace(string(out)))
	}
	if major, _ := strconv.Atoi(string(m[1])); major < 7 {
		t.Fatalf("%s is %s; %s", bin, strings.TrimSpace(string(out)), installHint)
	}
}

// StartSentinel starts a Redis Sentinel that watches master under name, and
// stops it when the test ends.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	if master.external {
		t.Fatal("a Sentinel test needs a local redis-server; unset " + EnvURL)
	}
	host, port, _ := net.SplitHostPort(master.addr)
	s := &Server{t: t, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), dir: t.TempDir(),
		sentinel: name + " " + host + " " + port}
	s.start()
	t.Cleanup(s.stop)
	c := redis.NewSentinelClient(&redis.Options{Addr: s.addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		addr, err := c.GetMasterAddrByName(context.Background(), name).Result()
		if err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == master.addr {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel does not know master %s: %v %v", name, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartCluster starts a Redis Cluster of n masters (no replicas) on free
// loopback ports, each in its own temporary directory, and returns the
// node addresses. The servers stop when the test ends.
func StartCluster(t testing.TB, n int) []string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal(installHint)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli is required to create a cluster: install it with `apt-get install -y redis-tools`")
	}
	addrs := make([]string, n)
	for i := range addrs {
		s := &Server{t: t, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), dir: t.TempDir(), cluster: true}
		s.start()
		t.Cleanup(s.stop)
		addrs[i] = s.addr
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must agree the cluster is up before clients use it.
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("cluster node %s not ready: %v %q", a, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return addrs
}
