package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// daemon is a server process that the fault and abuse runs start, signal,
// kill and start again, always with the same command line, so a restart
// listens where the last life did and reads the same data directory.
type daemon struct {
	name string
	bin  string
	args []string
	env  []string
	log  string // its stdout and stderr, appended across lives

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func (d *daemon) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return fmt.Errorf("%s: already running", d.name)
	}
	f, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.bin, d.args...)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Dies with this process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s (%s): %w", d.name, d.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(exited)
	}()
	d.cmd, d.exited = cmd, exited
	return nil
}

func (d *daemon) pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

func (d *daemon) signal(sig syscall.Signal) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return fmt.Errorf("%s: not running", d.name)
	}
	return d.cmd.Process.Signal(sig)
}

// stop sends sig (SIGTERM for an orderly stop, SIGKILL for a crash) and
// waits for the process to end, killing it after grace.
func (d *daemon) stop(sig syscall.Signal, grace time.Duration) {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot act on SIGTERM
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-exited
	}
	d.mu.Lock()
	d.cmd, d.exited = nil, nil
	d.mu.Unlock()
}

func (d *daemon) tail(n int) string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// redisDaemon is a redis-server on loopback with its data in dir, no RDB
// snapshots, and persistence as given (e.g. "--appendonly", "yes").
func redisDaemon(bin, dir string, port int, persistence ...string) *daemon {
	return &daemon{
		name: "redis", bin: bin, log: filepath.Join(dir, "redis.log"),
		args: append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--maxclients", "20000", "--loglevel", "notice"}, persistence...),
	}
}

// keepOrRemove removes a run's directory, or, when keep, says where it is.
func keepOrRemove(dir string, keep bool, w io.Writer) {
	if keep {
		fmt.Fprintf(w, "logs and data kept in %s\n", dir)
		return
	}
	os.RemoveAll(dir)
}

// gatewayDaemon is a gateway replica on port, with env on top of the
// defaults a run needs.
func gatewayDaemon(bin, dir string, i, port, redisPort int, env ...string) *daemon {
	return &daemon{
		name: fmt.Sprintf("gateway-%d", i), bin: bin, log: filepath.Join(dir, fmt.Sprintf("gateway-%d.log", i)),
		env: append([]string{
			fmt.Sprintf("CHAT_ADDR=127.0.0.1:%d", port),
			fmt.Sprintf("CHAT_REDIS_URL=redis://127.0.0.1:%d", redisPort),
			fmt.Sprintf("CHAT_REPLICA_ID=r%d", i),
			"CHAT_ALLOWED_ORIGINS=*",
		}, env...),
	}
}

// waitUntil polls ok every 50 ms for up to limit.
func waitUntil(ctx context.Context, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

func httpOK(url string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// scrapeCounter reads one unlabelled counter from a Prometheus endpoint; 0
// when it cannot.
func scrapeCounter(url, name string) float64 {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

func redisUp(ctx context.Context, rdb *redis.Client) bool {
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	return rdb.Ping(pctx).Err() == nil
}

// balancer is a round-robin TCP load balancer in front of the replicas, as
// an operator's would be: a new connection goes to the next replica that
// accepts it, and a replica's death breaks the connections through it.
type balancer struct {
	ln       net.Listener
	backends []string
	mu       sync.Mutex
	next     int
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func newBalancer(backends []string) (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &balancer{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

func (b *balancer) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go b.pipe(c)
	}
}

func (b *balancer) track(c net.Conn, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on {
		b.conns[c] = struct{}{}
	} else {
		delete(b.conns, c)
	}
}

func (b *balancer) pipe(c net.Conn) {
	defer b.wg.Done()
	defer c.Close()
	b.mu.Lock()
	first := b.next
	b.next++
	b.mu.Unlock()
	var up net.Conn
	for i := range b.backends {
		addr := b.backends[(first+i)%len(b.backends)]
		var err error
		if up, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	b.track(c, true)
	b.track(up, true)
	defer b.track(c, false)
	defer b.track(up, false)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done // either side ending ends both
}

func (b *balancer) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

var errViolations = errors.New("promises broken")
