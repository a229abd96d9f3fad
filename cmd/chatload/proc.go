package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// proc is a process whose CPU time and memory a run reports, by name
// ("gateway", "redis").
type proc struct {
	Name string
	PID  int
}

// parseProcs reads "name=pid,name=pid" (a bare pid is named "pid").
func parseProcs(s string) ([]proc, error) {
	var out []proc
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, pidText, ok := strings.Cut(part, "=")
		if !ok {
			name, pidText = "pid", part
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil {
			return nil, fmt.Errorf("-pids %q: %w", part, err)
		}
		out = append(out, proc{Name: name, PID: pid})
	}
	return out, nil
}

type procSample struct {
	proc
	cpuTicks int64 // user + system
	rssKiB   int64
	syscalls int64 // read and write system calls (/proc/PID/io)
}

// procUsage is one process's share of a measured window.
type procUsage struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_seconds"`
	RSSKiB     int64   `json:"rss_kib"`
	PeakRSSKiB int64   `json:"peak_rss_kib"`
	Syscalls   int64   `json:"syscalls"`
}

// watchPeaks samples the processes' resident memory every 250 ms until the
// returned function is called, which returns the peak of each, by PID.
func watchPeaks(ctx context.Context, procs []proc) (stop func() map[int]int64) {
	peak := map[int]int64{}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			for _, s := range sampleAll(procs) {
				peak[s.PID] = max(peak[s.PID], s.rssKiB)
			}
			select {
			case <-t.C:
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() map[int]int64 {
		close(done)
		<-finished
		return peak
	}
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func sample(p proc) (procSample, error) {
	s := procSample{proc: p}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return s, err
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the whole line.
	text := string(stat)
	rest := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
	if len(rest) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: short", p.PID)
	}
	ut, _ := strconv.ParseInt(rest[11], 10, 64)
	st, _ := strconv.ParseInt(rest[12], 10, 64)
	s.cpuTicks = ut + st
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			s.rssKiB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", p.PID)); err == nil {
		for _, line := range strings.Split(string(io), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			if k == "syscr" || k == "syscw" {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				s.syscalls += n
			}
		}
	}
	return s, nil
}

func sampleAll(procs []proc) []procSample {
	out := make([]procSample, 0, len(procs))
	for _, p := range procs {
		if s, err := sample(p); err == nil {
			out = append(out, s)
		}
	}
	return out
}

func usage(before, after []procSample) []procUsage {
	var out []procUsage
	for _, a := range after {
		for _, b := range before {
			if a.PID == b.PID {
				out = append(out, procUsage{Name: a.Name, PID: a.PID, CPUSeconds: float64(a.cpuTicks-b.cpuTicks) / clockTicks,
					RSSKiB: a.rssKiB, Syscalls: a.syscalls - b.syscalls})
			}
		}
	}
	return out
}

// rssOf sums resident memory by process name.
func rssOf(samples []procSample) map[string]int64 {
	out := map[string]int64{}
	for _, s := range samples {
		out[s.Name] += s.rssKiB
	}
	return out
}
