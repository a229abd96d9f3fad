package chat

import (
	"bytes"
	"encoding/json"
	"sync"
	"time"
)

// Frame types of the wire protocol that are not stream entries.
const (
	TypeHello = "hello"
	TypeReady = "ready"
	TypeAck   = "ack"
	TypeError = "error"
)

// tsLayout is RFC 3339 in UTC with exactly three fractional digits, so every
// client can sort timestamps as strings.
const tsLayout = "2006-01-02T15:04:05.000Z"

type eventFrame struct {
	Type   Kind   `json:"type"`
	ID     string `json:"id"`
	Room   string `json:"room"`
	From   string `json:"from"`
	UID    string `json:"uid,omitempty"`
	TS     string `json:"ts"`
	Text   string `json:"text,omitempty"`
	Nonce  string `json:"nonce,omitempty"`
	Bot    bool   `json:"bot,omitempty"`
	Replay bool   `json:"replay,omitempty"`
	// A replayed message's state
	EditedAt  string     `json:"edited_at,omitempty"`
	Deleted   bool       `json:"deleted,omitempty"`
	Reactions []Reaction `json:"reactions,omitempty"`
}

// EncodeEvent returns the wire payload of a stream entry: its fixed fields,
// then its attributes as they are encoded. Callers on the live
// path encode each entry once and write the same bytes to every connection.
func EncodeEvent(e Event, replay bool) []byte {
	enc := encoders.Get().(*encoder)
	defer encoders.Put(enc)
	enc.buf.Reset()
	f := eventFrame{
		Type:   e.Kind,
		ID:     e.ID.String(),
		Room:   e.Room,
		From:   e.From,
		UID:    e.UID,
		TS:     FormatTS(e.ID.Time()),
		Text:   e.Text,
		Nonce:  e.Nonce,
		Bot:    e.Bot,
		Replay: replay,
	}
	if st := e.State; st != nil {
		if st.Text != "" {
			f.Text, f.EditedAt = st.Text, st.EditedAt
		}
		f.Reactions = st.Reactions
		if st.Deleted {
			// A tombstone: where the message was, and nothing of it.
			f.Text, f.EditedAt, f.Reactions, f.Deleted = "", "", nil, true
			e.Attrs = ""
		}
	}
	if err := enc.enc.Encode(f); err != nil {
		panic("chat: encoding an event: " + err.Error())
	}
	frame := enc.buf.Bytes()
	frame = frame[:len(frame)-1] // Encode's newline
	if e.Attrs == "" {
		return bytes.Clone(frame)
	}
	// Splice the attributes into the object, before its closing brace:
	// NewAttrs made sure none shadows a fixed field. One allocation of the
	// exact size, as for an entry without attributes.
	out := make([]byte, 0, len(frame)+1+len(e.Attrs))
	out = append(out, frame[:len(frame)-1]...)
	out = append(out, ',')
	out = append(out, e.Attrs...)
	return append(out, '}')
}

// encoder is a reusable buffer and JSON encoder for EncodeEvent, which runs
// once per entry per replica: the frame is built in the pooled buffer and
// copied out once at its exact size.
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = json.NewEncoder(&e.buf)
	return e
}}

// EncodeHello returns the hello frame.
func EncodeHello(h Hello) []byte {
	return mustMarshal(struct {
		Type string `json:"type"`
		Hello
	}{TypeHello, h})
}

// EncodeReady returns the ready frame: replay or resume is complete and live
// entries follow, starting right after cursor.
// online lists the people present, one entry each: their names in
// "online", and, for signed-in users, their user ids too in "users".
// read, when not nil, is the signed-in user's read marker in the room.
func EncodeReady(cursor ID, online []Member, read *ID) []byte {
	type user struct {
		UID  string `json:"uid"`
		Name string `json:"name"`
	}
	names := make([]string, 0, len(online))
	var users []user
	for _, m := range online {
		names = append(names, m.Name)
		if m.UID != "" {
			users = append(users, user{m.UID, m.Name})
		}
	}
	var marker string
	if read != nil {
		marker = read.String()
	}
	return mustMarshal(struct {
		Type   string   `json:"type"`
		Cursor string   `json:"cursor"`
		Online []string `json:"online"`
		Users  []user   `json:"users,omitempty"`
		Read   string   `json:"read,omitempty"`
	}{TypeReady, cursor.String(), names, users, marker})
}

// EncodeTyping returns the typing notice of a room's member.
func EncodeTyping(room, from, uid string) []byte {
	return mustMarshal(struct {
		Type string `json:"type"`
		Room string `json:"room"`
		From string `json:"from"`
		UID  string `json:"uid,omitempty"`
	}{"typing", room, from, uid})
}

// EncodeAck returns the frame that confirms a message is stored as id.
// duplicate says the nonce had been stored before: id is the original
// entry's, and nothing new was appended.
func EncodeAck(nonce string, id ID, duplicate bool) []byte {
	return mustMarshal(struct {
		Type      string `json:"type"`
		Nonce     string `json:"nonce"`
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate,omitempty"`
	}{TypeAck, nonce, id.String(), duplicate})
}

// EncodeError returns the error frame for e.
func EncodeError(e *Error) []byte {
	return mustMarshal(struct {
		Type    string `json:"type"`
		Code    Code   `json:"code"`
		Message string `json:"message"`
		Nonce   string `json:"nonce,omitempty"`
	}{TypeError, e.Code, e.Message, e.Nonce})
}

// mustMarshal encodes values whose types cannot fail to encode: structs of
// strings, numbers and bools. Invalid UTF-8 is replaced, never an error.
func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("chat: encoding a frame: " + err.Error())
	}
	return b
}

// FormatTS formats t the way event timestamps are sent.
func FormatTS(t time.Time) string { return t.UTC().Format(tsLayout) }

// EncodeHistory returns the history frame answering a history command:
// the entries, oldest first, and whether older ones remain.
func EncodeHistory(events []Event, more bool, nonce string) []byte {
	entries := make([]json.RawMessage, len(events))
	for i, e := range events {
		entries[i] = EncodeEvent(e, false)
	}
	return mustMarshal(struct {
		Type    string            `json:"type"`
		Nonce   string            `json:"nonce,omitempty"`
		Entries []json.RawMessage `json:"entries"`
		More    bool              `json:"more"`
	}{"history", nonce, entries, more})
}
