package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
)

// The commands that act on the conversation around its messages: typing,
// edits, deletes, reactions and read markers.

// typing sends the connection's typing notice, at most one per
// chat.TypingInterval: this connection's clock drops most repeats without
// a Redis call, and the store drops those of the same user on other
// connections and replicas. A dropped notice is not an error: the client
// meant "still typing", and the last one said so.
func (c *conn) typing(ctx context.Context) error {
	now := time.Now().UnixNano()
	if c.lastTyping != 0 && now-c.lastTyping < int64(chat.TypingInterval) {
		return nil
	}
	c.lastTyping = now
	tctx, cancel := context.WithTimeout(ctx, c.s.opts.StoreTimeout)
	defer cancel()
	if _, err := c.s.store.Typing(tctx, c.room, c.id, c.who.UserID, c.author(), chat.EncodeTyping(c.room, c.who.Name, c.who.UserID)); err != nil {
		return fmt.Errorf("typing: %w: %w", hub.ErrUnavailable, err)
	}
	return nil
}

// amend applies an edit, a delete or a reaction by this connection's user
// and acknowledges the entry that records it.
func (c *conn) amend(ctx context.Context, kind chat.Kind, ref chat.ID, text, emoji string, on bool, nonce string) error {
	a := chat.Amendment{
		Event:  chat.Event{Room: c.room, Kind: kind, From: c.who.Name, UID: c.who.UserID, Author: c.author(), Text: text, Nonce: nonce},
		Ref:    ref,
		Emoji:  emoji,
		On:     on,
		Sender: c.sender,
	}
	actx, cancel := context.WithTimeout(ctx, c.s.opts.StoreTimeout)
	ack, err := c.s.hub.Amend(actx, a)
	cancel()
	if err != nil {
		return err
	}
	if err := c.ws.Write(chat.EncodeAck(nonce, ack.ID, ack.Duplicate)); err != nil {
		c.fail(err)
	}
	return nil
}

// listName is how the user's room list names this connection's room: as
// it was entered.
func (c *conn) listName() string {
	if c.with != "" {
		return "@" + c.with
	}
	return c.room
}

// markRead moves the signed-in user's read marker forward and
// acknowledges with the marker as it now is.
func (c *conn) markRead(ctx context.Context, r chat.Read) error {
	if c.who.UserID == "" {
		return &chat.Error{Code: chat.CodeForbidden, Message: "read markers need sign-in", Nonce: r.Nonce}
	}
	rctx, cancel := context.WithTimeout(ctx, c.s.opts.StoreTimeout)
	marker, err := c.s.store.MarkRead(rctx, c.who.UserID, c.listName(), r.ID)
	cancel()
	if err != nil {
		return fmt.Errorf("read: %w: %w", hub.ErrUnavailable, err)
	}
	if r.Nonce != "" {
		if err := c.ws.Write(chat.EncodeAck(r.Nonce, marker, false)); err != nil {
			c.fail(err)
		}
	}
	return nil
}

// serveMyRooms answers GET /api/me/rooms for a signed-in user (the token
// as on the websocket): the rooms they joined, most recent first, each
// with its read marker, its unread count ("99+" past chat.MaxUnread) and
// its last message.
func (s *Server) serveMyRooms(w http.ResponseWriter, r *http.Request) {
	who, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.StoreTimeout)
	defer cancel()
	resolve := func(name string) string {
		if uid, ok := cutDirect(name); ok {
			return chat.DirectRoom(who.UserID, uid)
		}
		return name
	}
	rooms, err := s.store.Rooms(ctx, who.UserID, resolve)
	if err != nil {
		s.apiError(w, r, fmt.Errorf("rooms: %w: %w", hub.ErrUnavailable, err))
		return
	}
	type room struct {
		Room        string          `json:"room"`
		With        string          `json:"with,omitempty"`
		Read        string          `json:"read"`
		Unread      int             `json:"unread"`
		UnreadLabel string          `json:"unread_label"`
		Last        json.RawMessage `json:"last,omitempty"`
	}
	out := struct {
		Rooms []room `json:"rooms"`
	}{Rooms: make([]room, 0, len(rooms))}
	for _, sum := range rooms {
		o := room{Room: sum.Room, Read: sum.Read.String(), Unread: sum.Unread, UnreadLabel: fmt.Sprint(sum.Unread)}
		if uid, ok := cutDirect(sum.Room); ok {
			o.With = uid
		}
		if sum.More {
			// At the cap ("99+"), or where counting stopped short of the
			// marker in a room busy with other entries.
			o.UnreadLabel = fmt.Sprintf("%d+", sum.Unread)
		}
		if sum.Last != nil {
			o.Last = chat.EncodeEvent(*sum.Last, false)
		}
		out.Rooms = append(out.Rooms, o)
	}
	writeJSON(w, http.StatusOK, out)
}

func cutDirect(name string) (string, bool) {
	if len(name) > 1 && name[0] == '@' {
		return name[1:], true
	}
	return "", false
}
