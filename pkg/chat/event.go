package chat

import (
	"encoding/json"
	"maps"
	"slices"
	"time"
	"unicode/utf8"
)

// Kind is the type of a stream entry.
type Kind string

// Kinds of stream entries. Join and leave entries record presence changes;
// everything else is conversation and is replayed to joiners.
const (
	KindMessage Kind = "message"
	KindJoin    Kind = "join"
	KindLeave   Kind = "leave"
	// KindFile is a file or image: attributes name, mime, size, url, and
	// for images width and height. The bytes live elsewhere (the url).
	KindFile Kind = "file"
)

// Event is one entry of a room's stream.
type Event struct {
	ID   ID
	Room string
	Kind Kind
	From string
	// UID is the signed-in sender's user id; empty for anonymous senders.
	UID   string
	Text  string
	Nonce string
	// Bot marks an entry posted by a backend through the publish API.
	Bot bool
	// Author is the hash of an anonymous sender's author key (AuthorOf),
	// stored so that only they can edit or delete the entry; never sent,
	// and not read back from the stream.
	Author string
	// State is the message's current state when it was changed after it
	// was posted; set on replays and history pages, never on live entries.
	State *State
	// Attrs are the fields that only some kinds carry (a file's name and
	// size, the id an edit refers to), sent as string fields of the event,
	// so a new kind needs no new field here. Make them with NewAttrs.
	Attrs Attrs
}

// Limits of an event's attributes.
const (
	MaxAttrs        = 16
	MaxAttrKeyLen   = 32
	MaxAttrValueLen = 4096
)

// reservedKeys are the event's fixed wire fields, which no attribute may
// shadow.
var reservedKeys = map[string]bool{
	"type": true, "id": true, "room": true, "from": true, "ts": true,
	"text": true, "nonce": true, "replay": true, "uid": true, "bot": true,
}

// ValidAttrKey reports whether k can name an attribute: ^[a-z][a-z0-9_]*$,
// at most MaxAttrKeyLen bytes, and not one of the event's fixed fields.
func ValidAttrKey(k string) bool {
	if k == "" || len(k) > MaxAttrKeyLen || reservedKeys[k] {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z':
		case (c >= '0' && c <= '9' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Attrs are an event's attributes in their wire form: the members of a
// JSON object with string values, keys sorted ("height":"1200","mime":...).
// They are encoded once, when the event is made, stored as one field of the
// stream entry and spliced into the event frame as they are, so reading and
// sending an entry's attributes costs what a text of the same length does:
// no map per entry, no encoding per delivery.
type Attrs string

// NewAttrs checks attributes (CheckAttrs) and encodes them.
func NewAttrs(m map[string]string) (Attrs, *Error) {
	if err := checkAttrs(m); err != nil {
		return "", err
	}
	var b []byte
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, mustMarshal(k)...)
		b = append(b, ':')
		b = append(b, mustMarshal(m[k])...)
	}
	return Attrs(b), nil
}

// Map decodes the attributes; nil when there are none or they are not
// well formed.
func (a Attrs) Map() map[string]string {
	if a == "" {
		return nil
	}
	var m map[string]string
	if json.Unmarshal([]byte("{"+string(a)+"}"), &m) != nil {
		return nil
	}
	return m
}

// CheckAttrs checks encoded attributes as NewAttrs checks a map: a JSON
// object's members with string values, at most MaxAttrs, valid keys,
// values of valid UTF-8 up to MaxAttrValueLen bytes. Attributes made by
// NewAttrs always pass; this guards what was put together otherwise.
func CheckAttrs(a Attrs) *Error {
	if a == "" {
		return nil
	}
	m := a.Map()
	if m == nil {
		return &Error{Code: CodeBadRequest, Message: "attributes are not a JSON object of strings"}
	}
	return checkAttrs(m)
}

func checkAttrs(attrs map[string]string) *Error {
	if len(attrs) > MaxAttrs {
		return &Error{Code: CodeBadRequest, Message: "too many attributes"}
	}
	for k, v := range attrs {
		if !ValidAttrKey(k) {
			return &Error{Code: CodeBadRequest, Message: "attribute name must match ^[a-z][a-z0-9_]{0,31}$ and not be a fixed field"}
		}
		if len(v) > MaxAttrValueLen || !utf8.ValidString(v) {
			return &Error{Code: CodeBadRequest, Message: "attribute value is not valid UTF-8 of at most 4096 bytes"}
		}
	}
	return nil
}

// Replayable reports whether the event belongs to the history replayed on
// join. Presence changes do not: a joiner wants the conversation. Nor do
// edits, deletes and reactions: the replayed messages carry their current
// state instead.
func (e Event) Replayable() bool {
	return e.Kind != KindJoin && e.Kind != KindLeave && !e.Kind.Amends()
}

// Limits are the per-connection limits announced in hello.
type Limits struct {
	MaxText  int     `json:"max_text"`
	MaxFrame int     `json:"max_frame"`
	Rate     float64 `json:"rate"`
	Burst    int     `json:"burst"`
}

// Hello is the first frame of every accepted connection.
type Hello struct {
	Room string `json:"room"`
	// With is the other user of a direct-message room.
	With    string `json:"with,omitempty"`
	You     string `json:"you"`
	UID     string `json:"uid,omitempty"`
	Replica string `json:"replica"`
	Resumed bool   `json:"resumed"`
	Limits  Limits `json:"limits"`
}

// Identity is who a connection speaks as, as its authenticator decided.
type Identity struct {
	Name string // display name, already normalized (NormalizeName)
	// UserID is the signed-in user's id (a token's sub); empty when
	// anonymous. Presence counts users by it.
	UserID string
	// Rooms are the room patterns (path.Match, "*" for any run of
	// characters) the user may enter; nil means every public room.
	Rooms []string
	// Expires is when the identity's token expires; zero for none.
	Expires time.Time
	// Sender scopes the nonces of the messages this identity posts: a
	// repeated (room, sender, nonce) is stored once. It is the user id once
	// users sign in; an anonymous client's is "c:" + the client key it
	// sent; empty when there is neither, and the gateway then scopes
	// nonces to the one connection.
	Sender string
}

// Blob is an uploaded file's bytes and what the server decided about them.
type Blob struct {
	Name    string // safe base name (SafeFileName)
	Mime    string // sniffed by the server
	Created time.Time
	Data    []byte
}

// Ack is the outcome of posting an event, what the poster is acknowledged
// with.
type Ack struct {
	ID ID
	// Duplicate means the sender had posted this nonce within the dedupe
	// window: ID is that entry's, and nothing was appended.
	Duplicate bool
}

// Member is one connection present in a room.
type Member struct {
	Conn string // unique per connection; never contains ':' or '|'
	Name string
	UID  string // the signed-in user, or empty
}

// RoomStat describes a room's stream.
type RoomStat struct {
	Length int64 // entries it holds now
	LastID ID    // the last entry ever generated; 0-0 for a new room
}

// RoomSummary is one room of a user's list.
type RoomSummary struct {
	Room   string // as entered: the name, or @USERID
	Read   ID     // the read marker
	Unread int    // messages and files by others after the marker, at most MaxUnread
	// More says there may be more unread than Unread: it reached
	// MaxUnread, or the count stopped before reaching the marker.
	More bool
	Last *Event // the newest message or file, if the stream has one
}

// MaxUnread is the most unread messages counted; beyond it a room shows
// "99+".
const MaxUnread = 99
