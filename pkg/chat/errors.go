package chat

import "errors"

// Code is the machine-readable reason carried by an error event.
type Code string

// Error codes of the wire protocol.
const (
	CodeBadRequest  Code = "bad_request"
	CodeBadName     Code = "bad_name"
	CodeBadRoom     Code = "bad_room"
	CodeTooLarge    Code = "too_large"
	CodeRateLimited Code = "rate_limited"
	CodeUnavailable Code = "unavailable"
	CodeInternal    Code = "internal"
	CodeForbidden   Code = "forbidden"
	CodeNotFound    Code = "not_found"
	// Sign-in: a missing, bad or expired token; a token that expired
	// during the connection.
	CodeUnauthorized Code = "unauthorized"
	CodeTokenExpired Code = "token_expired"
)

// Error is a failure that is reported to the client as an error event. Its
// Message is meant for people and never holds internal details.
type Error struct {
	Code    Code
	Message string
	Nonce   string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errors of the file store.
var (
	// ErrFileQuota means the room's files would pass its byte quota.
	ErrFileQuota = errors.New("the room's file quota is full")
	// ErrNoFile means the file does not exist, or has expired.
	ErrNoFile = errors.New("no such file")
)

// ErrGap means entries after a cursor are no longer in the room's stream
// (trimmed or deleted), or the cursor is newer than anything the stream has
// generated (the stream was lost or recreated). Reading on from it would skip
// entries silently, so the reader must start over from recent history.
var ErrGap = errors.New("entries after the cursor are no longer in the stream")
