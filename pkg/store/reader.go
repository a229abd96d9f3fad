package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
)

// Group names the rooms one blocking read may cover together. Every key of
// one XREAD must be on one node, and in Redis Cluster in one hash slot, so
// in a cluster the group is the room's slot; on a single node (or behind
// Sentinel) every room is in the one group "".
func (s *Store) Group(ctx context.Context, room string) (string, error) {
	if _, ok := s.block.(*redis.ClusterClient); !ok {
		return "", nil
	}
	key := s.LogKey(room)
	slot, err := s.rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", fmt.Errorf("cluster keyslot %s: %w", key, err)
	}
	return strconv.FormatInt(slot, 10), nil
}

// Reader is one connection that waits for the streams of many rooms at
// once (XREAD BLOCK over all of them), so a replica needs a few blocking
// connections, not one per room. A Reader is not safe for concurrent Reads;
// Wake may be called from anywhere.
type Reader struct {
	s    *Store
	conn *redis.Conn
	node redis.Cmdable // the command pool of the reader's node, for CLIENT UNBLOCK
	id   int64         // the connection's CLIENT ID; 0 when it cannot be woken
}

// NewReader opens a reader on the node that serves room's group. Close it.
func (s *Store) NewReader(ctx context.Context, room string) (*Reader, error) {
	blocking, err := nodeOf(ctx, s.block, s.LogKey(room))
	if err != nil {
		return nil, err
	}
	cmds, err := nodeOf(ctx, s.rdb, s.LogKey(room))
	if err != nil {
		return nil, err
	}
	r := &Reader{s: s, conn: blocking.Conn(), node: cmds}
	// CLIENT ID lets Wake end a wait early, when a room joins the read.
	// A server without it (the embedded one) gets short waits instead.
	if id, err := r.conn.ClientID(ctx).Result(); err == nil {
		r.id = id
	} else if ctx.Err() != nil {
		_ = r.conn.Close()
		return nil, fmt.Errorf("client id: %w", err)
	}
	return r, nil
}

// nodeOf returns the client of the node that serves key.
func nodeOf(ctx context.Context, c redis.UniversalClient, key string) (*redis.Client, error) {
	switch c := c.(type) {
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("node for %s: %w", key, err)
		}
		return n, nil
	case *redis.Client:
		return c, nil
	}
	return nil, fmt.Errorf("store: a %T cannot read many rooms on one connection", c)
}

// CanWake reports whether Wake ends a wait early; when it cannot, callers
// keep their waits short.
func (r *Reader) CanWake() bool { return r.id != 0 }

// Read waits up to block for entries after the cursors of the rooms, and
// returns up to count of each room's, oldest first, indexed like rooms;
// none when the wait ends empty or is woken. A negative block does not
// wait. rooms and after must have
// the same length, and every room must be in the reader's group.
func (r *Reader) Read(ctx context.Context, rooms []string, after []chat.ID, count int, block time.Duration) ([][]chat.Event, error) {
	streams := make([]string, 2*len(rooms))
	index := make(map[string]int, len(rooms))
	for i, room := range rooms {
		key := r.s.LogKey(room)
		streams[i], streams[len(rooms)+i] = key, after[i].String()
		index[key] = i
	}
	res, err := r.conn.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: int64(count), Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("xread %d streams: %w", len(rooms), err)
	}
	out := make([][]chat.Event, len(rooms))
	for _, st := range res {
		i, ok := index[st.Stream]
		if !ok {
			continue
		}
		events := make([]chat.Event, 0, len(st.Messages))
		for _, m := range st.Messages {
			events = append(events, r.s.decode(rooms[i], m))
		}
		out[i] = events
	}
	return out, nil
}

// Wake ends the reader's current wait, if any, so that its next Read can
// include rooms that joined since (CLIENT UNBLOCK: the XREAD returns as if
// it timed out).
func (r *Reader) Wake(ctx context.Context) error {
	if r.id == 0 {
		return nil
	}
	if err := r.node.ClientUnblock(ctx, r.id).Err(); err != nil {
		return fmt.Errorf("client unblock %d: %w", r.id, err)
	}
	return nil
}

// Close closes the reader's connection.
func (r *Reader) Close() error { return r.conn.Close() }
