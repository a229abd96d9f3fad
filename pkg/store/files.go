package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/chat"
)

// FileKey is a file's key: PREFIX:{ROOM}:file:ID, in the room's hash tag.
func (s *Store) FileKey(room, id string) string { return s.prefix + ":{" + room + "}:file:" + id }

// FileBytesKey counts the bytes of a room's files against its quota.
func (s *Store) FileBytesKey(room string) string { return s.prefix + ":{" + room + "}:filebytes" }

// putFileScript stores a file unless the room's byte count would pass the
// quota. The count lives as long as the newest file, so it is released
// when the room's files have all expired (an upper bound until then).
// KEYS: file, byte count. ARGV: size, quota, ttl ms, name, mime, data, created ms.
var putFileScript = redis.NewScript(`
local used = redis.call('INCRBY', KEYS[2], ARGV[1])
if used > tonumber(ARGV[2]) then
  redis.call('DECRBY', KEYS[2], ARGV[1])
  return 0
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'name', ARGV[4], 'mime', ARGV[5], 'data', ARGV[6], 'created', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// PutFile stores f as the room's file id for ttl, or fails with chat.ErrFileQuota
// when the room already holds quota bytes of files.
func (s *Store) PutFile(ctx context.Context, room, id string, f chat.Blob, ttl time.Duration, quota int64) error {
	keys := []string{s.FileKey(room, id), s.FileBytesKey(room)}
	ok, err := putFileScript.Run(ctx, s.rdb, keys, len(f.Data), quota, ttl.Milliseconds(),
		f.Name, f.Mime, f.Data, f.Created.UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("put file %s: %w", keys[0], err)
	}
	if ok != 1 {
		return chat.ErrFileQuota
	}
	return nil
}

// GetFile returns the room's file id, or chat.ErrNoFile.
func (s *Store) GetFile(ctx context.Context, room, id string) (chat.Blob, error) {
	key := s.FileKey(room, id)
	v, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return chat.Blob{}, fmt.Errorf("get file %s: %w", key, err)
	}
	data, ok := v["data"]
	if !ok {
		return chat.Blob{}, chat.ErrNoFile
	}
	ms, _ := strconv.ParseInt(v["created"], 10, 64)
	return chat.Blob{Name: v["name"], Mime: v["mime"], Created: time.UnixMilli(ms), Data: []byte(data)}, nil
}
