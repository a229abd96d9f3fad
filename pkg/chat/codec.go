package chat

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"
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
	TS     string `json:"ts"`
	Text   string `json:"text,omitempty"`
	Nonce  string `json:"nonce,omitempty"`
	Replay bool   `json:"replay,omitempty"`
}

// EncodeEvent returns the wire frame of a stream entry. Callers on the live
// path encode each entry once and write the same bytes to every connection.
func EncodeEvent(e Event, replay bool) []byte {
	return mustMarshal(eventFrame{
		Type:   e.Kind,
		ID:     e.ID.String(),
		Room:   e.Room,
		From:   e.From,
		TS:     FormatTS(e.ID.Time()),
		Text:   e.Text,
		Nonce:  e.Nonce,
		Replay: replay,
	})
}

// EncodeHello returns the hello frame.
func EncodeHello(h Hello) []byte {
	return mustMarshal(struct {
		Type string `json:"type"`
		Hello
	}{TypeHello, h})
}

// EncodeReady returns the ready frame: replay or resume is complete and live
// entries follow, starting right after cursor.
func EncodeReady(cursor ID, online []string) []byte {
	if online == nil {
		online = []string{}
	}
	return mustMarshal(struct {
		Type   string   `json:"type"`
		Cursor string   `json:"cursor"`
		Online []string `json:"online"`
	}{TypeReady, cursor.String(), online})
}

// EncodeAck returns the frame that confirms a message is stored as id.
func EncodeAck(nonce string, id ID) []byte {
	return mustMarshal(struct {
		Type  string `json:"type"`
		Nonce string `json:"nonce"`
		ID    string `json:"id"`
	}{TypeAck, nonce, id.String()})
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

// Message is what a client asks to post.
type Message struct {
	Text  string
	Nonce string
}

type clientFrame struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Nonce string `json:"nonce"`
}

// DecodeFrame decodes one client text frame. A frame whose first non-space
// byte is '{' must be a JSON object {"type":"message","text":...,"nonce":...};
// any other frame is a plain message whose whole content is the text. The
// text is normalized with NormalizeText. The returned error carries the
// nonce whenever one could be read, so the client can match it.
func DecodeFrame(data []byte, maxText int) (Message, *Error) {
	if !utf8.Valid(data) {
		return Message{}, &Error{Code: CodeBadRequest, Message: "frame is not valid UTF-8"}
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		text, err := NormalizeText(string(data), maxText)
		if err != nil {
			return Message{}, err
		}
		return Message{Text: text}, nil
	}
	var f clientFrame
	if err := json.Unmarshal(trimmed, &f); err != nil {
		return Message{}, &Error{Code: CodeBadRequest, Message: "frame is not a valid JSON object"}
	}
	nonce := f.Nonce
	if utf8.RuneCountInString(nonce) > MaxNonceLen {
		return Message{}, &Error{Code: CodeBadRequest, Message: "nonce is longer than 64 characters"}
	}
	if f.Type != string(KindMessage) {
		return Message{}, &Error{Code: CodeBadRequest, Message: "unknown frame type", Nonce: nonce}
	}
	text, err := NormalizeText(f.Text, maxText)
	if err != nil {
		err.Nonce = nonce
		return Message{}, err
	}
	return Message{Text: text, Nonce: nonce}, nil
}

// FormatTS formats t the way event timestamps are sent.
func FormatTS(t time.Time) string { return t.UTC().Format(tsLayout) }
