package store

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
)

// The presence set maps a member to the time (Unix ms) after which it
// counts as gone: "CONN:NAME" for an anonymous connection, "CONN|UIDHEX|NAME"
// for a signed-in user's (the user id hex-encoded, since it may hold any
// separator). Connection ids hold neither ':' nor '|'. Replicas refresh
// their members' expiry; a replica that dies stops refreshing, and whichever
// replica next reaps the room appends the leave entries.
func memberKey(m chat.Member) string {
	if m.UID != "" {
		return m.Conn + "|" + hex.EncodeToString([]byte(m.UID)) + "|" + m.Name
	}
	return m.Conn + ":" + m.Name
}

// parseMember returns a presence member's user id ("" when anonymous) and
// name.
func parseMember(member string) (uid, name string) {
	bar, colon := strings.IndexByte(member, '|'), strings.IndexByte(member, ':')
	if bar >= 0 && (colon < 0 || bar < colon) {
		uidHex, name, _ := strings.Cut(member[bar+1:], "|")
		id, _ := hex.DecodeString(uidHex)
		return string(id), name
	}
	_, name, _ = strings.Cut(member, ":")
	return "", name
}

// leaveScript removes one member and appends its leave entry only if this
// call removed it, so a leave is written exactly once even when the member's
// own replica and a reaping replica race.
// KEYS: online, stream, bell. ARGV: member, maxlen, name, uid, publish
// command.
var leaveScript = redis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local id
  if ARGV[4] ~= '' then
    id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'leave', 'from', ARGV[3], 'uid', ARGV[4])
  else
    id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'leave', 'from', ARGV[3])
  end
  redis.call(ARGV[5], KEYS[3], id)
  return id
end
return false
`)

// reapScript removes members whose expiry has passed and appends a leave
// entry for each one it removed, and rings the bell once.
// KEYS: online, stream, bell. ARGV: now, maxlen, publish command.
var reapScript = redis.NewScript(`
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 500)
local n = 0
for _, m in ipairs(expired) do
  if redis.call('ZREM', KEYS[1], m) == 1 then
    local bar = string.find(m, '|', 1, true)
    local colon = string.find(m, ':', 1, true)
    if bar and (not colon or bar < colon) then
      -- a signed-in user: CONN|UIDHEX|NAME
      local bar2 = string.find(m, '|', bar + 1, true) or #m
      local uid = string.gsub(string.sub(m, bar + 1, bar2 - 1), '..', function(h) return string.char(tonumber(h, 16)) end)
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'leave', 'from', string.sub(m, bar2 + 1), 'uid', uid)
    else
      local name = m
      if colon then name = string.sub(m, colon + 1) end
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'leave', 'from', name)
    end
    n = n + 1
  end
end
if n > 0 then redis.call(ARGV[3], KEYS[3], 'reaped') end
return n
`)

// Join marks m online until ttl from now, appends its join entry and
// returns the entry's ID and the people online, including m.
func (s *Store) Join(ctx context.Context, room string, m chat.Member, ttl time.Duration) (chat.ID, []chat.Member, error) {
	online, log := s.OnlineKey(room), s.LogKey(room)
	now := time.Now()
	var add *redis.StringCmd
	var names *redis.StringSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, online, redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: memberKey(m)})
		add = p.XAdd(ctx, s.xaddArgs(log, chat.Event{Kind: chat.KindJoin, From: m.Name, UID: m.UID}))
		s.ring(ctx, p, room)
		names = p.ZRangeByScore(ctx, online, &redis.ZRangeBy{Min: "(" + msScore(now), Max: "+inf"})
		return nil
	})
	if err != nil {
		return chat.ID{}, nil, fmt.Errorf("join %s: %w", log, err)
	}
	id, err := chat.ParseID(add.Val())
	if err != nil {
		return chat.ID{}, nil, fmt.Errorf("join %s: %w", log, err)
	}
	return id, distinctPeople(names.Val()), nil
}

// Leave removes m and appends its leave entry, unless m was already gone
// (reaped by another replica), in which case it reports false.
func (s *Store) Leave(ctx context.Context, room string, m chat.Member) (bool, error) {
	keys := []string{s.OnlineKey(room), s.LogKey(room), s.BellChannel(room)}
	err := leaveScript.Run(ctx, s.rdb, keys, memberKey(m), s.maxLen, m.Name, m.UID, s.publishCmd()).Err()
	switch {
	case err == redis.Nil:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("leave %s: %w", keys[1], err)
	}
	return true, nil
}

// Refresh extends the expiry of this replica's members of the room, then
// reaps expired members (of replicas that died) and returns how many leave
// entries it appended. A member already reaped is not brought back.
func (s *Store) Refresh(ctx context.Context, room string, members []chat.Member, ttl time.Duration) (int, error) {
	online, log := s.OnlineKey(room), s.LogKey(room)
	now := time.Now()
	if len(members) > 0 {
		zs := make([]redis.Z, len(members))
		expiry := float64(now.Add(ttl).UnixMilli())
		for i, m := range members {
			zs[i] = redis.Z{Score: expiry, Member: memberKey(m)}
		}
		if err := s.rdb.ZAddXX(ctx, online, zs...).Err(); err != nil {
			return 0, fmt.Errorf("zadd %s: %w", online, err)
		}
	}
	n, err := reapScript.Run(ctx, s.rdb, []string{online, log, s.BellChannel(room)}, msScore(now), s.maxLen, s.publishCmd()).Int()
	if err != nil {
		return 0, fmt.Errorf("reap %s: %w", online, err)
	}
	return n, nil
}

// distinctPeople returns the people online, one entry each, sorted by
// name (then user id), with no connection: anonymous connections count by
// name, signed-in ones by user id (two tabs of one user are one entry; two
// users with one name are two).
func distinctPeople(members []string) []chat.Member {
	seen := make(map[string]struct{}, len(members))
	people := make([]chat.Member, 0, len(members))
	for _, m := range members {
		uid, name := parseMember(m)
		who := "n:" + name
		if uid != "" {
			who = "u:" + uid
		}
		if _, ok := seen[who]; !ok {
			seen[who] = struct{}{}
			people = append(people, chat.Member{Name: name, UID: uid})
		}
	}
	sort.Slice(people, func(i, j int) bool {
		if people[i].Name != people[j].Name {
			return people[i].Name < people[j].Name
		}
		return people[i].UID < people[j].UID
	})
	return people
}

// DirectKey is the sorted set of a user's direct-message partners, scored
// by the last time either opened the conversation: PREFIX:{u:UID}:dms.
func (s *Store) DirectKey(uid string) string { return s.prefix + ":{u:" + uid + "}:dms" }

// maxConversations bounds each user's list of direct-message partners.
const maxConversations = 200

// RecordDirect notes that a and b have a direct-message conversation, in
// both users' lists (each user's list is one key, on its own shard).
func (s *Store) RecordDirect(ctx context.Context, a, b string) error {
	now := float64(time.Now().UnixMilli())
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, pair := range [][2]string{{a, b}, {b, a}} {
			key := s.DirectKey(pair[0])
			p.ZAdd(ctx, key, redis.Z{Score: now, Member: pair[1]})
			p.ZRemRangeByRank(ctx, key, 0, -maxConversations-1)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record direct %s/%s: %w", a, b, err)
	}
	return nil
}

// Conversations returns the user ids uid has direct-message conversations
// with, most recently opened first.
func (s *Store) Conversations(ctx context.Context, uid string) ([]string, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.DirectKey(uid), 0, maxConversations-1).Result()
	if err != nil {
		return nil, fmt.Errorf("conversations of %s: %w", uid, err)
	}
	return ids, nil
}
