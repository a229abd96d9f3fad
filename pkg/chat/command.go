package chat

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// A Command is what one client frame asks the server to do. Each kind of
// frame decodes into its own type, and the gateway dispatches on the type
// in one place; a new kind is a new type here and a new case there.
type Command interface {
	// CommandNonce is the client's id for the command, echoed in its ack
	// or error ("" when it sent none).
	CommandNonce() string
}

// Message asks to post a message to the connection's room.
type Message struct {
	Text  string
	Nonce string
}

// CommandNonce implements Command.
func (m Message) CommandNonce() string { return m.Nonce }

// File announces a file: the next frame is one binary frame holding its
// Size bytes. Name is already made safe (SafeFileName); Mime is what the
// client declared, which the server never trusts.
type File struct {
	Name  string
	Mime  string
	Size  int64
	Nonce string
}

// CommandNonce implements Command.
func (f File) CommandNonce() string { return f.Nonce }

// History asks for up to Limit entries before Before (the newest when
// zero), answered with one history frame.
type History struct {
	Before ID
	Limit  int
	Nonce  string
}

// CommandNonce implements Command.
func (h History) CommandNonce() string { return h.Nonce }

// Limits of history pages.
const (
	DefaultHistoryPage = 50
	MaxHistoryPage     = 200
)

// clientFrame holds the fields of every kind of JSON client frame, so a
// frame is parsed once; each kind's decoder checks the fields it uses. A
// new kind adds its fields here.
type clientFrame struct {
	Type   string `json:"type"`
	Nonce  string `json:"nonce"`
	Text   string `json:"text"`
	Name   string `json:"name"`
	Mime   string `json:"mime"`
	Size   *int64 `json:"size"`
	Before string `json:"before"`
	Limit  *int   `json:"limit"`
	ID     string `json:"id"`
	Emoji  string `json:"emoji"`
	On     *bool  `json:"on"`
}

// decoders maps a frame's "type" to the function that builds its command
// from the parsed frame, whose nonce is already checked.
var decoders = map[string]func(f *clientFrame, maxText int) (Command, *Error){
	string(KindMessage): decodeMessage,
	string(KindFile):    decodeFile,
	"history":           decodeHistory,
	"typing":            decodeTyping,
	string(KindEdit):    decodeEdit,
	string(KindDelete):  decodeDelete,
	string(KindReact):   decodeReact,
	"read":              decodeRead,
}

func decodeFile(f *clientFrame, _ int) (Command, *Error) {
	if f.Size == nil || *f.Size < 1 {
		return nil, &Error{Code: CodeBadRequest, Message: "a file needs its size in bytes, at least 1", Nonce: f.Nonce}
	}
	if len(f.Mime) > 255 {
		return nil, &Error{Code: CodeBadRequest, Message: "mime is longer than 255 bytes", Nonce: f.Nonce}
	}
	return File{Name: SafeFileName(f.Name), Mime: f.Mime, Size: *f.Size, Nonce: f.Nonce}, nil
}

func decodeHistory(f *clientFrame, _ int) (Command, *Error) {
	h := History{Limit: DefaultHistoryPage, Nonce: f.Nonce}
	if f.Limit != nil {
		if *f.Limit < 1 || *f.Limit > MaxHistoryPage {
			return nil, &Error{Code: CodeBadRequest, Message: "limit must be 1 to 200", Nonce: f.Nonce}
		}
		h.Limit = *f.Limit
	}
	if f.Before != "" {
		id, err := ParseID(f.Before)
		if err != nil {
			return nil, &Error{Code: CodeBadRequest, Message: "before must be an entry id", Nonce: f.Nonce}
		}
		h.Before = id
	}
	return h, nil
}

// DecodeCommand decodes one client text frame. A frame whose first
// non-space byte is '{' must be a JSON object with a known "type" (today
// {"type":"message","text":...,"nonce":...}); any other frame is a plain
// message whose whole content is the text. Texts are normalized with
// NormalizeText. The returned error carries the nonce whenever one could
// be read, so the client can match it.
func DecodeCommand(data []byte, maxText int) (Command, *Error) {
	if !utf8.Valid(data) {
		return nil, &Error{Code: CodeBadRequest, Message: "frame is not valid UTF-8"}
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		text, err := NormalizeText(string(data), maxText)
		if err != nil {
			return nil, err
		}
		return Message{Text: text}, nil
	}
	var f clientFrame
	if err := json.Unmarshal(trimmed, &f); err != nil {
		return nil, &Error{Code: CodeBadRequest, Message: "frame is not a valid JSON object"}
	}
	if utf8.RuneCountInString(f.Nonce) > MaxNonceLen {
		return nil, &Error{Code: CodeBadRequest, Message: "nonce is longer than 64 characters"}
	}
	decode, ok := decoders[f.Type]
	if !ok {
		return nil, &Error{Code: CodeBadRequest, Message: "unknown frame type", Nonce: f.Nonce}
	}
	return decode(&f, maxText)
}

func decodeMessage(f *clientFrame, maxText int) (Command, *Error) {
	text, err := NormalizeText(f.Text, maxText)
	if err != nil {
		err.Nonce = f.Nonce
		return nil, err
	}
	return Message{Text: text, Nonce: f.Nonce}, nil
}
