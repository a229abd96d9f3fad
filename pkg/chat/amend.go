package chat

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kinds of the entries that change an earlier message. Each refers to its
// message by the attribute "ref"; the message's current state (State) is
// kept beside the stream and updated in the same atomic step as the
// append, so live clients and resumers see the change in order and a
// joiner's replay shows the message as it is now.
const (
	// KindEdit replaces a message's text: Text is the new one.
	KindEdit Kind = "edit"
	// KindDelete removes a message (or a file) from the conversation.
	KindDelete Kind = "delete"
	// KindReact turns one user's emoji on or off: attributes emoji, on
	// ("true" or "false") and count, the emoji's count after the change,
	// so applying the same entry twice changes nothing.
	KindReact Kind = "react"
)

// Amends reports whether the kind changes an earlier message.
func (k Kind) Amends() bool { return k == KindEdit || k == KindDelete || k == KindReact }

// AttrRef names the message an edit, delete or reaction refers to.
const AttrRef = "ref"

// Reaction limits: an emoji is one short grapheme sequence, and a message
// holds a bounded set of them.
const (
	MaxEmojiLen            = 32
	MaxReactionsPerMessage = 20
)

// State is a message's current state, sent with it in replays and history
// pages. The zero State is a message never changed.
type State struct {
	Text     string // the edited text; "" when not edited
	EditedAt string // when last edited (FormatTS); "" when not edited
	Deleted  bool
	// Reactions are the emoji on the message with their counts, in the
	// order they were first used.
	Reactions []Reaction
}

// Reaction is one emoji on a message.
type Reaction struct {
	Emoji string `json:"emoji"`
	Count int    `json:"count"`
	// Me says the viewer is one of those who reacted with it.
	Me bool `json:"me,omitempty"`
}

// ValidEmoji reports whether s can be a reaction: 1 to 32 bytes of valid
// UTF-8, at most 8 code points, no spaces, controls or formatting
// characters other than the joiners and selectors emoji are made of, and
// none of the characters JSON or HTML would have to escape.
func ValidEmoji(s string) bool {
	if s == "" || len(s) > MaxEmojiLen || !utf8.ValidString(s) || utf8.RuneCountInString(s) > 8 {
		return false
	}
	for _, r := range s {
		switch {
		case r == '\u200d' || (r >= '\ufe00' && r <= '\ufe0f'):
			// zero-width joiner and variation selectors: parts of emoji
		case r < 0x80 && !(r >= '0' && r <= '9') && r != '#' && r != '*':
			return false // ASCII only as keycap bases
		case unicode.IsSpace(r), unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return false
		}
	}
	return !strings.ContainsAny(s, `"\<>&'`)
}

// Typing says the connection's user is typing. It is never stored: the
// room's members on every replica see it once, and only while it is new.
type Typing struct{}

// CommandNonce implements Command.
func (Typing) CommandNonce() string { return "" }

// TypingInterval is the least time between two typing notices of one user
// in one room; more frequent ones are dropped, by the server too.
const TypingInterval = 3 * time.Second

// Edit asks to replace the text of the author's own message.
type Edit struct {
	ID    ID
	Text  string
	Nonce string
}

// CommandNonce implements Command.
func (e Edit) CommandNonce() string { return e.Nonce }

// Delete asks to delete the author's own message or file.
type Delete struct {
	ID    ID
	Nonce string
}

// CommandNonce implements Command.
func (d Delete) CommandNonce() string { return d.Nonce }

// React asks to turn the user's Emoji on a message on or off.
type React struct {
	ID    ID
	Emoji string
	On    bool
	Nonce string
}

// CommandNonce implements Command.
func (r React) CommandNonce() string { return r.Nonce }

// Read moves the signed-in user's read marker in the room forward to ID.
type Read struct {
	ID    ID
	Nonce string
}

// CommandNonce implements Command.
func (r Read) CommandNonce() string { return r.Nonce }

func refOf(f *clientFrame) (ID, *Error) {
	id, err := ParseID(f.ID)
	if err != nil || id.IsZero() {
		return ID{}, &Error{Code: CodeBadRequest, Message: "id must be the id of an entry", Nonce: f.Nonce}
	}
	return id, nil
}

func decodeTyping(*clientFrame, int) (Command, *Error) { return Typing{}, nil }

func decodeEdit(f *clientFrame, maxText int) (Command, *Error) {
	id, err := refOf(f)
	if err != nil {
		return nil, err
	}
	text, err := NormalizeText(f.Text, maxText)
	if err != nil {
		err.Nonce = f.Nonce
		return nil, err
	}
	return Edit{ID: id, Text: text, Nonce: f.Nonce}, nil
}

func decodeDelete(f *clientFrame, _ int) (Command, *Error) {
	id, err := refOf(f)
	if err != nil {
		return nil, err
	}
	return Delete{ID: id, Nonce: f.Nonce}, nil
}

func decodeReact(f *clientFrame, _ int) (Command, *Error) {
	id, err := refOf(f)
	if err != nil {
		return nil, err
	}
	if !ValidEmoji(f.Emoji) {
		return nil, &Error{Code: CodeBadRequest, Message: "emoji must be one emoji of at most 32 bytes", Nonce: f.Nonce}
	}
	if f.On == nil {
		return nil, &Error{Code: CodeBadRequest, Message: "a reaction needs on: true or false", Nonce: f.Nonce}
	}
	return React{ID: id, Emoji: f.Emoji, On: *f.On, Nonce: f.Nonce}, nil
}

func decodeRead(f *clientFrame, _ int) (Command, *Error) {
	id, err := refOf(f)
	if err != nil {
		return nil, err
	}
	return Read{ID: id, Nonce: f.Nonce}, nil
}

// AuthorOf is what an anonymous entry keeps of its sender (the client key
// a browser generates once and keeps, or the connection's own id): a hash,
// so the stream never holds a secret that would let a reader edit as them.
func AuthorOf(sender string) string {
	sum := sha256.Sum256([]byte("streamchat author\x00" + sender))
	return hex.EncodeToString(sum[:16])
}

// Amendment is an edit, a delete or a reaction, by the sender of Event.
type Amendment struct {
	// Event is the entry to append: Kind edit, delete or react; Room,
	// From, UID (signed in) or Author (anonymous), Nonce; Text for an
	// edit. The store makes its attributes.
	Event Event
	Ref   ID     // the message it changes
	Emoji string // react
	On    bool   // react
	// Sender scopes the nonce, as for Append.
	Sender string
}
