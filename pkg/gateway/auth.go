package gateway

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/streamchat/streamchat/pkg/chat"
)

// Authenticator decides who a websocket handshake speaks as. It runs after
// the upgrade, so that a refusal reaches the page as an error event: a
// *chat.Error it returns is sent to the client and the connection closes
// with 1008; any other error is treated as internal. Signed tokens plug in
// here.
type Authenticator interface {
	Authenticate(r *http.Request) (chat.Identity, error)
}

// Anonymous is the default Authenticator: the client names itself, with
// the query's name, or else the username cookie the browser client sets.
// Its optional client key (query "client": 16–64 characters of
// [A-Za-z0-9_-], kept by the client across reconnects) becomes the
// sender that scopes its nonces, so a message resent after a reconnect to
// any replica is stored once.
type Anonymous struct{}

// Authenticate implements Authenticator.
func (Anonymous) Authenticate(r *http.Request) (chat.Identity, error) {
	q := r.URL.Query()
	name, fromQuery := q.Get("name"), q.Has("name")
	if !fromQuery {
		if c, err := r.Cookie("username"); err == nil {
			// Browsers store it percent-encoded; a value that is not is used as is.
			if v, err := url.QueryUnescape(c.Value); err == nil {
				name = v
			} else {
				name = c.Value
			}
		}
	}
	name, err := chat.NormalizeName(name)
	if err != nil {
		return chat.Identity{}, err
	}
	// A copy: the query's strings share the request line's memory, which a
	// connection would otherwise keep for its whole life.
	who := chat.Identity{Name: strings.Clone(name)}
	if key := q.Get("client"); key != "" {
		if !chat.ValidClientKey(key) {
			return chat.Identity{}, &chat.Error{Code: chat.CodeBadRequest, Message: "client key must be 16 to 64 characters of A-Z, a-z, 0-9, _ and -"}
		}
		who.Sender = "c:" + key
	}
	return who, nil
}

var _ Authenticator = Anonymous{}
