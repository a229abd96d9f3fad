package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
)

// Every append to a room's stream also publishes the new ID on the room's
// bell channel, in the same atomic step. A replica subscribes to the bells
// of its active rooms on one connection per Redis node and reads only the
// rooms that rang, without blocking: its Redis connections do not grow
// with rooms, and the cost of a read grows with the rooms that have news,
// not with the rooms it has (a blocking XREAD over N streams costs O(N) on
// every call). The bell only says "look": the entries still come from the
// stream, from each room's own cursor, so a lost bell delays an entry and
// never loses or repeats one. In Redis Cluster the bells are sharded
// channels (SPUBLISH, SSUBSCRIBE), which stay on the room's node.

// BellChannel is the bell of a room: PREFIX:{ROOM}:bell.
func (s *Store) BellChannel(room string) string { return s.prefix + ":{" + room + "}:bell" }

// roomOfBell returns the room of a bell channel.
func (s *Store) roomOfBell(channel string) (string, bool) {
	rest, ok := strings.CutPrefix(channel, s.prefix+":{")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "}:bell")
}

func (s *Store) clustered() bool {
	_, ok := s.rdb.(*redis.ClusterClient)
	return ok
}

// publishCmd is the command that rings a bell: sharded in a cluster, where
// a plain PUBLISH would reach every node.
func (s *Store) publishCmd() string {
	if s.clustered() {
		return "spublish"
	}
	return "publish"
}

// ring queues the room's bell on c, after the entry's XADD.
func (s *Store) ring(ctx context.Context, c redis.Cmdable, room string) {
	if s.clustered() {
		c.SPublish(ctx, s.BellChannel(room), "1")
		return
	}
	c.Publish(ctx, s.BellChannel(room), "1")
}

// Group names the rooms whose bells one subscription can carry: the Redis
// node that serves the room ("" for a single node or Sentinel).
func (s *Store) Group(ctx context.Context, room string) (string, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return "", nil
	}
	n, err := cc.MasterForKey(ctx, s.LogKey(room))
	if err != nil {
		return "", fmt.Errorf("node for %s: %w", s.LogKey(room), err)
	}
	return n.Options().Addr, nil
}

// Bells is one subscription to the bells of many rooms of one group.
// Subscribe and Unsubscribe may be called while Receive waits.
type Bells struct {
	s  *Store
	ps *redis.PubSub
}

// NewBells subscribes to room's bell, on room's node. Close it.
func (s *Store) NewBells(ctx context.Context, room string) (*Bells, error) {
	b := &Bells{s: s}
	switch c := s.block.(type) {
	case *redis.ClusterClient:
		b.ps = c.SSubscribe(ctx, s.BellChannel(room))
	case *redis.Client:
		b.ps = c.Subscribe(ctx, s.BellChannel(room))
	default:
		return nil, fmt.Errorf("store: bells need a single-node, Sentinel or Cluster client, not %T", s.block)
	}
	return b, nil
}

// Subscribe adds the rooms' bells.
func (b *Bells) Subscribe(ctx context.Context, rooms ...string) error {
	channels := b.channels(rooms)
	var err error
	if b.s.clustered() {
		// One command per room: a sharded subscription takes channels of
		// one slot at a time.
		for _, ch := range channels {
			if err = b.ps.SSubscribe(ctx, ch); err != nil {
				break
			}
		}
	} else {
		err = b.ps.Subscribe(ctx, channels...)
	}
	if err != nil {
		return fmt.Errorf("subscribe to %d bells: %w", len(rooms), err)
	}
	return nil
}

// Unsubscribe drops the rooms' bells.
func (b *Bells) Unsubscribe(ctx context.Context, rooms ...string) error {
	channels := b.channels(rooms)
	var err error
	if b.s.clustered() {
		err = b.ps.SUnsubscribe(ctx, channels...)
	} else {
		err = b.ps.Unsubscribe(ctx, channels...)
	}
	if err != nil {
		return fmt.Errorf("unsubscribe from %d bells: %w", len(rooms), err)
	}
	return nil
}

func (b *Bells) channels(rooms []string) []string {
	out := make([]string, len(rooms))
	for i, r := range rooms {
		out[i] = b.s.BellChannel(r)
	}
	return out
}

// Receive waits for a bell, or a confirmed subscription, and returns it. A
// confirmed subscription counts as a bell too, without an entry: it comes
// when a room is added and after go-redis reconnects and subscribes again,
// the moments when bells may have been missed.
func (b *Bells) Receive(ctx context.Context) (chat.Bell, error) {
	for {
		msg, err := b.ps.Receive(ctx)
		if err != nil {
			return chat.Bell{}, fmt.Errorf("bells: %w", err)
		}
		switch m := msg.(type) {
		case *redis.Message:
			if room, ok := b.s.roomOfBell(m.Channel); ok {
				return b.s.decodeBell(room, m.Payload), nil
			}
		case *redis.Subscription:
			if m.Kind != "subscribe" && m.Kind != "ssubscribe" {
				continue
			}
			if room, ok := b.s.roomOfBell(m.Channel); ok {
				return chat.Bell{Room: room}, nil
			}
		}
	}
}

// bellFields is an entry's fields as its bell carries them: each name and
// value as its length in bytes, a colon and the bytes.
func bellFields(values []any) string {
	n := 0
	for _, v := range values {
		n += len(v.(string)) + 4
	}
	b := make([]byte, 0, n)
	for _, v := range values {
		b = strconv.AppendInt(b, int64(len(v.(string))), 10)
		b = append(b, ':')
		b = append(b, v.(string)...)
	}
	return string(b)
}

// decodeBell reads "PREV ID FIELDS"; anything else (the plain bells of
// joins, leaves and other appends, or a malformed payload) is a bell
// without an entry.
func (s *Store) decodeBell(room, payload string) chat.Bell {
	plain := chat.Bell{Room: room}
	if rest, ok := strings.CutPrefix(payload, "T "); ok {
		conn, rest, ok1 := strings.Cut(rest, " ")
		uid, frame, ok2 := strings.Cut(rest, " ")
		if ok1 && ok2 && strings.HasPrefix(frame, "{") {
			return chat.Bell{Room: room, Notice: []byte(frame), Conn: conn, UID: uid}
		}
		return chat.Bell{} // not an entry's bell: nothing to read
	}
	prevText, rest, ok1 := strings.Cut(payload, " ")
	idText, fields, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return plain
	}
	prev, err1 := chat.ParseID(prevText)
	id, err2 := chat.ParseID(idText)
	if err1 != nil || err2 != nil || !prev.Less(id) {
		return plain
	}
	values := make(map[string]any, 8)
	for fields != "" {
		var name, value string
		var ok bool
		if name, fields, ok = nextBellField(fields); !ok {
			return plain
		}
		if value, fields, ok = nextBellField(fields); !ok {
			return plain
		}
		values[name] = value
	}
	return chat.Bell{Room: room, Carried: true, Prev: prev, Entry: s.decode(room, redis.XMessage{ID: idText, Values: values})}
}

func nextBellField(s string) (field, rest string, ok bool) {
	lenText, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", false
	}
	n, err := strconv.Atoi(lenText)
	if err != nil || n < 0 || n > len(rest) {
		return "", "", false
	}
	return rest[:n], rest[n:], true
}

// Close ends the subscription.
func (b *Bells) Close() error { return b.ps.Close() }

// ReadRooms returns, without waiting, up to count entries after each
// room's cursor, indexed like rooms: one XREAD for all of them (in a
// cluster, one per room, pipelined, as keys of one command must share a
// slot).
func (s *Store) ReadRooms(ctx context.Context, rooms []string, after []chat.ID, count int) ([][]chat.Event, error) {
	out := make([][]chat.Event, len(rooms))
	if len(rooms) == 0 {
		return out, nil
	}
	if s.clustered() {
		cmds := make([]*redis.XStreamSliceCmd, len(rooms))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, room := range rooms {
				cmds[i] = p.XRead(ctx, &redis.XReadArgs{Streams: []string{s.LogKey(room), after[i].String()}, Count: int64(count), Block: -1})
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("xread %d rooms: %w", len(rooms), err)
		}
		for i, c := range cmds {
			for _, st := range c.Val() {
				out[i] = s.decodeAll(rooms[i], st.Messages)
			}
		}
		return out, nil
	}
	streams := make([]string, 2*len(rooms))
	index := make(map[string]int, len(rooms))
	for i, room := range rooms {
		key := s.LogKey(room)
		streams[i], streams[len(rooms)+i] = key, after[i].String()
		index[key] = i
	}
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: int64(count), Block: -1}).Result()
	if errors.Is(err, redis.Nil) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("xread %d rooms: %w", len(rooms), err)
	}
	for _, st := range res {
		if i, ok := index[st.Stream]; ok {
			out[i] = s.decodeAll(rooms[i], st.Messages)
		}
	}
	return out, nil
}

func (s *Store) decodeAll(room string, msgs []redis.XMessage) []chat.Event {
	events := make([]chat.Event, 0, len(msgs))
	for _, m := range msgs {
		events = append(events, s.decode(room, m))
	}
	return events
}

// A typing notice travels on the room's bell too, as "T CONN UID FRAME"
// (UID empty when anonymous): every
// replica that follows the room already listens there, on the room's node
// (sharded in a cluster), so it costs no connection, no key per listener
// and nothing in the stream. Pub/sub delivers it at most once and never
// again, which is what a notice that is stale after seconds wants.

// TypingKey marks that who (a reactor: the signed-in user, or the
// anonymous author hash) has typed in the room within the last interval:
// PREFIX:{ROOM}:typing:WHO.
func (s *Store) TypingKey(room, who string) string {
	return s.prefix + ":{" + room + "}:typing:" + who
}

// typingScript rings a typing notice unless the same user rang one within
// the interval, from any replica. KEYS: the typing mark, the bell.
// ARGV: interval in ms, publish command, payload.
var typingScript = redis.NewScript(`
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call(ARGV[2], KEYS[2], ARGV[3])
  return 1
end
return 0
`)

// Typing sends frame, the typing notice of the signed-in user uid (else
// of the anonymous author hash), to the room's members on every replica,
// except conn itself and the other connections of uid, unless the same
// user sent one within chat.TypingInterval. It reports whether it was sent.
func (s *Store) Typing(ctx context.Context, room, conn, uid, author string, frame []byte) (bool, error) {
	keys := []string{s.TypingKey(room, reactor(uid, author)), s.BellChannel(room)}
	n, err := typingScript.Run(ctx, s.rdb, keys, chat.TypingInterval.Milliseconds(), s.publishCmd(), "T "+conn+" "+uid+" "+string(frame)).Int()
	if err != nil {
		return false, fmt.Errorf("typing in %s: %w", room, err)
	}
	return n == 1, nil
}
