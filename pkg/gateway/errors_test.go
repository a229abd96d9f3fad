package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/coder/websocket"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/metrics"
	"github.com/streamchat/streamchat/pkg/wsconn"
)

// Every row of the error table, and what lies past it: the event code, what
// happens to the websocket, the HTTP status and the metric reason.
func TestErrorTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		row    string
		err    error
		code   chat.Code // "" when no error event is sent
		action int
		close  websocket.StatusCode
		status int
		metric string
	}{
		{"refused handshake", refusal{&chat.Error{Code: chat.CodeBadRoom, Message: "m"}}, chat.CodeBadRoom, closeWith, websocket.StatusPolicyViolation, http.StatusBadRequest, metrics.ReasonRefused},
		{"bad request", &chat.Error{Code: chat.CodeTooLarge, Message: "m"}, chat.CodeTooLarge, keepOpen, 0, http.StatusRequestEntityTooLarge, metrics.ReasonError},
		{"bad request", fmt.Errorf("post: %w", &chat.Error{Code: chat.CodeRateLimited, Message: "m"}), chat.CodeRateLimited, keepOpen, 0, http.StatusTooManyRequests, metrics.ReasonError},
		{"binary frame", errBinary, chat.CodeBadRequest, keepOpen, 0, http.StatusUnsupportedMediaType, metrics.ReasonError},
		{"unknown command", fmt.Errorf("%w: x", errCommand), chat.CodeBadRequest, keepOpen, 0, http.StatusBadRequest, metrics.ReasonError},
		{"join failed", errJoin, chat.CodeUnavailable, closeWith, websocket.StatusTryAgainLater, http.StatusServiceUnavailable, metrics.ReasonJoinError},
		{"host not allowed", fmt.Errorf("%w: evil.example", errHost), chat.CodeForbidden, drop, 0, http.StatusMisdirectedRequest, metrics.ReasonRefused},
		{"too many connections from one address", errAddrFull, chat.CodeRateLimited, drop, 0, http.StatusTooManyRequests, metrics.ReasonRefused},
		{"no such file", errNoFile, chat.CodeNotFound, drop, 0, http.StatusNotFound, metrics.ReasonError},
		{"server API off", errNoAPI, chat.CodeNotFound, drop, 0, http.StatusNotFound, metrics.ReasonRefused},
		{"bad API key", errAPIKey, chat.CodeUnauthorized, drop, 0, http.StatusUnauthorized, metrics.ReasonRefused},
		{"token expired", errExpired, chat.CodeTokenExpired, closeWith, websocket.StatusPolicyViolation, http.StatusUnauthorized, metrics.ReasonRefused},
		{"refused handshake", refusal{&chat.Error{Code: chat.CodeUnauthorized, Message: "m"}}, chat.CodeUnauthorized, closeWith, websocket.StatusPolicyViolation, http.StatusUnauthorized, metrics.ReasonRefused},
		{"refused handshake", refusal{&chat.Error{Code: chat.CodeForbidden, Message: "m"}}, chat.CodeForbidden, closeWith, websocket.StatusPolicyViolation, http.StatusForbidden, metrics.ReasonRefused},
		{"storage unavailable", fmt.Errorf("post: %w: %w", hub.ErrUnavailable, io.EOF), chat.CodeUnavailable, keepOpen, 0, http.StatusServiceUnavailable, metrics.ReasonError},
		{"shutting down", errShutdown, "", closeWith, websocket.StatusGoingAway, http.StatusServiceUnavailable, metrics.ReasonShutdown},
		{"shutting down", hub.ErrClosed, "", closeWith, websocket.StatusGoingAway, http.StatusServiceUnavailable, metrics.ReasonShutdown},
		{"fell behind", hub.ErrLagged, "", closeWith, websocket.StatusTryAgainLater, http.StatusGone, metrics.ReasonLagged},
		{"unresponsive", wsconn.ErrPingTimeout, "", drop, 0, http.StatusRequestTimeout, metrics.ReasonTimeout},
		{"unresponsive", wsconn.ErrWriteTimeout, "", drop, 0, http.StatusRequestTimeout, metrics.ReasonTimeout},
		{"frame too large", fmt.Errorf("read: %w", websocket.ErrMessageTooBig), "", drop, 0, http.StatusRequestEntityTooLarge, metrics.ReasonTooLarge},
		{"client closed", websocket.CloseError{Code: websocket.StatusNormalClosure}, "", drop, 0, http.StatusBadRequest, metrics.ReasonClient},
		{"internal", errors.New("write: broken pipe"), chat.CodeInternal, drop, 0, http.StatusInternalServerError, metrics.ReasonError},
		{"internal", context.DeadlineExceeded, chat.CodeInternal, drop, 0, http.StatusInternalServerError, metrics.ReasonError},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.row] = true
		t.Run(tt.row+"/"+tt.err.Error(), func(t *testing.T) {
			t.Parallel()
			o := classify(tt.err)
			var code chat.Code
			if o.event != nil {
				code = o.event.Code
				if o.event.Message == "" {
					t.Error("error event without a message")
				}
			}
			if code != tt.code || o.action != tt.action || o.close != tt.close || o.status != tt.status || o.metric != tt.metric {
				t.Fatalf("classify(%v) = code %q action %d close %d status %d metric %q; want %q %d %d %d %q",
					tt.err, code, o.action, o.close, o.status, o.metric, tt.code, tt.action, tt.close, tt.status, tt.metric)
			}
			if o.action == closeWith && o.reason == "" {
				t.Error("close without a reason")
			}
		})
	}
	for _, r := range table {
		if !covered[r.name] {
			t.Errorf("row %q has no case", r.name)
		}
	}
}

// A connection's end is the server's reason when it ended it, otherwise
// the client's read: an unknown read error is the client going away.
func TestEnding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		serverErr, readEr error
		metric            string
	}{
		{"server shut down", errShutdown, io.EOF, metrics.ReasonShutdown},
		{"client closed", nil, websocket.CloseError{Code: websocket.StatusGoingAway}, metrics.ReasonClient},
		{"connection lost", nil, io.ErrUnexpectedEOF, metrics.ReasonClient},
		{"frame too large", nil, websocket.ErrMessageTooBig, metrics.ReasonTooLarge},
		{"server write failed", errors.New("broken pipe"), io.EOF, metrics.ReasonError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ending(tt.serverErr, tt.readEr).metric; got != tt.metric {
				t.Fatalf("ending = %q, want %q", got, tt.metric)
			}
		})
	}
}
