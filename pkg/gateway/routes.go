package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
)

// Handler routes every path a replica serves; this is the one list.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// The chat protocol (docs/protocol.md).
	mux.HandleFunc("GET /ws", s.serveWS)
	// The HTTP API: JSON in and out, failures from the error table.
	mux.HandleFunc("GET /api/rooms/{room}", s.serveRoom)
	// The server API, with CHAT_API_KEY (404 without one).
	mux.HandleFunc("POST /api/rooms/{room}/messages", s.requireKey(s.servePublish))
	mux.HandleFunc("GET /api/rooms/{room}/messages", s.requireKey(s.serveHistory))
	// Uploaded files, from any replica.
	mux.HandleFunc("GET /files/{room}/{id}", s.serveFile)
	// A signed-in user's own: their direct-message conversations.
	mux.HandleFunc("GET /api/conversations", s.serveConversations)
	mux.HandleFunc("GET /api/me/rooms", s.serveMyRooms)
	// Operations.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	if s.opts.MetricsHandler != nil {
		mux.Handle("GET /metrics", s.opts.MetricsHandler)
	}
	// The browser client.
	if s.web != nil {
		mux.Handle("/", s.web)
	}
	if len(s.opts.AllowedHosts) == 0 {
		return mux
	}
	return s.checkHost(mux)
}

// checkHost refuses, with 421, every request whose Host is not one of
// AllowedHosts, before any route sees it. The Origin check alone cannot
// stop DNS rebinding: a page on evil.example whose name now points at this
// server sends Origin http://evil.example and Host evil.example, which
// match. Probes (/healthz, /readyz) are answered whatever the Host, since
// load balancers and the kubelet address replicas by IP.
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || hostAllowed(r.Host, s.opts.AllowedHosts) {
			next.ServeHTTP(w, r)
			return
		}
		s.apiError(w, r, fmt.Errorf("%w: %q", errHost, r.Host))
	})
}

// hostAllowed reports whether the request's Host, without its port and
// case-folded, matches one of the patterns (path.Match syntax, e.g.
// "chat.example.com" or "*.example.com").
func hostAllowed(hostport string, patterns []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, p := range patterns {
		if ok, err := path.Match(strings.ToLower(p), host); err == nil && ok {
			return true
		}
	}
	return false
}

// serveReady answers 200 only when this replica should get traffic: not
// draining, Redis answers, and every room's tail reads.
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fail := func(why string) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(why + "\n"))
	}
	if s.isDraining() {
		fail("draining")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		fail("redis: not answering")
		return
	}
	if err := s.hub.Healthy(); err != nil {
		fail("tail: " + err.Error())
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// roomInfo is the body of GET /api/rooms/{room}.
type roomInfo struct {
	Room   string `json:"room"`
	Length int64  `json:"length"`
	LastID string `json:"last_id"`
}

// serveRoom describes a room's stream: how many entries it holds and the
// id of the last one generated ("0-0" for a room never written to).
func (s *Server) serveRoom(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if !chat.ValidRoom(room) {
		s.apiError(w, r, chat.BadRoom())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.StoreTimeout)
	defer cancel()
	st, err := s.store.Stat(ctx, room)
	if err != nil {
		s.apiError(w, r, fmt.Errorf("stat: %w: %w", hub.ErrUnavailable, err))
		return
	}
	writeJSON(w, http.StatusOK, roomInfo{Room: room, Length: st.Length, LastID: st.LastID.String()})
}

// apiError answers an HTTP API request with err's status from the error
// table and a JSON body {"code":...,"message":...}.
func (s *Server) apiError(w http.ResponseWriter, r *http.Request, err error) {
	o := classify(err)
	ev := o.event
	if ev == nil {
		ev = internal.event
	}
	if ce := s.log.Check(o.level, "api request failed"); ce != nil {
		ce.Write(zap.String("path", r.URL.Path), zap.Int("status", o.status), zap.Error(err))
	}
	writeJSON(w, o.status, struct {
		Code    chat.Code `json:"code"`
		Message string    `json:"message"`
	}{ev.Code, ev.Message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
