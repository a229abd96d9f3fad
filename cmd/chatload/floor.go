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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *fanout < 1 || *conns < *fanout {
		return errors.New("-fanout must be at least 1 and at most -conns")
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "deliveries/s\tachieved/s\twriter CPU µs/delivery\treaders CPU µs/delivery\twrite(2) per delivery\t")
	for _, r := range strings.Split(*rates, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || rate <= 0 {
			return fmt.Errorf("-rates %q: want positive numbers", r)
		}
		f, err := measureFloor(ctx, floorConfig{Conns: *conns, Fanout: *fanout, Rate: rate, Duration: *duration, Size: *size})
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t\n", rate, f.PerSecond, f.WriterMicros, f.ReaderMicros, f.WritesPerDelivery)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "(one %d-connection fan-out of %d per message; writer CPU is the writing thread's own, from getrusage(RUSAGE_THREAD))\n", *conns, *fanout)
	return nil
}

type floorConfig struct {
	Conns, Fanout, Size int
	Rate                float64 // deliveries per second
	Duration            time.Duration
}

type floorResult struct {
	Deliveries        int64
	PerSecond         float64
	WriterMicros      float64 // the writing thread's CPU per delivery
	ReaderMicros      float64 // the rest of the process (readers, runtime) per delivery
	WritesPerDelivery float64
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
		for time.Now().Before(end) && ctx.Err() == nil {
			for range cfg.Fanout {
				fd := fds[k%len(fds)]
				k++
				for {
					o.writes++
					n, err := syscall.Write(fd, frame)
					if err == syscall.EAGAIN || err == syscall.EINTR {
						continue // the reader is behind: this delivery costs more than one write
					}
					if err != nil {
						o.err = fmt.Errorf("write: %w", err)
						done <- o
						return
					}
					if n != len(frame) {
						o.err = fmt.Errorf("short write: %d of %d bytes", n, len(frame))
						done <- o
						return
					}
					break
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
		Deliveries:        o.deliveries,
		PerSecond:         d / elapsed.Seconds(),
		WriterMicros:      float64(o.cpu.Microseconds()) / d,
		ReaderMicros:      float64((total - o.cpu).Microseconds()) / d,
		WritesPerDelivery: float64(o.writes) / d,
	}, nil
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
