package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
)

// maxBatch is the most appends one pipeline carries; a batch that reaches
// it goes at once, before its linger is over.
const maxBatch = 128

// batcher gathers the appends (with a nonce) that arrive within a linger of
// the first, and sends them as one pipeline per Redis node. On a machine
// where waking Redis costs more than the append itself, one wake-up for
// several messages is most of Redis's saving; each message waits up to the
// linger for it (BENCHMARKS.md). There is no goroutine of its own: the
// first append of a batch waits out the linger and sends the batch.
//
// Order is kept: a batch runs as one pipeline per node, in arrival order,
// and a connection sends its next message only after the ack of the last.
type batcher struct {
	s      *Store
	linger time.Duration

	mu   sync.Mutex
	open *batch // the batch being gathered; nil when none
}

type batch struct {
	items []*batchItem
	full  chan struct{} // closed when the batch reaches maxBatch
}

// batchItem is one append in a batch, and its result once done is closed.
type batchItem struct {
	key  string   // the stream
	keys []string // the append script's
	args []any
	cmd  *redis.Cmd
	wait *redis.Cmd // the WAIT after cmd, with Options.AckReplicas

	ack  chat.Ack
	err  error
	done chan struct{}
}

// append adds one script call to the open batch, or opens one and sends
// it after the linger, and returns the call's result. A caller whose ctx
// ends stops waiting; its append may still be stored, as with any call
// that times out, and a retry of the nonce finds it.
func (b *batcher) append(ctx context.Context, key string, keys []string, args []any) (chat.Ack, error) {
	it := &batchItem{key: key, keys: keys, args: args, done: make(chan struct{})}
	b.mu.Lock()
	bt := b.open
	lead := bt == nil
	if lead {
		bt = &batch{full: make(chan struct{})}
		b.open = bt
	}
	bt.items = append(bt.items, it)
	if len(bt.items) == maxBatch {
		b.open = nil
		close(bt.full)
	}
	b.mu.Unlock()

	if lead {
		// Not ctx: the others in the batch wait for this send.
		t := time.NewTimer(b.linger)
		select {
		case <-t.C:
		case <-bt.full:
			t.Stop()
		}
		b.mu.Lock()
		if b.open == bt {
			b.open = nil
		}
		items := bt.items
		b.mu.Unlock()
		if b.s.opts.OnBatch != nil {
			b.s.opts.OnBatch(len(items))
		}
		fctx, cancel := detach(ctx)
		b.s.sendBatch(fctx, items)
		cancel()
	}
	select {
	case <-it.done:
		return it.ack, it.err
	case <-ctx.Done():
		return chat.Ack{}, fmt.Errorf("xadd %s: %w", key, ctx.Err())
	}
}

// detach returns a context that the caller's cancellation does not end
// (others' appends ride on it) but that keeps the caller's deadline.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	out := context.WithoutCancel(ctx)
	if d, ok := ctx.Deadline(); ok {
		return context.WithDeadline(out, d)
	}
	return context.WithCancel(out)
}

// sendBatch runs the items' script calls, one pipeline per node (with
// the WAIT of Options.AckReplicas at its end), and completes every item.
func (s *Store) sendBatch(ctx context.Context, items []*batchItem) {
	var order []redis.Cmdable
	groups := map[redis.Cmdable][]*batchItem{}
	for _, it := range items {
		node, err := s.nodeFor(ctx, it.key)
		if err != nil {
			it.err = fmt.Errorf("xadd %s: %w", it.key, err)
			close(it.done)
			continue
		}
		if _, seen := groups[node]; !seen {
			order = append(order, node)
		}
		groups[node] = append(groups[node], it)
	}
	if len(order) == 1 {
		s.sendGroup(ctx, order[0], groups[order[0]])
		return
	}
	// Nodes are independent: their pipelines run side by side.
	var wg sync.WaitGroup
	for _, node := range order {
		wg.Go(func() { s.sendGroup(ctx, node, groups[node]) })
	}
	wg.Wait()
}

// sendGroup runs items on node and completes them. Calls that found the
// script missing (a restart, SCRIPT FLUSH) run again, in order, once it is
// loaded.
func (s *Store) sendGroup(ctx context.Context, node redis.Cmdable, items []*batchItem) {
	s.pipelineGroup(ctx, node, items)
	var missing []*batchItem
	for _, it := range items {
		if isNoScript(it.cmd.Err()) {
			missing = append(missing, it)
		}
	}
	if len(missing) > 0 {
		if err := appendScript.Load(ctx, node).Err(); err != nil {
			for _, it := range missing {
				it.cmd.SetErr(fmt.Errorf("load append script: %w", err))
			}
		} else {
			s.pipelineGroup(ctx, node, missing)
		}
	}
	for _, it := range items {
		ack, err := parseAppended(it.cmd)
		if err != nil {
			it.err = fmt.Errorf("xadd %s: %w", it.key, err)
		} else {
			it.ack, it.err = ack, s.replicated(it.key, ack, it.wait)
		}
		close(it.done)
	}
}

// pipelineGroup sends the items' script calls to node in one pipeline,
// followed by WAIT when acks wait for replicas: WAIT counts the replicas
// that have this connection's writes, so it must share their pipeline.
func (s *Store) pipelineGroup(ctx context.Context, node redis.Cmdable, items []*batchItem) {
	// Each call's error is its own, in its Cmd.
	_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, it := range items {
			it.cmd = appendScript.EvalSha(ctx, p, it.keys, it.args...)
		}
		if s.opts.AckReplicas > 0 {
			wait := p.Do(ctx, "wait", s.opts.AckReplicas, s.opts.AckTimeout.Milliseconds())
			for _, it := range items {
				it.wait = wait
			}
		}
		return nil
	})
}
