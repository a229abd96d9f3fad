package gateway

import (
	"errors"

	"github.com/coder/websocket"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/metrics"
)

// Reasons a connection ends that the gateway itself decides.
var (
	errShutdown     = errors.New("server shutting down")
	errPingTimeout  = errors.New("ping not answered")
	errWriteTimeout = errors.New("write timed out")
	errUnavailable  = errors.New("storage unavailable")
	errJoin         = errors.New("join failed")
	errBinary       = errors.New("binary frames are not supported")
)

// toClient is the one place where failures become what the client sees:
// an error event (nil when none is sent) and what happens to the
// connection: code -1 keeps it open, 0 drops it at once (the peer is gone
// or not responding, so no close handshake can complete), any other code
// closes it with that code and reason. Internal details never reach the
// client; the caller logs err itself.
func toClient(err error) (ev *chat.Error, code websocket.StatusCode, reason string) {
	var ce *chat.Error
	switch {
	case errors.As(err, &ce):
		return ce, -1, ""
	case errors.Is(err, errBinary):
		return &chat.Error{Code: chat.CodeBadRequest, Message: "binary frames are not supported; send text"}, -1, ""
	case errors.Is(err, errJoin):
		return &chat.Error{Code: chat.CodeUnavailable, Message: "the room is unavailable; try again"}, websocket.StatusTryAgainLater, "unavailable; try again"
	case errors.Is(err, errUnavailable):
		return &chat.Error{Code: chat.CodeUnavailable, Message: "the message store is unavailable; try again"}, -1, ""
	case errors.Is(err, errShutdown), errors.Is(err, hub.ErrClosed):
		return nil, websocket.StatusGoingAway, "server shutting down; reconnect"
	case errors.Is(err, hub.ErrLagged):
		return nil, websocket.StatusTryAgainLater, "fell behind the room; reconnect"
	}
	// Unresponsive (ping or write timeout), already closed by the peer or
	// by the library (1009), a broken socket, or a bug: nothing orderly is
	// left to do.
	return &chat.Error{Code: chat.CodeInternal, Message: "internal error"}, 0, ""
}

// closeReason is the bounded label a connection's end is counted under.
func closeReason(serverErr, readErr error) string {
	err := serverErr
	if err == nil {
		err = readErr
	}
	var ce websocket.CloseError
	switch {
	case errors.Is(err, errShutdown), errors.Is(err, hub.ErrClosed):
		return metrics.ReasonShutdown
	case errors.Is(err, hub.ErrLagged):
		return metrics.ReasonLagged
	case errors.Is(err, errPingTimeout), errors.Is(err, errWriteTimeout):
		return metrics.ReasonTimeout
	case errors.Is(err, errJoin):
		return metrics.ReasonJoinError
	case errors.Is(err, websocket.ErrMessageTooBig):
		return metrics.ReasonTooLarge
	case errors.As(err, &ce), serverErr == nil:
		return metrics.ReasonClient // closed or went away
	}
	return metrics.ReasonError
}

// handshakeError is what a bad /ws request gets: one error event, then a
// 1008 close with a short reason.
func handshakeError(e *chat.Error) (websocket.StatusCode, string) {
	return websocket.StatusPolicyViolation, string(e.Code)
}
