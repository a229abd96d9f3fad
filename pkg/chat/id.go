// Package chat holds the domain of streamchat: stream entry IDs, events, the
// rules for rooms, names and texts, error codes, and the wire codec. It does
// no I/O and imports only the standard library, so every other package can
// depend on it.
package chat

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ID is a Redis stream entry ID: milliseconds of the server clock and a
// sequence number within that millisecond. IDs are totally ordered and every
// entry of a stream has a larger ID than the one before it.
type ID struct {
	Ms  uint64
	Seq uint64
}

// ErrBadID is returned by ParseID for anything that is not "<ms>-<seq>" or "<ms>".
var ErrBadID = errors.New("malformed stream id")

// ParseID parses "<ms>-<seq>". A bare "<ms>" means "<ms>-0", as in Redis.
func ParseID(s string) (ID, error) {
	msPart, seqPart, hasSeq := strings.Cut(s, "-")
	ms, err := strconv.ParseUint(msPart, 10, 64)
	if err != nil {
		return ID{}, ErrBadID
	}
	var seq uint64
	if hasSeq {
		if seq, err = strconv.ParseUint(seqPart, 10, 64); err != nil {
			return ID{}, ErrBadID
		}
	}
	return ID{Ms: ms, Seq: seq}, nil
}

// MustParseID is ParseID for IDs that come from Redis itself; it panics on a
// malformed ID because that can only be a bug or a corrupted server.
func MustParseID(s string) ID {
	id, err := ParseID(s)
	if err != nil {
		panic("chat: " + err.Error() + ": " + strconv.Quote(s))
	}
	return id
}

// String formats the ID the way Redis does.
func (id ID) String() string {
	b := make([]byte, 0, 41)
	return string(id.Append(b))
}

// Append appends the Redis form of the ID to b.
func (id ID) Append(b []byte) []byte {
	b = strconv.AppendUint(b, id.Ms, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, id.Seq, 10)
}

// Compare returns -1, 0 or +1 as id is before, equal to or after other.
func (id ID) Compare(other ID) int {
	switch {
	case id.Ms < other.Ms:
		return -1
	case id.Ms > other.Ms:
		return 1
	case id.Seq < other.Seq:
		return -1
	case id.Seq > other.Seq:
		return 1
	}
	return 0
}

// Less reports whether id comes before other.
func (id ID) Less(other ID) bool { return id.Compare(other) < 0 }

// IsZero reports whether id is 0-0, the cursor of an empty stream.
func (id ID) IsZero() bool { return id == ID{} }

// Time is the server time at which the entry was appended.
func (id ID) Time() time.Time { return time.UnixMilli(int64(id.Ms)).UTC() }
