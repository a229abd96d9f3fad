package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
)

// The server API (docs/api.md): a backend posts into rooms and reads their
// history with Authorization: Bearer CHAT_API_KEY.

var (
	errNoAPI  = errors.New("the server API is off: CHAT_API_KEY is not set")
	errAPIKey = errors.New("missing or wrong API key")
)

// requireKey lets a request through only with the API key, compared in
// constant time.
func (s *Server) requireKey(next http.HandlerFunc) http.HandlerFunc {
	want := []byte("Bearer " + s.opts.APIKey)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if s.opts.APIKey == "" {
			s.apiError(w, r, errNoAPI)
			return
		}
		if subtle.ConstantTimeCompare(got, want) != 1 {
			s.apiError(w, r, errAPIKey)
			return
		}
		next(w, r)
	}
}

// publishBody is the body of POST /api/rooms/{room}/messages.
type publishBody struct {
	Text  string `json:"text"`
	From  string `json:"from"`
	Nonce string `json:"nonce"`
}

// servePublish appends a message marked bot, with the same rules and
// limits as a websocket message, and answers 201 {"id":...}.
func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if !chat.ValidRoom(room) {
		s.apiError(w, r, chat.BadRoom())
		return
	}
	var body publishBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.opts.MaxFrame))
	if err := dec.Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.apiError(w, r, &chat.Error{Code: chat.CodeTooLarge, Message: fmt.Sprintf("the body is larger than %d bytes", s.opts.MaxFrame)})
			return
		}
		s.apiError(w, r, &chat.Error{Code: chat.CodeBadRequest, Message: `the body must be JSON: {"text":"...","from":"...","nonce":"..."}`})
		return
	}
	from, cerr := chat.NormalizeName(body.From)
	if cerr != nil {
		s.apiError(w, r, cerr)
		return
	}
	text, cerr := chat.NormalizeText(body.Text, s.opts.MaxText)
	if cerr != nil {
		s.apiError(w, r, cerr)
		return
	}
	if utf8.RuneCountInString(body.Nonce) > chat.MaxNonceLen {
		s.apiError(w, r, &chat.Error{Code: chat.CodeBadRequest, Message: "nonce is longer than 64 characters"})
		return
	}
	if !s.botAllowed(r.Context(), from) {
		s.opts.Metrics.RateLimited.Inc()
		s.apiError(w, r, &chat.Error{Code: chat.CodeRateLimited, Message: "too many messages from this sender; slow down"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.StoreTimeout)
	defer cancel()
	ack, err := s.hub.Post(ctx, chat.Event{Room: room, Kind: chat.KindMessage, From: from, Text: text, Nonce: body.Nonce, Bot: true}, "bot:"+from)
	if err != nil {
		var ce *chat.Error
		if !errors.As(err, &ce) && !errors.Is(err, hub.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", hub.ErrUnavailable, err)
		}
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate,omitempty"`
	}{ack.ID.String(), ack.Duplicate})
}

// botAllowed spends one send of the sender's budget: the budget shared by
// every replica when there is one, this replica's own otherwise.
func (s *Server) botAllowed(ctx context.Context, from string) bool {
	if s.opts.Limiter != nil {
		if ok, err := s.opts.Limiter.Allow(ctx, "bot:"+from); err == nil {
			return ok
		}
	}
	s.botMu.Lock()
	defer s.botMu.Unlock()
	if s.bots == nil || len(s.bots) > 10000 {
		s.bots = make(map[string]*rate.Limiter) // bounded: forget old senders
	}
	l := s.bots[from]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(s.opts.Rate), s.opts.Burst)
		s.bots[from] = l
	}
	return l.Allow()
}

// serveHistory answers GET /api/rooms/{room}/messages?before=ID&limit=N:
// up to N (default 50, at most 200) messages older than ID (default: the
// newest), newest first, and the before= of the next page when there may
// be one.
func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if !chat.ValidRoom(room) {
		s.apiError(w, r, chat.BadRoom())
		return
	}
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			s.apiError(w, r, &chat.Error{Code: chat.CodeBadRequest, Message: "limit must be 1 to 200"})
			return
		}
		limit = n
	}
	var before chat.ID
	if v := q.Get("before"); v != "" {
		id, err := chat.ParseID(v)
		if err != nil {
			s.apiError(w, r, &chat.Error{Code: chat.CodeBadRequest, Message: "before must be a message id like 1763781234567-0"})
			return
		}
		before = id
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.StoreTimeout)
	defer cancel()
	events, more, err := s.store.Before(ctx, room, before, limit)
	if err == nil {
		err = s.store.States(ctx, room, events, "", "")
	}
	if err != nil {
		s.apiError(w, r, fmt.Errorf("history: %w: %w", hub.ErrUnavailable, err))
		return
	}
	page := struct {
		Room     string            `json:"room"`
		Messages []json.RawMessage `json:"messages"`
		Next     string            `json:"next,omitempty"`
	}{Room: room, Messages: make([]json.RawMessage, 0, len(events))}
	for _, e := range events {
		page.Messages = append(page.Messages, chat.EncodeEvent(e, false))
	}
	if more && len(events) > 0 {
		page.Next = events[len(events)-1].ID.String()
	}
	writeJSON(w, http.StatusOK, page)
}

// serveConversations answers GET /api/conversations for a signed-in user
// (the token as on the websocket): the users they have direct-message
// conversations with, most recent first, each with the room=@USERID that
// opens it.
func (s *Server) serveConversations(w http.ResponseWriter, r *http.Request) {
	who, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.StoreTimeout)
	defer cancel()
	ids, err := s.store.Conversations(ctx, who.UserID)
	if err != nil {
		s.apiError(w, r, fmt.Errorf("conversations: %w: %w", hub.ErrUnavailable, err))
		return
	}
	type conversation struct {
		With string `json:"with"`
		Room string `json:"room"`
	}
	out := struct {
		Conversations []conversation `json:"conversations"`
	}{Conversations: make([]conversation, 0, len(ids))}
	for _, id := range ids {
		out.Conversations = append(out.Conversations, conversation{With: id, Room: chat.DirectRoom(who.UserID, id)})
	}
	writeJSON(w, http.StatusOK, out)
}

// signedIn authenticates a request of a signed-in user's own API (the
// token as on the websocket); anything else is answered with its error.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request) (chat.Identity, bool) {
	who, err := s.opts.Auth.Authenticate(r)
	if err == nil && who.UserID == "" {
		err = &chat.Error{Code: chat.CodeUnauthorized, Message: "sign-in required"}
	}
	if err != nil {
		s.apiError(w, r, err)
		return who, false
	}
	return who, true
}
