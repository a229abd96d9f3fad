package chat

// Kind is the type of a stream entry.
type Kind string

// Kinds of stream entries. Join and leave entries record presence changes;
// everything else is conversation and is replayed to joiners.
const (
	KindMessage Kind = "message"
	KindJoin    Kind = "join"
	KindLeave   Kind = "leave"
)

// Event is one entry of a room's stream.
type Event struct {
	ID    ID
	Room  string
	Kind  Kind
	From  string
	Text  string
	Nonce string
}

// Replayable reports whether the event belongs to the history replayed on
// join. Presence changes do not: a joiner wants the conversation.
func (e Event) Replayable() bool { return e.Kind != KindJoin && e.Kind != KindLeave }

// Limits are the per-connection limits announced in hello.
type Limits struct {
	MaxText  int     `json:"max_text"`
	MaxFrame int     `json:"max_frame"`
	Rate     float64 `json:"rate"`
	Burst    int     `json:"burst"`
}

// Hello is the first frame of every accepted connection.
type Hello struct {
	Room    string `json:"room"`
	You     string `json:"you"`
	Replica string `json:"replica"`
	Resumed bool   `json:"resumed"`
	Limits  Limits `json:"limits"`
}

// Member is one connection present in a room.
type Member struct {
	Conn string // unique per connection; never contains ':'
	Name string
}
