package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/streamchat/streamchat/pkg/chat"
)

// floorMain measures the cheapest possible delivery on this machine: one
// pre-encoded websocket frame written with one write(2) to a loopback socket
// whose reader is waiting for it. The gateway's CPU per delivery is reported
// as a multiple of this figure, measured on the same machine.
func floorMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chatload floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conns := fs.Int("conns", 500, "loopback connections (the standard workload has 500 per replica)")
	fanout := fs.Int("fanout", 25, "connections written per message (the standard room has 25 on each replica)")
	rates := fs.String("rates", "10000,50000", "deliveries per second")
	duration := fs.Duration("duration", 10*time.Second, "time per rate")
	size := fs.Int("size", 64, "message bytes (the frame is a real message frame around a text this long)")
	methods := fs.String("methods", "write", `how each message's frames are written, compared in turn at each rate: "write", one write(2) per delivery; "uring", the message's whole fan-out in one io_uring_enter(2)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *fanout < 1 || *conns < *fanout {
		return errors.New("-fanout must be at least 1 and at most -conns")
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "deliveries/s\tmethod\tachieved/s\twriter CPU µs/delivery\treaders CPU µs/delivery\tkernel entries/delivery\t")
	for _, r := range strings.Split(*rates, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || rate <= 0 {
			return fmt.Errorf("-rates %q: want positive numbers", r)
		}
		for _, m := range strings.Split(*methods, ",") {
			if m != "write" && m != "uring" {
				return fmt.Errorf("-methods %q: want write or uring", m)
			}
			f, err := measureFloor(ctx, floorConfig{Conns: *conns, Fanout: *fanout, Rate: rate, Duration: *duration, Size: *size, URing: m == "uring"})
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%.0f\t%s\t%.0f\t%.2f\t%.2f\t%.2f\t\n", rate, m, f.PerSecond, f.WriterMicros, f.ReaderMicros, f.EntriesPerDelivery)
		}
	}
	tw.Flush()
	fmt.Fprintf(stdout, "(one %d-connection fan-out of %d per message; writer CPU is the writing thread's own, from getrusage(RUSAGE_THREAD))\n", *conns, *fanout)
	return nil
}

type floorConfig struct {
	Conns, Fanout, Size int
	Rate                float64 // deliveries per second
	Duration            time.Duration
	// URing writes each message's fan-out with one io_uring_enter(2)
	// instead of one write(2) per connection.
	URing bool
}

type floorResult struct {
	Deliveries   int64
	PerSecond    float64
	WriterMicros float64 // the writing thread's CPU per delivery
	ReaderMicros float64 // the rest of the process (readers, runtime) per delivery
	// EntriesPerDelivery is system calls into the kernel per delivery:
	// write(2)s, or io_uring_enter(2)s and the write(2)s that retried a
	// full socket.
	EntriesPerDelivery float64
}

// floorFrame is what the gateway writes for one standard message: a
// websocket text frame (server frames are unmasked) around a real event.
func floorFrame(size int) []byte {
	payload := chat.EncodeEvent(chat.Event{Kind: chat.KindMessage, ID: chat.ID{Ms: uint64(time.Now().UnixMilli())},
		Room: "load-abc123-12", From: "u1234", Text: messageText(1, 12345, size)}, false)
	frame := []byte{0x81}
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, byte(n))
	case n < 1<<16:
		frame = append(frame, 126, byte(n>>8), byte(n))
	default:
		panic("floor frame too large")
	}
	return append(frame, payload...)
}

func measureFloor(ctx context.Context, cfg floorConfig) (floorResult, error) {
	if runtime.GOOS != "linux" {
		return floorResult{}, errors.New("the floor is measured with Linux's per-thread CPU accounting")
	}
	frame := floorFrame(cfg.Size)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return floorResult{}, err
	}
	defer ln.Close()

	// Readers: one goroutine per accepted connection, parked until its
	// next frame arrives, counting bytes.
	var received atomic.Int64
	var readers sync.WaitGroup
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
	}()
	fds := make([]int, 0, cfg.Conns)
	for range cfg.Conns {
		w, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return floorResult{}, err
		}
		conns = append(conns, w)
		r, err := ln.Accept()
		if err != nil {
			return floorResult{}, err
		}
		conns = append(conns, r)
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 4096)
			for {
				n, err := r.Read(buf)
				received.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
		raw, err := w.(*net.TCPConn).SyscallConn()
		if err != nil {
			return floorResult{}, err
		}
		_ = raw.Control(func(fd uintptr) { fds = append(fds, int(fd)) })
	}
	time.Sleep(100 * time.Millisecond) // every reader parked

	type out struct {
		writes, deliveries int64
		cpu                time.Duration
		err                error
	}
	done := make(chan out, 1)
	before := processCPU()
	start := time.Now()
	go func() {
		// One OS thread does every write, so its own CPU time is the
		// cost of the deliveries and nothing else.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var o out
		cpu0 := threadCPU()
		interval := time.Duration(float64(time.Second) * float64(cfg.Fanout) / cfg.Rate)
		next := time.Now()
		end := next.Add(cfg.Duration)
		k := 0
		var ring *uring
		if cfg.URing {
			var err error
			if ring, err = newURing(uint32(cfg.Fanout)); err != nil {
				o.err = err
				done <- o
				return
			}
			defer ring.Close()
		}
		batch := make([]int, cfg.Fanout)
		results := make([]int32, cfg.Fanout)
		for time.Now().Before(end) && ctx.Err() == nil {
			for i := range batch {
				batch[i] = fds[k%len(fds)]
				k++
			}
			if ring != nil {
				o.writes++
				if err := ring.sendAll(batch, frame, results); err != nil {
					o.err = err
					done <- o
					return
				}
			}
			for i, fd := range batch {
				if ring != nil && results[i] == int32(len(frame)) {
					o.deliveries++
					continue
				}
				// write(2), or what a send on the ring could not finish.
				rest := frame
				if ring != nil && results[i] > 0 {
					rest = frame[results[i]:]
				}
				if err := writeFrame(fd, rest, &o.writes); err != nil {
					o.err = err
					done <- o
					return
				}
				o.deliveries++
			}
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		}
		o.cpu = threadCPU() - cpu0
		done <- o
	}()
	o := <-done
	elapsed := time.Since(start)
	if o.err != nil {
		return floorResult{}, o.err
	}
	want := o.deliveries * int64(len(frame))
	for received.Load() < want && time.Since(start) < elapsed+10*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	total := processCPU() - before
	if got := received.Load(); got != want {
		return floorResult{}, fmt.Errorf("readers got %d of %d bytes", got, want)
	}
	if o.deliveries == 0 {
		return floorResult{}, errors.New("no deliveries")
	}
	d := float64(o.deliveries)
	return floorResult{
		Deliveries:         o.deliveries,
		PerSecond:          d / elapsed.Seconds(),
		WriterMicros:       float64(o.cpu.Microseconds()) / d,
		ReaderMicros:       float64((total - o.cpu).Microseconds()) / d,
		EntriesPerDelivery: float64(o.writes) / d,
	}, nil
}

// writeFrame writes frame to fd with write(2), counting each call, and
// retries while the socket is full (the reader is behind).
func writeFrame(fd int, frame []byte, calls *int64) error {
	for {
		*calls++
		n, err := syscall.Write(fd, frame)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if frame = frame[n:]; len(frame) == 0 {
			return nil
		}
	}
}

// rusageThread is Linux's RUSAGE_THREAD: the calling thread only.
const rusageThread = 1

func threadCPU() time.Duration { return rusage(rusageThread) }

func processCPU() time.Duration { return rusage(syscall.RUSAGE_SELF) }

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
