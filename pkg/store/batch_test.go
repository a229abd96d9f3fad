package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/redistest"
)

func lingering(t *testing.T, linger time.Duration) (*Store, *redis.Client) {
	t.Helper()
	rdb := redistest.Start(t).Client()
	return New(rdb, Options{Prefix: redistest.Prefix(t), Linger: linger}), rdb
}

// With a linger, many senders at once, each sending its messages one after
// another and then every one of them again, get every message stored once,
// each sender's in its order, the repeats acked as duplicates of the
// first, and a chain of bells in which each names the entry before it:
// what a replica needs to deliver the bells' entries with no read.
func TestLingerBatchesAppends(t *testing.T) {
	s, rdb := lingering(t, 20*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bells, err := s.NewBells(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	defer bells.Close()
	if _, err := bells.Receive(ctx); err != nil { // the subscription
		t.Fatal(err)
	}
	const senders, each = 40, 8
	acks := make([][]chat.Ack, senders)
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for i := range senders {
		wg.Go(func() {
			sender := fmt.Sprint("c:", i)
			for j := range 2 * each {
				n := j % each
				ack, err := s.Append(ctx, msg(fmt.Sprint("n", n), fmt.Sprint(i, "/", n)), sender)
				if err != nil {
					errs <- err
					return
				}
				if j < each {
					if ack.Duplicate {
						errs <- fmt.Errorf("%s: first send of %d acked as a duplicate", sender, n)
						return
					}
					acks[i] = append(acks[i], ack)
				} else if !ack.Duplicate || ack.ID != acks[i][n].ID {
					errs <- fmt.Errorf("%s: repeat of %d acked %+v, want the duplicate of %v", sender, n, ack, acks[i][n].ID)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	msgs, err := rdb.XRange(ctx, s.LogKey("r"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != senders*each {
		t.Fatalf("stream holds %d entries, want %d", len(msgs), senders*each)
	}
	next := make([]int, senders)
	for _, m := range msgs {
		var i, n int
		if _, err := fmt.Sscanf(m.Values[fieldText].(string), "%d/%d", &i, &n); err != nil {
			t.Fatal(err)
		}
		if n != next[i] || m.ID != acks[i][n].ID.String() {
			t.Fatalf("entry %s %q: sender %d's message %d, want its %d (acked %v)", m.ID, m.Values[fieldText], i, n, next[i], acks[i][next[i]].ID)
		}
		next[i]++
	}
	prev := chat.ID{}
	for k := range msgs {
		bell, err := bells.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bell.Carried || bell.Prev != prev || bell.Entry.ID.String() != msgs[k].ID {
			t.Fatalf("bell %d: %+v, want entry %s after %v", k, bell, msgs[k].ID, prev)
		}
		prev = bell.Entry.ID
	}
}

// Two sends of one nonce in one batch store one entry; both acks name it,
// one as the duplicate.
func TestLingerDuplicateInOneBatch(t *testing.T) {
	s, rdb := lingering(t, 50*time.Millisecond)
	ctx := context.Background()
	acks := make([]chat.Ack, 2)
	var wg sync.WaitGroup
	for i := range acks {
		wg.Go(func() {
			var err error
			if acks[i], err = s.Append(ctx, msg("n1", "hello"), "c:ann"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if acks[0].ID != acks[1].ID || acks[0].Duplicate == acks[1].Duplicate {
		t.Fatalf("acks %+v, want one entry, acked once as new and once as duplicate", acks)
	}
	if n := streamLen(t, rdb, s, "r"); n != 1 {
		t.Fatalf("stream holds %d entries, want 1", n)
	}
}

// A batch that finds the script gone (Redis restarted, or SCRIPT FLUSH)
// loads it and runs, and a batch larger than maxBatch goes in several.
func TestLingerLoadsTheScriptAndSplitsLargeBatches(t *testing.T) {
	rdb := redistest.Start(t).Client()
	var mu sync.Mutex
	var sizes []int
	s := New(rdb, Options{Prefix: redistest.Prefix(t), Linger: 30 * time.Millisecond, OnBatch: func(n int) {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}})
	ctx := context.Background()
	if _, err := s.Append(ctx, msg("n0", "first"), "c:ann"); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const n = 2*maxBatch + 7
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := s.Append(ctx, msg(fmt.Sprint("m", i), "x"), fmt.Sprint("c:", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := streamLen(t, rdb, s, "r"); got != n+1 {
		t.Fatalf("stream holds %d entries, want %d", got, n+1)
	}
	total := 0
	for _, size := range sizes {
		if size > maxBatch {
			t.Fatalf("a batch of %d, more than %d", size, maxBatch)
		}
		total += size
	}
	if total != n+1 || len(sizes) < 4 {
		t.Fatalf("batches %v: want %d appends in at least 4", sizes, n+1)
	}
}

// A sender that stops waiting gets its context's error at once, and does
// not stop its batch: its message is sent with the others.
func TestLingerCallerGivesUp(t *testing.T) {
	s, rdb := lingering(t, 200*time.Millisecond)
	gone, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var leadErr error
	goneErr := make(chan error, 1)
	wg.Go(func() { _, leadErr = s.Append(context.Background(), msg("n1", "opens the batch"), "c:bob") })
	for s.openBatch() == 0 {
		time.Sleep(time.Millisecond)
	}
	wg.Go(func() {
		_, err := s.Append(gone, msg("n1", "gives up"), "c:ann")
		goneErr <- err
	})
	for s.openBatch() == 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-goneErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the sender that gave up got %v, want context.Canceled", err)
	}
	if s.openBatch() != 2 {
		t.Fatal("the batch went before the sender gave up; make the linger longer")
	}
	wg.Wait()
	if leadErr != nil {
		t.Fatalf("the other sender of the batch: %v", leadErr)
	}
	// Both were sent: giving up does not take a message back.
	if n := streamLen(t, rdb, s, "r"); n != 2 {
		t.Fatalf("stream holds %d entries, want 2", n)
	}
}

// openBatch is how many appends the batch being gathered holds.
func (s *Store) openBatch() int {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	if s.batch.open == nil {
		return 0
	}
	return len(s.batch.open.items)
}

// With AckReplicas a batch ends with one WAIT: acks come once a replica
// has the entries, and fail with ErrNotReplicated while it is stalled.
func TestLingerWaitsForReplicas(t *testing.T) {
	primary := redistest.StartWith(t, "--repl-diskless-sync-delay", "0")
	replica := redistest.StartReplica(t, primary)
	rdb := primary.Client()
	s := New(rdb, Options{Prefix: redistest.Prefix(t), AckReplicas: 1, AckTimeout: 300 * time.Millisecond, Linger: 20 * time.Millisecond})
	ctx := context.Background()
	appendAll := func(tag string) []error {
		errs := make([]error, 5)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { _, errs[i] = s.Append(ctx, msg(fmt.Sprint(tag, i), "x"), fmt.Sprint("c:", i)) })
		}
		wg.Wait()
		return errs
	}
	for _, err := range appendAll("a") {
		if err != nil {
			t.Fatalf("append with a live replica: %v", err)
		}
	}
	if n := streamLen(t, replica.Client(), s, "r"); n != 5 {
		t.Fatalf("replica holds %d entries after the acks, want 5", n)
	}
	replica.Pause()
	for _, err := range appendAll("b") {
		if !errors.Is(err, ErrNotReplicated) {
			t.Fatalf("append with the replica stopped: %v, want ErrNotReplicated", err)
		}
	}
	replica.Resume()
}

// On a three-master cluster one batch holds rooms of every shard: it goes
// as one pipeline per node, each node loading the script at its first
// batch, and every room gets each of its messages once, in order.
func TestLingerOnCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: nodes})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, Options{Prefix: redistest.Prefix(t), Linger: 20 * time.Millisecond})
	ctx := context.Background()
	owners := map[string]bool{}
	var rooms []string
	for i := 0; len(owners) < 3 || len(rooms) < 9; i++ {
		room := fmt.Sprint("room", i)
		node, err := rdb.MasterForKey(ctx, s.LogKey(room))
		if err != nil {
			t.Fatal(err)
		}
		owners[node.Options().Addr] = true
		rooms = append(rooms, room)
	}
	const each = 5
	var wg sync.WaitGroup
	for _, room := range rooms {
		wg.Go(func() {
			for j := range each {
				e := chat.Event{Room: room, Kind: chat.KindMessage, From: "ann", Text: fmt.Sprint(j), Nonce: fmt.Sprint("n", j)}
				if _, err := s.Append(ctx, e, "c:ann"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, room := range rooms {
		msgs, err := rdb.XRange(ctx, s.LogKey(room), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != each {
			t.Fatalf("room %s holds %d entries, want %d", room, len(msgs), each)
		}
		for j, m := range msgs {
			if m.Values[fieldText] != fmt.Sprint(j) {
				t.Fatalf("room %s entry %d is %q", room, j, m.Values[fieldText])
			}
		}
	}
}
