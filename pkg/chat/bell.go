package chat

// Bell is a room's notice that its stream has something new. Most bells
// (Carried) also bring the new entry and the ID of the entry just before it
// in the stream, so a reader whose cursor is Prev takes Entry without
// reading the stream. A reader at any other cursor, and every bell without
// an entry, reads the stream from its cursor instead: a bell can save a
// read, never replace one.
//
// A bell with a Notice is not about the stream at all: it carries a frame
// for the room's members that is never stored (typing), to be sent to every
// member except the connection Conn that caused it and the other
// connections of its signed-in user UID.
type Bell struct {
	Room    string
	Carried bool
	Prev    ID
	Entry   Event
	Notice  []byte
	Conn    string
	UID     string
}
