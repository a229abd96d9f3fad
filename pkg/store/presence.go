package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
)

// The presence set maps "CONN:NAME" to the time (Unix ms) after which the
// member counts as gone. Replicas refresh their members' expiry; a replica
// that dies stops refreshing, and whichever replica next reaps the room
// appends the leave entries.
func memberKey(m chat.Member) string { return m.Conn + ":" + m.Name }

func nameOf(member string) string {
	_, name, _ := strings.Cut(member, ":")
	return name
}

// leaveScript removes one member and appends its leave entry only if this
// call removed it, so a leave is written exactly once even when the member's
// own replica and a reaping replica race.
var leaveScript = redis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'leave', 'from', ARGV[3])
end
return false
`)

// reapScript removes members whose expiry has passed and appends a leave
// entry for each one it removed.
var reapScript = redis.NewScript(`
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 500)
local n = 0
for _, m in ipairs(expired) do
  if redis.call('ZREM', KEYS[1], m) == 1 then
    local i = string.find(m, ':', 1, true)
    local name = m
    if i then name = string.sub(m, i + 1) end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'leave', 'from', name)
    n = n + 1
  end
end
return n
`)

// Join marks m online until ttl from now, appends its join entry and
// returns the entry's ID and the distinct names online, including m.
func (s *Store) Join(ctx context.Context, room string, m chat.Member, ttl time.Duration) (chat.ID, []string, error) {
	online, log := s.OnlineKey(room), s.LogKey(room)
	now := time.Now()
	var add *redis.StringCmd
	var names *redis.StringSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, online, redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: memberKey(m)})
		add = p.XAdd(ctx, s.xaddArgs(log, chat.Event{Kind: chat.KindJoin, From: m.Name}))
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
	return id, distinctNames(names.Val()), nil
}

// Leave removes m and appends its leave entry, unless m was already gone
// (reaped by another replica), in which case it reports false.
func (s *Store) Leave(ctx context.Context, room string, m chat.Member) (bool, error) {
	keys := []string{s.OnlineKey(room), s.LogKey(room)}
	err := leaveScript.Run(ctx, s.rdb, keys, memberKey(m), s.maxLen, m.Name).Err()
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
	n, err := reapScript.Run(ctx, s.rdb, []string{online, log}, msScore(now), s.maxLen).Int()
	if err != nil {
		return 0, fmt.Errorf("reap %s: %w", online, err)
	}
	return n, nil
}

func distinctNames(members []string) []string {
	seen := make(map[string]struct{}, len(members))
	names := make([]string, 0, len(members))
	for _, m := range members {
		n := nameOf(m)
		if _, ok := seen[n]; !ok {
			seen[n] = struct{}{}
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}
