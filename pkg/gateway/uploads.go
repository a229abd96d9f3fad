package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/files"
	"github.com/streamchat/streamchat/pkg/hub"
)

// announce takes a file frame: the next frame must be its bytes.
func (c *conn) announce(f chat.File) error {
	if f.Size > c.s.opts.MaxFile {
		return &chat.Error{Code: chat.CodeTooLarge, Message: fmt.Sprintf("files may be at most %d bytes", c.s.opts.MaxFile)}
	}
	c.upload = &f
	return nil
}

// store keeps an announced file's bytes and appends its file entry: the
// bytes first, so no entry ever points at nothing. The type is the
// server's own reading of the bytes, never the client's claim.
func (c *conn) store(ctx context.Context, f chat.File, data []byte) error {
	o := c.s.opts
	switch {
	case int64(len(data)) != f.Size:
		return &chat.Error{Code: chat.CodeBadRequest, Message: fmt.Sprintf("the file frame said %d bytes, the binary frame has %d", f.Size, len(data))}
	case !c.uploadBudget().AllowN(time.Now(), len(data)):
		return &chat.Error{Code: chat.CodeRateLimited, Message: "uploading too fast; wait a moment"}
	}
	info := files.Inspect(data)
	id := files.NewID()
	sctx, cancel := context.WithTimeout(ctx, o.StoreTimeout)
	err := c.s.store.PutFile(sctx, c.room, id, chat.Blob{Name: f.Name, Mime: info.Mime, Created: time.Now(), Data: data}, o.FileTTL, o.RoomFileQuota)
	cancel()
	switch {
	case errors.Is(err, chat.ErrFileQuota):
		return &chat.Error{Code: chat.CodeTooLarge, Message: "this room's space for files is full; try again later"}
	case err != nil:
		return fmt.Errorf("store file: %w: %w", hub.ErrUnavailable, err)
	}
	attrs := map[string]string{
		"name": f.Name, "mime": info.Mime, "size": strconv.Itoa(len(data)), "url": files.URL(c.room, id),
	}
	if info.IsImage() {
		attrs["width"], attrs["height"] = strconv.Itoa(info.Width), strconv.Itoa(info.Height)
	}
	encoded, cerr := chat.NewAttrs(attrs)
	if cerr != nil {
		return cerr
	}
	return c.post(ctx, chat.Event{Room: c.room, Kind: chat.KindFile, From: c.who.Name, UID: c.who.UserID, Author: c.author(), Nonce: f.Nonce, Attrs: encoded})
}

// history answers a history command with one history frame: up to
// h.Limit entries before h.Before, oldest first, and whether older ones
// remain.
func (c *conn) history(ctx context.Context, h chat.History) error {
	hctx, cancel := context.WithTimeout(ctx, c.s.opts.StoreTimeout)
	events, more, err := c.s.store.Before(hctx, c.room, h.Before, h.Limit)
	if err == nil {
		err = c.s.store.States(hctx, c.room, events, c.who.UserID, c.author())
	}
	cancel()
	if err != nil {
		return fmt.Errorf("history: %w: %w", hub.ErrUnavailable, err)
	}
	slices.Reverse(events)
	if err := c.ws.Write(chat.EncodeHistory(events, more, h.Nonce)); err != nil {
		c.fail(err)
	}
	return nil
}

// serveFile answers GET /files/{room}/{id} on any replica. Signed in, the
// reader must be allowed into the room, as when joining it; the id is 128
// random bits, so an anonymous room's file is as private as its link.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	room, id := r.PathValue("room"), r.PathValue("id")
	if !chat.ValidRoom(room) || !files.ValidID(id) {
		s.apiError(w, r, errNoFile)
		return
	}
	if err := s.mayRead(r, room); err != nil {
		s.apiError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.StoreTimeout)
	defer cancel()
	b, err := s.store.GetFile(ctx, room, id)
	switch {
	case errors.Is(err, chat.ErrNoFile):
		s.apiError(w, r, errNoFile)
		return
	case err != nil:
		s.apiError(w, r, fmt.Errorf("file: %w: %w", hub.ErrUnavailable, err))
		return
	}
	files.Serve(w, r, id, b.Name, b.Mime, b.Created, b.Data, s.opts.FileTTL)
}

// mayRead checks that the request's user may read the room: everyone in
// anonymous mode; signed in, the same rule as entering it.
func (s *Server) mayRead(r *http.Request, room string) error {
	if _, anonymous := s.opts.Auth.(Anonymous); anonymous {
		return nil
	}
	who, err := s.opts.Auth.Authenticate(r)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(room, chat.DirectPrefix) {
		p := joinParams{room: room}
		if cerr := admit(&p, who); cerr != nil {
			return cerr
		}
		return nil
	}
	// A direct-message room: one of its two users.
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.StoreTimeout)
	defer cancel()
	peers, err := s.store.Conversations(ctx, who.UserID)
	if err != nil {
		return fmt.Errorf("conversations: %w: %w", hub.ErrUnavailable, err)
	}
	for _, p := range peers {
		if chat.DirectRoom(who.UserID, p) == room {
			return nil
		}
	}
	return &chat.Error{Code: chat.CodeForbidden, Message: "this file is in a conversation you are not part of"}
}
