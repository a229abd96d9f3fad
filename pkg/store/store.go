// Package store keeps rooms in Redis: each room's conversation is a capped
// stream and its presence a sorted set. It owns every key name. Both keys of
// a room carry the room as a hash tag, so Redis Cluster keeps a room on one
// shard and multi-key scripts and transactions on a room are allowed.
package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
)

// Options tune a Store. The zero value of each field means its default.
type Options struct {
	// Prefix starts every key; tests use a unique one. Default "chat".
	Prefix string
	// MaxLen is the approximate cap of each room's stream (XADD MAXLEN ~).
	// Default 2000.
	MaxLen int64
	// Blocking, when set, serves the blocking reads (XREAD BLOCK), which
	// hold a connection each for up to a block interval; every other
	// command uses the main client. Giving them their own pool keeps a
	// burst of joins or leaves from growing the connections that readers
	// need, and lets the command pool stay small. Default: the main client.
	Blocking redis.UniversalClient
}

// Store reads and writes rooms in Redis through any go-redis universal
// client: a single node, Sentinel or Cluster.
type Store struct {
	rdb    redis.UniversalClient
	block  redis.UniversalClient
	prefix string
	maxLen int64
}

// New returns a Store using rdb. It does not own its clients and never
// closes them.
func New(rdb redis.UniversalClient, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = "chat"
	}
	if opts.MaxLen <= 0 {
		opts.MaxLen = 2000
	}
	if opts.Blocking == nil {
		opts.Blocking = rdb
	}
	return &Store{rdb: rdb, block: opts.Blocking, prefix: opts.Prefix, maxLen: opts.MaxLen}
}

// LogKey is the stream key of a room: PREFIX:{ROOM}:log.
func (s *Store) LogKey(room string) string { return s.prefix + ":{" + room + "}:log" }

// OnlineKey is the presence key of a room: PREFIX:{ROOM}:online.
func (s *Store) OnlineKey(room string) string { return s.prefix + ":{" + room + "}:online" }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Stat returns how many entries the room's stream holds and the last ID it
// generated; a room never written to has none and 0-0.
func (s *Store) Stat(ctx context.Context, room string) (chat.RoomStat, error) {
	key := s.LogKey(room)
	in, err := s.rdb.XInfoStream(ctx, key).Result()
	if isNoSuchKey(err) {
		return chat.RoomStat{}, nil
	}
	if err != nil {
		return chat.RoomStat{}, fmt.Errorf("xinfo %s: %w", key, err)
	}
	last, err := chat.ParseID(in.LastGeneratedID)
	if err != nil {
		return chat.RoomStat{}, fmt.Errorf("xinfo %s: last-generated-id %q: %w", key, in.LastGeneratedID, err)
	}
	return chat.RoomStat{Length: in.Length, LastID: last}, nil
}

// Append adds e to its room's stream and returns the ID Redis gave it.
func (s *Store) Append(ctx context.Context, e chat.Event) (chat.ID, error) {
	key := s.LogKey(e.Room)
	id, err := s.rdb.XAdd(ctx, s.xaddArgs(key, e)).Result()
	if err != nil {
		return chat.ID{}, fmt.Errorf("xadd %s: %w", key, err)
	}
	return chat.ParseID(id)
}

func (s *Store) xaddArgs(key string, e chat.Event) *redis.XAddArgs {
	values := make([]any, 0, 8+2*len(e.Attrs))
	values = append(values, fieldType, string(e.Kind), fieldFrom, e.From)
	if e.Text != "" {
		values = append(values, fieldText, e.Text)
	}
	if e.Nonce != "" {
		values = append(values, fieldNonce, e.Nonce)
	}
	for k, v := range e.Attrs {
		values = append(values, attrPrefix+k, v)
	}
	return &redis.XAddArgs{Stream: key, MaxLen: s.maxLen, Approx: true, Values: values}
}

// historyPage is how many entries one XREVRANGE of the replay read fetches;
// join/leave entries are skipped, so it is larger than the usual history.
const historyPage = 200

// Recent returns up to n replayable entries (oldest first) from the end of
// the room's stream, skipping join and leave entries, and the boundary: the
// newest entry of the stream when it was read (0-0 for an empty stream),
// whether or not it was replayed. Every entry after the boundary is live.
func (s *Store) Recent(ctx context.Context, room string, n int) (events []chat.Event, boundary chat.ID, err error) {
	key := s.LogKey(room)
	end := "+"
	first := true
	for len(events) < n {
		msgs, err := s.rdb.XRevRangeN(ctx, key, end, "-", historyPage).Result()
		if err != nil {
			return nil, chat.ID{}, fmt.Errorf("xrevrange %s: %w", key, err)
		}
		if first && len(msgs) > 0 {
			// The first page is one atomic read: its newest entry is the
			// boundary. Older pages only see immutable entries.
			boundary = chat.MustParseID(msgs[0].ID)
		}
		first = false
		for _, m := range msgs {
			e := s.decode(room, m)
			if e.Replayable() {
				events = append(events, e)
				if len(events) == n {
					break
				}
			}
		}
		if len(msgs) < historyPage {
			break
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	// Newest first from XREVRANGE; the protocol sends oldest first.
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	return events, boundary, nil
}

// After returns up to count entries after the given ID, oldest first, and
// the stream's last generated ID. It fails with chat.ErrGap when entries after
// the ID may be missing, judged from the stream's own bookkeeping in the
// same transaction as the read, so a trim cannot slip in between.
func (s *Store) After(ctx context.Context, room string, after chat.ID, count int) ([]chat.Event, chat.ID, error) {
	key := s.LogKey(room)
	if after == maxID {
		// Nothing can follow the largest ID, and Redis rejects "(" on it.
		return nil, chat.ID{}, chat.ErrGap
	}
	var info *redis.XInfoStreamCmd
	var self, page *redis.XMessageSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		info = p.XInfoStream(ctx, key)
		self = p.XRangeN(ctx, key, after.String(), after.String(), 1)
		page = p.XRangeN(ctx, key, "("+after.String(), "+", int64(count))
		return nil
	})
	if err != nil && !isNoSuchKey(info.Err()) {
		return nil, chat.ID{}, fmt.Errorf("xinfo/xrange %s: %w", key, err)
	}
	if isNoSuchKey(info.Err()) {
		// No stream: nothing was ever generated, or it was lost. Only the
		// cursor of an empty room, 0-0, is still exact.
		if after.IsZero() {
			return nil, chat.ID{}, nil
		}
		return nil, chat.ID{}, chat.ErrGap
	}
	in := info.Val()
	last, err := chat.ParseID(in.LastGeneratedID)
	if err != nil {
		return nil, chat.ID{}, fmt.Errorf("xinfo %s: last-generated-id %q: %w", key, in.LastGeneratedID, err)
	}
	if !s.continuous(*in, last, after, len(self.Val()) == 1) {
		return nil, last, chat.ErrGap
	}
	events := make([]chat.Event, 0, len(page.Val()))
	for _, m := range page.Val() {
		events = append(events, s.decode(room, m))
	}
	return events, last, nil
}

var maxID = chat.ID{Ms: math.MaxUint64, Seq: math.MaxUint64}

// continuous reports whether every entry the stream generated after the ID
// is still in it.
func (s *Store) continuous(in redis.XInfoStream, last, after chat.ID, exists bool) bool {
	if last.Less(after) {
		return false // newer than anything generated: the stream was recreated
	}
	if in.MaxDeletedEntryID == "" {
		// No deletion bookkeeping (Redis < 7 or the embedded server): the
		// ID's own entry must still exist. The cursor 0-0 is exact while
		// the stream is shorter than its cap, because only then has nothing
		// been trimmed.
		return exists || (after.IsZero() && in.Length < s.maxLen)
	}
	maxDeleted, err := chat.ParseID(in.MaxDeletedEntryID)
	if err != nil || after.Less(maxDeleted) {
		return false // an entry after the ID was deleted
	}
	removed := in.EntriesAdded - in.Length // trimmed plus deleted
	if removed == 0 {
		return true
	}
	if in.Length == 0 {
		return after == last
	}
	// Trimming removes from the front: every trimmed entry is older than
	// the first one left, so the ID is safe from the first entry on.
	first, err := chat.ParseID(in.RecordedFirstEntryID)
	return err == nil && !after.Less(first)
}

// Read waits up to block for entries after the ID and returns up to count of
// them, oldest first; none when the wait ends empty.
func (s *Store) Read(ctx context.Context, room string, after chat.ID, count int, block time.Duration) ([]chat.Event, error) {
	key := s.LogKey(room)
	res, err := s.block.XRead(ctx, &redis.XReadArgs{
		Streams: []string{key, after.String()},
		Count:   int64(count),
		Block:   block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("xread %s: %w", key, err)
	}
	var events []chat.Event
	for _, st := range res {
		events = make([]chat.Event, 0, len(st.Messages))
		for _, m := range st.Messages {
			events = append(events, s.decode(room, m))
		}
	}
	return events, nil
}

// Stream entry fields.
const (
	fieldType  = "type"
	fieldFrom  = "from"
	fieldText  = "text"
	fieldNonce = "nonce"
	// attrPrefix starts the field of each of an event's attributes.
	attrPrefix = "a."
)

func (s *Store) decode(room string, m redis.XMessage) chat.Event {
	str := func(k string) string {
		v, _ := m.Values[k].(string)
		return v
	}
	e := chat.Event{
		ID:    chat.MustParseID(m.ID),
		Room:  room,
		Kind:  kindOf(str(fieldType)),
		From:  str(fieldFrom),
		Text:  str(fieldText),
		Nonce: str(fieldNonce),
	}
	// Only entries with fields beyond the fixed ones pay for the map.
	fixed := 2 // type and from
	if _, ok := m.Values[fieldText]; ok {
		fixed++
	}
	if _, ok := m.Values[fieldNonce]; ok {
		fixed++
	}
	if len(m.Values) > fixed {
		for k, v := range m.Values {
			if name, ok := strings.CutPrefix(k, attrPrefix); ok {
				if e.Attrs == nil {
					e.Attrs = make(map[string]string)
				}
				e.Attrs[name], _ = v.(string)
			}
		}
	}
	return e
}

// kindOf returns the shared constant for the usual kinds, so the window
// does not hold a copy of the same word per entry.
func kindOf(s string) chat.Kind {
	switch chat.Kind(s) {
	case chat.KindMessage:
		return chat.KindMessage
	case chat.KindJoin:
		return chat.KindJoin
	case chat.KindLeave:
		return chat.KindLeave
	}
	return chat.Kind(s)
}

func isNoSuchKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such key")
}

func msScore(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
