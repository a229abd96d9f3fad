package hub_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
)

// follower is a hub.Follower that records what it is sent, as a
// connection would write it. TryWrite takes at most take payloads (0: all,
// -1: none); Write takes everything, as the session's catch-up writes it.
type follower struct {
	take int

	mu      sync.Mutex
	got     []chat.ID
	offered int // entries taken from the tailer
	wakes   int // catch-ups begun after the first
	err     error
}

// newFollower starts s's delivery to a new follower.
func newFollower(t testing.TB, s *hub.Session, take int) *follower {
	f := &follower{take: take, wakes: -1}
	s.Start(f, func(err error) {
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
	})
	return f
}

func (f *follower) TryWrite(payloads [][]byte) (int, bool) {
	n := len(payloads)
	if f.take != 0 {
		n = max(0, min(n, f.take))
	}
	f.record(payloads[:n])
	f.mu.Lock()
	f.offered += n
	f.mu.Unlock()
	return n, n == len(payloads)
}

func (f *follower) Write(payloads ...[]byte) error {
	if len(payloads) == 0 {
		// A catch-up starts by sending what TryWrite left.
		f.mu.Lock()
		f.wakes++
		f.mu.Unlock()
	}
	f.record(payloads)
	return nil
}

func (f *follower) record(payloads [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range payloads {
		var ev struct{ ID string }
		if err := json.Unmarshal(p, &ev); err != nil {
			panic(err)
		}
		f.got = append(f.got, chat.MustParseID(ev.ID))
	}
}

// until waits until the follower holds n entries and returns them.
func (f *follower) until(t *testing.T, n int) []chat.ID {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		f.mu.Lock()
		got := append([]chat.ID(nil), f.got...)
		err := f.err
		f.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("follower has %d of %d entries (err %v)", len(got), n, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (f *follower) counts() (offered, wakes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.offered, f.wakes
}

// A follower that keeps up gets every entry from the tailer, in order, and
// needs no catch-up after its first.
func TestFollowerTakesEveryBatch(t *testing.T) {
	h, st, _ := setup(t, 100000, hub.Options{})
	s := join(t, h, "r", "ann")
	f := newFollower(t, s, 0)
	f.until(t, 1) // its own join, read with TryNext
	want := post(t, st, "r", 40)
	got := f.until(t, 41)[1:]
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	// The join may have come either way; the messages came from the tailer.
	offered, wakes := f.counts()
	if offered < 40 || wakes != 0 {
		t.Fatalf("offered %d, woken %d times; want at least 40 and 0", offered, wakes)
	}
}

// A follower that takes only part of a batch, or none of it, is woken and
// reads the rest itself: no entry is lost or repeated.
func TestFollowerThatFallsShortCatchesUp(t *testing.T) {
	for _, tc := range []struct {
		name string
		take int
	}{{"takes one", 1}, {"takes none", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			h, st, _ := setup(t, 100000, hub.Options{Window: 8, Batch: 3})
			s := join(t, h, "r", "ann")
			f := newFollower(t, s, tc.take)
			f.until(t, 1)
			var want []chat.ID
			for range 10 {
				// Bursts, so that batches hold several entries.
				want = append(want, post(t, st, "r", 7)...)
			}
			got := f.until(t, 71)[1:]
			if len(got) > 70 {
				t.Fatalf("%d entries, want 70", len(got))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
			if _, wakes := f.counts(); wakes == 0 {
				t.Fatal("never woken")
			}
		})
	}
}

// A room with more followers than one goroutine serves hands every batch
// to all of them.
func TestManyFollowers(t *testing.T) {
	h, st, _ := setup(t, 100000, hub.Options{})
	const n = 700
	fs := make([]*follower, n)
	for i := range fs {
		s := join(t, h, "r", fmt.Sprint("u", i))
		fs[i] = newFollower(t, s, 0)
	}
	// Everyone has joined once the last one sees its own join.
	fs[n-1].until(t, 1)
	want := post(t, st, "r", 5)
	for i, f := range fs {
		got := f.until(t, n-i+5)
		if tail := got[len(got)-5:]; fmt.Sprint(tail) != fmt.Sprint(want) {
			t.Fatalf("follower %d ends with %v, want %v", i, tail, want)
		}
	}
}

// Stopping the hub ends its followers' delivery with ErrClosed.
func TestCloseWakesFollowers(t *testing.T) {
	h, _, _ := setup(t, 2000, hub.Options{})
	s := join(t, h, "r", "ann")
	f := newFollower(t, s, 0)
	f.until(t, 1)
	h.Close()
	deadline := time.Now().Add(waitFor)
	for {
		f.mu.Lock()
		err := f.err
		f.mu.Unlock()
		if errors.Is(err, hub.ErrClosed) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery ended with %v, want ErrClosed", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
