package chat

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultRoom is the room of a client that names none.
const DefaultRoom = "lobby"

// Limits of names and nonces; the text limit is configurable and passed in.
const (
	MaxRoomLen  = 64
	MaxNameLen  = 32
	MaxNonceLen = 64
	// MaxClientKeyLen bounds the client key (ValidClientKey).
	MaxClientKeyLen = 64
)

// ValidClientKey reports whether key can name an anonymous client: 16 to
// 64 characters of [A-Za-z0-9_-], the alphabet of UUIDs and base64url. The
// key scopes a client's nonces, so it must be long enough not to be
// guessed by chance and short enough to be cheap as part of a Redis key.
func ValidClientKey(key string) bool {
	if len(key) < 16 || len(key) > MaxClientKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// BadRoom is the error for a room name that ValidRoom refuses.
func BadRoom() *Error {
	return &Error{Code: CodeBadRoom, Message: "room must match ^[a-z0-9][a-z0-9_-]{0,63}$"}
}

// ValidRoom reports whether room matches ^[a-z0-9][a-z0-9_-]{0,63}$. Rooms
// become part of Redis keys, so the alphabet is deliberately narrow.
func ValidRoom(room string) bool {
	if len(room) == 0 || len(room) > MaxRoomLen {
		return false
	}
	for i := 0; i < len(room); i++ {
		c := room[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// DirectPrefix starts the name of every direct-message room. Such rooms
// are entered only as room=@USERID, never by name.
const DirectPrefix = "dm-"

// DirectRoom is the room of the private conversation between two users:
// "dm-" and 40 hex digits of a hash of both ids in sorted order, so either
// user, on any replica, arrives at the same room, and its keys share one
// hash tag.
func DirectRoom(a, b string) string {
	if b < a {
		a, b = b, a
	}
	sum := sha256.Sum256([]byte(a + "\x00" + b))
	return DirectPrefix + hex.EncodeToString(sum[:20])
}

// MaxUserIDLen bounds a user id (a token's sub).
const MaxUserIDLen = 128

// ValidUserID reports whether id can name a user: 1–128 bytes of printable
// ASCII without spaces. Identity providers use ids like "auth0|5f3c…" or
// "google-oauth2|1234" or a UUID; anything else is refused rather than
// escaped into keys and logs.
func ValidUserID(id string) bool {
	if id == "" || len(id) > MaxUserIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// NormalizeName trims a display name and checks it: 1–32 characters of
// valid UTF-8 with no control characters (Cc) and no format characters
// (Cf): bidi overrides and isolates, zero-width spaces and joiners, the
// byte-order mark, soft hyphens. Those render as nothing or reorder what
// follows, so a name holding one can pass for another.
func NormalizeName(name string) (string, *Error) {
	if !utf8.ValidString(name) {
		return "", &Error{Code: CodeBadName, Message: "name is not valid UTF-8"}
	}
	name = strings.TrimSpace(name)
	n := utf8.RuneCountInString(name)
	switch {
	case n == 0:
		return "", &Error{Code: CodeBadName, Message: "name is empty"}
	case n > MaxNameLen:
		return "", &Error{Code: CodeBadName, Message: "name is longer than 32 characters"}
	}
	for _, r := range name {
		switch {
		case unicode.IsControl(r):
			return "", &Error{Code: CodeBadName, Message: "name contains control characters"}
		case unicode.Is(unicode.Cf, r):
			return "", &Error{Code: CodeBadName, Message: "name contains invisible formatting characters (bidi controls, zero-width characters)"}
		}
	}
	return name, nil
}

// NormalizeText trims a message text and checks that it is valid UTF-8 and
// holds 1..maxText characters (code points, not bytes).
func NormalizeText(text string, maxText int) (string, *Error) {
	if !utf8.ValidString(text) {
		return "", &Error{Code: CodeBadRequest, Message: "text is not valid UTF-8"}
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return "", &Error{Code: CodeBadRequest, Message: "text is empty"}
	}
	// Counting stops early so a huge frame is not walked twice.
	n := 0
	for range text {
		n++
		if n > maxText {
			return "", &Error{Code: CodeTooLarge, Message: "text is longer than the limit"}
		}
	}
	return text, nil
}

// MaxFileNameLen bounds a file's name, in characters.
const MaxFileNameLen = 128

// SafeFileName reduces a client's file name to a safe base name: the last
// path element (either slash), without control or formatting characters,
// trimmed, at most MaxFileNameLen characters, never empty, never "." or "..".
func SafeFileName(name string) string {
	if !utf8.ValidString(name) {
		name = strings.ToValidUTF8(name, "")
	}
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	name = strings.TrimLeft(name, ".")
	if n := []rune(name); len(n) > MaxFileNameLen {
		name = string(n[:MaxFileNameLen])
	}
	if name == "" {
		return "file"
	}
	return name
}
