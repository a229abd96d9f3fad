package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
)

// A signed-in user's rooms are two keys under the user's own hash tag:
// PREFIX:{u:UID}:rooms, a sorted set of the rooms they joined scored by
// the last join (newest kept, maxRooms of them), and PREFIX:{u:UID}:read,
// a hash of each room's read marker: the ID of the last entry they read.
// A room is named as the client enters it: its name, or @USERID for a
// direct conversation.

// RoomsKey is a user's list of joined rooms.
func (s *Store) RoomsKey(uid string) string { return s.prefix + ":{u:" + uid + "}:rooms" }

// ReadKey is a user's read markers.
func (s *Store) ReadKey(uid string) string { return s.prefix + ":{u:" + uid + "}:read" }

// maxRooms bounds each user's list of rooms.
const maxRooms = 200

// joinedScript records a join in the user's list and returns the read
// marker, which a first join sets to the newest entry the user is shown.
// KEYS: rooms, read. ARGV: room, now ms, boundary, max rooms.
var joinedScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local gone = redis.call('ZRANGE', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
for _, r in ipairs(gone) do redis.call('HDEL', KEYS[2], r) end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3])
return redis.call('HGET', KEYS[2], ARGV[1])
`)

// Joined records that uid entered room and returns their read marker in
// it; the first time, the marker is boundary (what the join showed).
func (s *Store) Joined(ctx context.Context, uid, room string, boundary chat.ID) (chat.ID, error) {
	raw, err := joinedScript.Run(ctx, s.rdb, []string{s.RoomsKey(uid), s.ReadKey(uid)},
		room, time.Now().UnixMilli(), boundary.String(), maxRooms).Text()
	if err != nil {
		return chat.ID{}, fmt.Errorf("joined %s: %w", room, err)
	}
	id, err := chat.ParseID(raw)
	if err != nil {
		return chat.ID{}, fmt.Errorf("read marker %q: %w", raw, err)
	}
	return id, nil
}

// markScript moves a read marker forward only: an ID at or before the
// marker leaves it. KEYS: read. ARGV: room, ID. Returns the marker.
var markScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
if cur then
  local cm, cs = parts(cur)
  local nm, ns = parts(ARGV[2])
  if cm and (nm < cm or (nm == cm and ns <= cs)) then return cur end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return ARGV[2]
`)

// MarkRead moves uid's read marker in room forward to id, never back, and
// returns the marker.
func (s *Store) MarkRead(ctx context.Context, uid, room string, id chat.ID) (chat.ID, error) {
	raw, err := markScript.Run(ctx, s.rdb, []string{s.ReadKey(uid)}, room, id.String()).Text()
	if err != nil {
		return chat.ID{}, fmt.Errorf("mark read %s: %w", room, err)
	}
	return chat.ParseID(raw)
}

// unreadPages bounds the pages of entries read per room to count its
// unread: past them (a room of joins and reactions) the count is "more".
const unreadPages = 4

// Rooms lists uid's rooms, most recently joined first, with their unread
// counts and last messages, computed from the streams: resolve turns a
// listed name into the room whose stream to read. However many rooms,
// it costs three round trips: the markers; the newest page of every
// room's stream, pipelined; the last messages' states, pipelined. Only a
// room with a full page of entries after its marker and fewer than
// chat.MaxUnread unread reads further, page by page.
func (s *Store) Rooms(ctx context.Context, uid string, resolve func(string) string) ([]chat.RoomSummary, error) {
	names, err := s.rdb.ZRevRange(ctx, s.RoomsKey(uid), 0, maxRooms-1).Result()
	if err != nil {
		return nil, fmt.Errorf("rooms of %s: %w", uid, err)
	}
	out := make([]chat.RoomSummary, len(names))
	if len(names) == 0 {
		return out, nil
	}
	marks, err := s.rdb.HMGet(ctx, s.ReadKey(uid), names...).Result()
	if err != nil {
		return nil, fmt.Errorf("read markers of %s: %w", uid, err)
	}
	rooms := make([]string, len(names))
	pages := make([]*redis.XMessageSliceCmd, len(names))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range names {
			out[i].Room, rooms[i] = name, resolve(name)
			if m, ok := marks[i].(string); ok {
				out[i].Read, _ = chat.ParseID(m)
			}
			pages[i] = p.XRevRangeN(ctx, s.LogKey(rooms[i]), "+", "-", historyPage)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("the streams of %d rooms: %w", len(names), err)
	}
	for i := range out {
		if err := s.summarize(ctx, uid, rooms[i], pages[i].Val(), &out[i]); err != nil {
			return nil, err
		}
	}
	states := make([]*redis.SliceCmd, len(out))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range out {
			if last := out[i].Last; last != nil {
				states[i] = p.HMGet(ctx, s.MsgKey(rooms[i], last.ID), stateFields(uid, "")...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("last messages' states: %w", err)
	}
	for i, c := range states {
		if c != nil {
			out[i].Last.State = parseState(c.Val())
		}
	}
	return out, nil
}

// summarize counts a room's unread messages from the newest page of its
// stream (msgs, newest first) back to the marker, reading older pages
// only while the count is open, and finds the room's last message.
func (s *Store) summarize(ctx context.Context, uid, room string, msgs []redis.XMessage, sum *chat.RoomSummary) error {
	key := s.LogKey(room)
	for page := 0; ; page++ {
		for _, m := range msgs {
			e := s.decode(room, m)
			if e.Kind != chat.KindMessage && e.Kind != chat.KindFile {
				continue
			}
			if sum.Last == nil {
				sum.Last = &e
			}
			if !sum.Read.Less(e.ID) || sum.More {
				if sum.Last != nil {
					return nil // reached the marker, and the last message is known
				}
				continue
			}
			if e.UID == uid {
				continue
			}
			if sum.Unread == chat.MaxUnread {
				sum.More = true
				continue // on to the last message, if not found yet
			}
			sum.Unread++
		}
		if len(msgs) < historyPage {
			return nil
		}
		last, err := chat.ParseID(msgs[len(msgs)-1].ID)
		if err != nil {
			return fmt.Errorf("xrevrange %s: id %q: %w", key, msgs[len(msgs)-1].ID, err)
		}
		if !sum.Read.Less(last) && sum.Last != nil {
			return nil
		}
		if page == unreadPages-1 {
			if sum.Read.Less(last) {
				sum.More = true
			}
			return nil
		}
		msgs, err = s.rdb.XRevRangeN(ctx, key, "("+last.String(), "-", historyPage).Result()
		if err != nil {
			return fmt.Errorf("xrevrange %s: %w", key, err)
		}
	}
}
