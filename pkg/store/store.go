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
	// Blocking, when set, serves the connections that wait: bell
	// subscriptions (one per node) and direct mode's XREAD BLOCK, which
	// holds a connection for up to a block interval; every other command
	// uses the main client. Giving them their own pool keeps a
	// burst of joins or leaves from growing the connections that readers
	// need, and lets the command pool stay small. Default: the main client.
	Blocking redis.UniversalClient
	// DedupeWindow is how long a (room, sender, nonce) is remembered: a
	// repeat within it is not stored again. Default 5 minutes.
	DedupeWindow time.Duration
	// AckReplicas, when positive, makes Append wait (WAIT) until that many
	// Redis replicas have the entry, at most AckTimeout, and fail with
	// ErrNotReplicated when fewer do. Default 0: the primary's own
	// persistence is the promise.
	AckReplicas int
	// AckTimeout bounds the WAIT. Default 1s.
	AckTimeout time.Duration
	// Linger, when positive, gathers the appends with a nonce (messages
	// from clients) that arrive within it of the first, and sends them to
	// Redis in one pipeline per node: fewer wake-ups of Redis for up to
	// Linger more latency per message. Default 0: each append goes at once.
	Linger time.Duration
	// OnBatch, when set, is told the size of every batch Linger gathered.
	OnBatch func(size int)
}

// ErrNotReplicated means an entry is stored on the primary but fewer
// replicas than Options.AckReplicas confirmed it in time. Appending the same
// nonce again waits for them again and appends nothing new.
var ErrNotReplicated = errors.New("not confirmed by enough replicas")

// Store reads and writes rooms in Redis through any go-redis universal
// client: a single node, Sentinel or Cluster.
type Store struct {
	rdb    redis.UniversalClient
	block  redis.UniversalClient
	prefix string
	maxLen int64
	opts   Options
	batch  *batcher // nil without Options.Linger
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
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = 5 * time.Minute
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = time.Second
	}
	s := &Store{rdb: rdb, block: opts.Blocking, prefix: opts.Prefix, maxLen: opts.MaxLen, opts: opts}
	if opts.Linger > 0 {
		s.batch = &batcher{s: s, linger: opts.Linger}
	}
	return s
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

// SentKey is the key that remembers, for the dedupe window, the ID of the
// entry a sender stored with a nonce: PREFIX:{ROOM}:sent:LEN:SENDER:NONCE.
// The length of the sender keeps the two free-form parts apart.
func (s *Store) SentKey(room, sender, nonce string) string {
	return s.prefix + ":{" + room + "}:sent:" + strconv.Itoa(len(sender)) + ":" + sender + ":" + nonce
}

// appendScript stores an entry unless its sender already stored its nonce,
// in one atomic step: the check, the XADD and the record of the new ID. So
// a retry, from any replica, and an original that Redis runs late (after
// the client gave up on it and retried) both find the first entry.
// A new entry rings the room's bell (see Bells) with "PREV ID FIELDS": the
// ID of the entry before it, its own, and its fields (bellFields), so a
// replica whose cursor is PREV needs no read. The XREVRANGE of one entry
// costs Redis less than the reads of every replica that follows the room
// (BENCHMARKS.md).
// KEYS: stream, sent key, bell channel. ARGV: maxlen, window in ms, touch
// (1 when the caller will WAIT for replicas: a duplicate then writes the
// record again, so that the WAIT covers the original entry too), the
// publish command, the fields as the bell carries them, then the entry's
// fields.
var appendScript = redis.NewScript(`
local id = redis.call('GET', KEYS[2])
if id then
  if ARGV[3] == '1' then redis.call('SET', KEYS[2], id, 'KEEPTTL') end
  return {id, 1}
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if last[1] then prev = last[1][1] end
id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 6))
redis.call('SET', KEYS[2], id, 'PX', ARGV[2])
redis.call(ARGV[4], KEYS[3], prev .. ' ' .. id .. ' ' .. ARGV[5])
return {id, 0}
`)

// Append adds e to its room's stream and returns the ID Redis gave it. When
// both sender and e.Nonce are set, a repeat of (room, sender, nonce) within
// the dedupe window appends nothing and returns the first entry's ID. With
// Options.AckReplicas it returns only once that many replicas have the
// entry, or fails with ErrNotReplicated.
func (s *Store) Append(ctx context.Context, e chat.Event, sender string) (chat.Ack, error) {
	key := s.LogKey(e.Room)
	dedupe := sender != "" && e.Nonce != ""
	var keys []string
	if dedupe {
		keys = []string{key, s.SentKey(e.Room, sender, e.Nonce), s.BellChannel(e.Room)}
		if s.batch != nil {
			return s.batch.append(ctx, key, keys, s.scriptArgs(e))
		}
	}
	var cmd redis.Cmder
	queue := func(c redis.Cmdable) {
		if !dedupe {
			cmd = c.XAdd(ctx, s.xaddArgs(key, e))
			s.ring(ctx, c, e.Room)
			return
		}
		cmd = appendScript.EvalSha(ctx, c, keys, s.scriptArgs(e)...)
	}
	var wait *redis.Cmd
	run := func() error {
		if s.opts.AckReplicas <= 0 {
			if dedupe {
				queue(s.rdb)
				return cmd.Err()
			}
			// The entry and its bell in one transaction, in order.
			_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				queue(p)
				return nil
			})
			return err
		}
		// WAIT counts the replicas that have this connection's writes, so
		// it must follow the append on the same connection: one pipeline
		// on the node that owns the room.
		c, err := s.nodeFor(ctx, key)
		if err != nil {
			return err
		}
		_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
			queue(p)
			wait = p.Do(ctx, "wait", s.opts.AckReplicas, s.opts.AckTimeout.Milliseconds())
			return nil
		})
		return err
	}
	err := run()
	if dedupe && isNoScript(cmd.Err()) {
		// First use on this server (or after a restart or SCRIPT FLUSH):
		// load it into the node that owns the room, and run it again.
		c, nerr := s.nodeFor(ctx, key)
		if nerr != nil {
			return chat.Ack{}, nerr
		}
		if lerr := appendScript.Load(ctx, c).Err(); lerr != nil {
			return chat.Ack{}, fmt.Errorf("load append script: %w", lerr)
		}
		err = run()
	}
	if err != nil {
		return chat.Ack{}, fmt.Errorf("xadd %s: %w", key, err)
	}
	var out chat.Ack
	switch c := cmd.(type) {
	case *redis.StringCmd:
		out.ID, err = chat.ParseID(c.Val())
	case *redis.Cmd:
		out, err = parseAppended(c)
	}
	if err != nil {
		return chat.Ack{}, fmt.Errorf("xadd %s: %w", key, err)
	}
	return out, s.replicated(key, out, wait)
}

// replicated checks the WAIT that followed an append, if any: it fails
// with ErrNotReplicated when fewer replicas than Options.AckReplicas have
// the entry.
func (s *Store) replicated(key string, out chat.Ack, wait *redis.Cmd) error {
	if wait == nil {
		return nil
	}
	if n, werr := wait.Int64(); werr != nil || n < int64(s.opts.AckReplicas) {
		return fmt.Errorf("wait %s: entry %s: %w: %d of %d within %s (%v)", key, out.ID, ErrNotReplicated, n, s.opts.AckReplicas, s.opts.AckTimeout, werr)
	}
	return nil
}

func parseAppended(c *redis.Cmd) (chat.Ack, error) {
	res, err := c.Slice()
	if err != nil {
		return chat.Ack{}, err
	}
	if len(res) != 2 {
		return chat.Ack{}, fmt.Errorf("append script: %d values, want 2", len(res))
	}
	raw, _ := res[0].(string)
	dup, _ := res[1].(int64)
	id, err := chat.ParseID(raw)
	return chat.Ack{ID: id, Duplicate: dup == 1}, err
}

func (s *Store) scriptArgs(e chat.Event) []any {
	touch := "0"
	if s.opts.AckReplicas > 0 {
		touch = "1"
	}
	values := s.fields(e)
	args := make([]any, 0, 5+len(values))
	args = append(args, s.maxLen, s.opts.DedupeWindow.Milliseconds(), touch, s.publishCmd(), bellFields(values))
	return append(args, values...)
}

// nodeFor returns a client of the one node that owns key: in Redis Cluster
// the primary of its slot, otherwise the client itself.
func (s *Store) nodeFor(ctx context.Context, key string) (redis.Cmdable, error) {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		c, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("node for %s: %w", key, err)
		}
		return c, nil
	}
	return s.rdb, nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

func (s *Store) xaddArgs(key string, e chat.Event) *redis.XAddArgs {
	return &redis.XAddArgs{Stream: key, MaxLen: s.maxLen, Approx: true, Values: s.fields(e)}
}

// fields are an entry's stream fields, in XADD's order: name, value, ...
func (s *Store) fields(e chat.Event) []any {
	values := make([]any, 0, 14)
	values = append(values, fieldType, string(e.Kind), fieldFrom, e.From)
	if e.Text != "" {
		values = append(values, fieldText, e.Text)
	}
	if e.Nonce != "" {
		values = append(values, fieldNonce, e.Nonce)
	}
	if e.UID != "" {
		values = append(values, fieldUID, e.UID)
	}
	if e.Bot {
		values = append(values, fieldBot, "1")
	}
	if e.Author != "" {
		values = append(values, fieldAuthor, e.Author)
	}
	if e.Attrs != "" {
		values = append(values, fieldAttrs, string(e.Attrs))
	}
	return values
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

// Before returns up to n replayable entries (messages, not joins or
// leaves) older than before, newest first; with a zero before, the newest.
// more says whether older ones may remain.
func (s *Store) Before(ctx context.Context, room string, before chat.ID, n int) (events []chat.Event, more bool, err error) {
	key := s.LogKey(room)
	end := "+"
	if !before.IsZero() {
		end = "(" + before.String()
	}
	for len(events) < n {
		msgs, err := s.rdb.XRevRangeN(ctx, key, end, "-", historyPage).Result()
		if err != nil {
			return nil, false, fmt.Errorf("xrevrange %s: %w", key, err)
		}
		for i, m := range msgs {
			e := s.decode(room, m)
			if !e.Replayable() {
				continue
			}
			events = append(events, e)
			if len(events) == n {
				return events, i < len(msgs)-1 || len(msgs) == historyPage, nil
			}
		}
		if len(msgs) < historyPage {
			return events, false, nil
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	return events, true, nil
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
	if !exists && !after.IsZero() && after != maxDeleted {
		// The cursor names an entry the stream has not got, and no trim
		// or delete took it (those are caught here and below): Redis lost
		// it, restarting from an older snapshot or AOF. What the client
		// saw after that point is gone; entries appended since the
		// restart may already follow it, so only the cursor's own entry
		// tells.
		return false
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
	fieldUID   = "uid"
	fieldBot   = "bot"
	// fieldAttrs holds an event's attributes in their wire form, one
	// field however many there are.
	fieldAttrs = "attrs"
	// fieldAuthor is an anonymous sender's author hash (chat.AuthorOf).
	// Only the amend script reads it: decode leaves it out, so the
	// windows of recent entries do not hold it.
	fieldAuthor = "ak"
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
		UID:   str(fieldUID),
		Bot:   str(fieldBot) == "1",
		Attrs: chat.Attrs(str(fieldAttrs)),
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
	case chat.KindReact:
		return chat.KindReact
	}
	return chat.Kind(s)
}

func isNoSuchKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such key")
}

func msScore(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
