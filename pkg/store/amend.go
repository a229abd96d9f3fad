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

// A message that was edited, deleted or reacted to has a state: one hash,
// PREFIX:{ROOM}:msg:ID, with the fields
//
//	text       the edited text
//	edited     the ID of the last edit entry
//	deleted    "1"
//	reactions  "EMOJI\tCOUNT\n" per emoji, in the order first used
//	u:WHO      "\nEMOJI\n..." the emoji WHO reacted with
//
// and its ID is in the room's index of changed messages, the sorted set
// PREFIX:{ROOM}:amended scored by the ID's milliseconds, which tells a
// replay which of its messages have a state and lets the states of
// messages trimmed from the stream be deleted. The entry that records the
// change is appended to the stream in the same script, so a client sees
// the change in its place among the entries, and a replay never shows an
// older state than the entries after it.

// MsgKey is the state of one message: PREFIX:{ROOM}:msg:ID.
func (s *Store) MsgKey(room string, id chat.ID) string {
	return s.msgPrefix(room) + id.String()
}

func (s *Store) msgPrefix(room string) string { return s.prefix + ":{" + room + "}:msg:" }

// AmendedKey indexes a room's messages that have a state.
func (s *Store) AmendedKey(room string) string { return s.prefix + ":{" + room + "}:amended" }

// reactor is who a reaction or a viewer is: the signed-in user, or the
// anonymous author key's hash.
func reactor(uid, author string) string {
	if uid != "" {
		return "u:" + uid
	}
	return "k:" + author
}

// amendScript checks and applies an amendment and appends its entry, in
// one atomic step. KEYS: stream, message state, index, bell, sent key.
// ARGV: op, ref, uid, author, who, maxlen, publish command, dedupe window
// in ms, from, nonce, text or emoji, on ("1"/"0"), attributes, the state
// keys' prefix, the ref's milliseconds, max reactions.
// It returns {id, 0} for a new entry, {id, 1} for a nonce stored before,
// {ref, 2} for a reaction already as asked (nothing appended), or
// {"", code} when refused.
//
// The states of trimmed messages are deleted here, a few per call, by
// keys built from the state prefix: they share the room's hash tag, so in
// a cluster they are on this node.
var amendScript = redis.NewScript(`
local op, ref, uid, author, who = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local nonce = ARGV[10]
if nonce ~= '' then
  local seen = redis.call('GET', KEYS[5])
  if seen then return {seen, 1} end
end
local target = redis.call('XRANGE', KEYS[1], ref, ref)
if not target[1] then return {'', 'not_found'} end
local tf = target[1][2]
local ttype, tuid, tak = '', '', ''
for i = 1, #tf, 2 do
  if tf[i] == 'type' then ttype = tf[i+1]
  elseif tf[i] == 'uid' then tuid = tf[i+1]
  elseif tf[i] == 'ak' then tak = tf[i+1] end
end
if ttype ~= 'message' and ttype ~= 'file' then return {'', 'not_found'} end
if redis.call('HEXISTS', KEYS[2], 'deleted') == 1 then return {'', 'not_found'} end
if op == 'edit' and ttype ~= 'message' then return {'', 'not_editable'} end
if op ~= 'react' then
  local own
  if uid ~= '' then own = (tuid == uid) else own = (tuid == '' and tak ~= '' and tak == author) end
  if not own then return {'', 'forbidden'} end
end
local fields = {'type', op, 'from', ARGV[9]}
if uid ~= '' then fields[#fields+1] = 'uid'; fields[#fields+1] = uid end
if author ~= '' then fields[#fields+1] = 'ak'; fields[#fields+1] = author end
if nonce ~= '' then fields[#fields+1] = 'nonce'; fields[#fields+1] = nonce end
local attrs = ARGV[13]
local reactions, mine
if op == 'edit' then
  fields[#fields+1] = 'text'; fields[#fields+1] = ARGV[11]
elseif op == 'react' then
  local emoji, on = ARGV[11], ARGV[12] == '1'
  mine = redis.call('HGET', KEYS[2], 'u:' .. who) or '\n'
  local has = string.find(mine, '\n' .. emoji .. '\n', 1, true) ~= nil
  if has == on then return {ref, 2} end
  local list, count, found = {}, 0, false
  for e, n in string.gmatch(redis.call('HGET', KEYS[2], 'reactions') or '', '([^\t\n]+)\t(%d+)\n') do
    n = tonumber(n)
    if e == emoji then
      found = true
      if on then n = n + 1 else n = n - 1 end
      if n < 0 then n = 0 end
      count = n
    end
    if n > 0 then list[#list+1] = e .. '\t' .. n .. '\n' end
  end
  if not found then
    if not on then return {ref, 2} end
    if #list >= tonumber(ARGV[16]) then return {'', 'too_many'} end
    count = 1
    list[#list+1] = emoji .. '\t1\n'
  end
  reactions = table.concat(list)
  if on then
    mine = mine .. emoji .. '\n'
  else
    local at = string.find(mine, '\n' .. emoji .. '\n', 1, true)
    mine = string.sub(mine, 1, at) .. string.sub(mine, at + #emoji + 2)
  end
  attrs = '"count":"' .. count .. '",' .. attrs
end
fields[#fields+1] = 'attrs'; fields[#fields+1] = attrs
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if last[1] then prev = last[1][1] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], '*', unpack(fields))
if op == 'edit' then
  redis.call('HSET', KEYS[2], 'text', ARGV[11], 'edited', id)
elseif op == 'delete' then
  redis.call('HSET', KEYS[2], 'deleted', '1')
else
  redis.call('HSET', KEYS[2], 'reactions', reactions)
  if mine == '\n' then redis.call('HDEL', KEYS[2], 'u:' .. who) else redis.call('HSET', KEYS[2], 'u:' .. who, mine) end
end
redis.call('ZADD', KEYS[3], ARGV[15], ref)
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if first[1] then
  local ms = string.match(first[1][1], '^(%d+)')
  local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ms, 'LIMIT', 0, 8)
  for _, old in ipairs(gone) do
    redis.call('DEL', ARGV[14] .. old)
    redis.call('ZREM', KEYS[3], old)
  end
end
if nonce ~= '' then redis.call('SET', KEYS[5], id, 'PX', ARGV[8]) end
local bell = {}
for i = 1, #fields do bell[#bell+1] = #fields[i] .. ':' .. fields[i] end
redis.call(ARGV[7], KEYS[4], prev .. ' ' .. id .. ' ' .. table.concat(bell))
return {id, 0}
`)

// Refusals of an amendment.
var (
	errNotFound    = &chat.Error{Code: chat.CodeNotFound, Message: "no such message in this room (it may have been deleted or be too old)"}
	errNotEditable = &chat.Error{Code: chat.CodeBadRequest, Message: "only a text message can be edited"}
	errNotYours    = &chat.Error{Code: chat.CodeForbidden, Message: "only the author can edit or delete a message"}
	errTooMany     = &chat.Error{Code: chat.CodeTooLarge, Message: "a message holds at most 20 different reactions"}
)

// Amend applies an edit, a delete or a reaction and appends its entry. A
// refusal is a *chat.Error (not_found, forbidden, too_large, bad_request)
// and changes nothing. A reaction already as asked appends nothing and
// returns the message's ID with Duplicate set; so does a repeated nonce,
// with the first entry's ID.
func (s *Store) Amend(ctx context.Context, a chat.Amendment) (chat.Ack, error) {
	e := a.Event
	if !e.Kind.Amends() {
		return chat.Ack{}, fmt.Errorf("amend: %q is not an edit, delete or reaction", e.Kind)
	}
	attrs := map[string]string{chat.AttrRef: a.Ref.String()}
	arg, on := e.Text, "0"
	if e.Kind == chat.KindReact {
		attrs["emoji"], attrs["on"] = a.Emoji, strconv.FormatBool(a.On)
		arg = a.Emoji
		if a.On {
			on = "1"
		}
	}
	encoded, cerr := chat.NewAttrs(attrs)
	if cerr != nil {
		return chat.Ack{}, cerr
	}
	nonce, sent := e.Nonce, ""
	if nonce != "" && a.Sender != "" {
		sent = s.SentKey(e.Room, a.Sender, nonce)
	} else {
		nonce = ""
		sent = s.SentKey(e.Room, "", "") // unused, but a script's keys are fixed
	}
	keys := []string{s.LogKey(e.Room), s.MsgKey(e.Room, a.Ref), s.AmendedKey(e.Room), s.BellChannel(e.Room), sent}
	res, err := amendScript.Run(ctx, s.rdb, keys,
		string(e.Kind), a.Ref.String(), e.UID, e.Author, reactor(e.UID, e.Author), s.maxLen, s.publishCmd(),
		s.opts.DedupeWindow.Milliseconds(), e.From, nonce, arg, on, string(encoded), s.msgPrefix(e.Room),
		a.Ref.Ms, chat.MaxReactionsPerMessage).Slice()
	if err != nil {
		return chat.Ack{}, fmt.Errorf("amend %s in %s: %w", a.Ref, e.Room, err)
	}
	if len(res) != 2 {
		return chat.Ack{}, fmt.Errorf("amend script: %d values, want 2", len(res))
	}
	raw, _ := res[0].(string)
	switch outcome := res[1].(type) {
	case string:
		switch outcome {
		case "not_found":
			return chat.Ack{}, errNotFound
		case "not_editable":
			return chat.Ack{}, errNotEditable
		case "forbidden":
			return chat.Ack{}, errNotYours
		case "too_many":
			return chat.Ack{}, errTooMany
		}
		return chat.Ack{}, fmt.Errorf("amend script: outcome %q", outcome)
	case int64:
		id, err := chat.ParseID(raw)
		if err != nil {
			return chat.Ack{}, fmt.Errorf("amend script: id %q: %w", raw, err)
		}
		return chat.Ack{ID: id, Duplicate: outcome != 0}, nil
	}
	return chat.Ack{}, errors.New("amend script: malformed reply")
}

// States sets the State of every message and file in events that was
// changed after it was posted, as viewer (a signed-in uid, else the
// anonymous author hash) sees it: one look at the room's index, then one
// read per changed message, pipelined.
func (s *Store) States(ctx context.Context, room string, events []chat.Event, uid, author string) error {
	lo, hi := uint64(0), uint64(0)
	n := 0
	for _, e := range events {
		if e.Kind != chat.KindMessage && e.Kind != chat.KindFile {
			continue
		}
		if n == 0 || e.ID.Ms < lo {
			lo = e.ID.Ms
		}
		hi = max(hi, e.ID.Ms)
		n++
	}
	if n == 0 {
		return nil
	}
	key := s.AmendedKey(room)
	changed, err := s.rdb.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: strconv.FormatUint(lo, 10), Max: strconv.FormatUint(hi, 10)}).Result()
	if err != nil {
		return fmt.Errorf("zrangebyscore %s: %w", key, err)
	}
	if len(changed) == 0 {
		return nil
	}
	want := make(map[string]bool, len(changed))
	for _, id := range changed {
		want[id] = true
	}
	cmds := map[int]*redis.SliceCmd{}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range events {
			if (e.Kind == chat.KindMessage || e.Kind == chat.KindFile) && want[e.ID.String()] {
				cmds[i] = p.HMGet(ctx, s.MsgKey(room, e.ID), stateFields(uid, author)...)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("message states in %s: %w", room, err)
	}
	for i, c := range cmds {
		events[i].State = parseState(c.Val())
	}
	return nil
}

// stateFields are the fields of a message's state that a viewer (uid,
// else the anonymous author hash) is shown, as parseState reads them.
func stateFields(uid, author string) []string {
	return []string{"text", "edited", "deleted", "reactions", "u:" + reactor(uid, author)}
}

// parseState reads the fields stateFields names; nil for a message never
// changed (a state hash that does not exist).
func parseState(v []any) *chat.State {
	changed := false
	for _, x := range v {
		changed = changed || x != nil
	}
	if !changed {
		return nil
	}
	str := func(i int) string {
		if i < len(v) {
			s, _ := v[i].(string)
			return s
		}
		return ""
	}
	st := &chat.State{Text: str(0), Deleted: str(2) == "1"}
	if id, err := chat.ParseID(str(1)); err == nil && st.Text != "" {
		st.EditedAt = chat.FormatTS(id.Time())
	}
	mine := str(4)
	for _, line := range strings.Split(str(3), "\n") {
		emoji, count, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(count)
		if err != nil || n <= 0 {
			continue
		}
		st.Reactions = append(st.Reactions, chat.Reaction{Emoji: emoji, Count: n, Me: strings.Contains(mine, "\n"+emoji+"\n")})
	}
	return st
}
