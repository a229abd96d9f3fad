package gateway

import (
	"errors"
	"net/http"

	"github.com/coder/websocket"
	"go.uber.org/zap/zapcore"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/hub"
	"github.com/streamchat/streamchat/pkg/metrics"
	"github.com/streamchat/streamchat/pkg/wsconn"
)

// Reasons a connection ends, or a request fails, that the gateway itself
// decides.
var (
	errShutdown = errors.New("server shutting down")
	errJoin     = errors.New("join failed")
	errBinary   = errors.New("a binary frame without a file frame before it")
	errCommand  = errors.New("command not handled")
	errHost     = errors.New("host not allowed")
	errAddrFull = errors.New("too many connections from one address")
	errExpired  = errors.New("token expired")
	errNoFile   = errors.New("no such file")
)

// refusal is a handshake that cannot go on (bad room, bad name, and, to
// come, a bad token): the client is told why, then the connection closes.
type refusal struct{ err *chat.Error }

func (r refusal) Error() string { return "refused: " + r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

// What happens to a websocket after a failure.
const (
	keepOpen  = iota // the connection goes on
	closeWith        // close handshake with outcome.close
	drop             // close the socket at once: no handshake can complete
)

// outcome is everything a failure means for the client and the operator.
type outcome struct {
	event  *chat.Error          // the error event sent; nil: none
	action int                  // keepOpen, closeWith or drop
	close  websocket.StatusCode // with closeWith
	reason string               // the close frame's reason
	status int                  // the HTTP status, for the HTTP APIs
	metric string               // the connections_closed reason label
	level  zapcore.Level        // how the end or failure is logged
}

// row is one line of the table: the errors it matches and their outcome.
type row struct {
	name  string // for the table test and the docs
	match func(error) bool
	out   func(error) outcome
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

func fixed(o outcome) func(error) outcome { return func(error) outcome { return o } }

// table is the one place where failures become what the client sees and
// what is counted and logged: error event, websocket close, HTTP status,
// metric reason and log level. The first row that matches wins. Internal
// details never reach the client; only chat.Error messages, written for
// people, do.
var table = []row{
	{"refused handshake", func(err error) bool { var r refusal; return errors.As(err, &r) }, func(err error) outcome {
		var r refusal
		errors.As(err, &r)
		// A browser cannot read the status of a refused upgrade, so the
		// upgrade is accepted, the error event says why, and 1008 closes.
		return outcome{event: r.err, action: closeWith, close: websocket.StatusPolicyViolation, reason: string(r.err.Code),
			status: httpStatus(r.err.Code), metric: metrics.ReasonRefused, level: zapcore.InfoLevel}
	}},
	{"bad request", func(err error) bool { var ce *chat.Error; return errors.As(err, &ce) }, func(err error) outcome {
		var ce *chat.Error
		errors.As(err, &ce)
		return outcome{event: ce, action: keepOpen, status: httpStatus(ce.Code), metric: metrics.ReasonError, level: zapcore.DebugLevel}
	}},
	{"binary frame", is(errBinary), fixed(outcome{
		event:  &chat.Error{Code: chat.CodeBadRequest, Message: "a binary frame must come right after a file frame that announces it"},
		action: keepOpen, status: http.StatusUnsupportedMediaType, metric: metrics.ReasonError, level: zapcore.DebugLevel})},
	{"unknown command", is(errCommand), fixed(outcome{
		event:  &chat.Error{Code: chat.CodeBadRequest, Message: "unknown frame type"},
		action: keepOpen, status: http.StatusBadRequest, metric: metrics.ReasonError, level: zapcore.WarnLevel})},
	{"join failed", is(errJoin), fixed(outcome{
		event:  &chat.Error{Code: chat.CodeUnavailable, Message: "the room is unavailable; try again"},
		action: closeWith, close: websocket.StatusTryAgainLater, reason: "unavailable; try again",
		status: http.StatusServiceUnavailable, metric: metrics.ReasonJoinError, level: zapcore.WarnLevel})},
	// A request for a host name this server does not serve: a page on
	// another site whose DNS name was rebound to this server.
	{"host not allowed", is(errHost), fixed(outcome{
		event:  &chat.Error{Code: chat.CodeForbidden, Message: "this server does not answer to that host name"},
		action: drop, status: http.StatusMisdirectedRequest, metric: metrics.ReasonRefused, level: zapcore.InfoLevel})},
	{"too many connections from one address", is(errAddrFull), fixed(outcome{
		event:  &chat.Error{Code: chat.CodeRateLimited, Message: "too many connections from your address"},
		action: drop, status: http.StatusTooManyRequests, metric: metrics.ReasonRefused, level: zapcore.InfoLevel})},
	{"no such file", is(errNoFile), fixed(outcome{
		event:  &chat.Error{Code: chat.CodeNotFound, Message: "no such file: the link is wrong or the file has expired"},
		action: drop, status: http.StatusNotFound, metric: metrics.ReasonError, level: zapcore.DebugLevel})},
	{"server API off", is(errNoAPI), fixed(outcome{
		event:  &chat.Error{Code: chat.CodeNotFound, Message: "the server API is not enabled on this server"},
		action: drop, status: http.StatusNotFound, metric: metrics.ReasonRefused, level: zapcore.DebugLevel})},
	{"bad API key", is(errAPIKey), fixed(outcome{
		event:  &chat.Error{Code: chat.CodeUnauthorized, Message: "Authorization: Bearer with the server's API key is required"},
		action: drop, status: http.StatusUnauthorized, metric: metrics.ReasonRefused, level: zapcore.InfoLevel})},
	// The token ran out during the connection: the client gets a fresh one
	// and reconnects with since.
	{"token expired", is(errExpired), fixed(outcome{
		event:  &chat.Error{Code: chat.CodeTokenExpired, Message: "your sign-in has expired; reconnect with a fresh token"},
		action: closeWith, close: websocket.StatusPolicyViolation, reason: string(chat.CodeTokenExpired),
		status: http.StatusUnauthorized, metric: metrics.ReasonRefused, level: zapcore.InfoLevel})},
	{"storage unavailable", is(hub.ErrUnavailable), fixed(outcome{
		event:  &chat.Error{Code: chat.CodeUnavailable, Message: "the message store is unavailable; try again"},
		action: keepOpen, status: http.StatusServiceUnavailable, metric: metrics.ReasonError, level: zapcore.DebugLevel})},
	{"shutting down", func(err error) bool { return errors.Is(err, errShutdown) || errors.Is(err, hub.ErrClosed) }, fixed(outcome{
		action: closeWith, close: websocket.StatusGoingAway, reason: "server shutting down; reconnect",
		status: http.StatusServiceUnavailable, metric: metrics.ReasonShutdown, level: zapcore.InfoLevel})},
	{"fell behind", is(hub.ErrLagged), fixed(outcome{
		action: closeWith, close: websocket.StatusTryAgainLater, reason: "fell behind the room; reconnect",
		status: http.StatusGone, metric: metrics.ReasonLagged, level: zapcore.InfoLevel})},
	{"unresponsive", func(err error) bool {
		return errors.Is(err, wsconn.ErrPingTimeout) || errors.Is(err, wsconn.ErrWriteTimeout)
	}, fixed(outcome{action: drop, status: http.StatusRequestTimeout, metric: metrics.ReasonTimeout, level: zapcore.InfoLevel})},
	// The library has already closed with 1009.
	{"frame too large", is(websocket.ErrMessageTooBig), fixed(outcome{
		action: drop, status: http.StatusRequestEntityTooLarge, metric: metrics.ReasonTooLarge, level: zapcore.InfoLevel})},
	{"client closed", func(err error) bool { var ce websocket.CloseError; return errors.As(err, &ce) }, fixed(outcome{
		action: drop, status: http.StatusBadRequest, metric: metrics.ReasonClient, level: zapcore.InfoLevel})},
}

// internal is what anything else means: a broken socket, or a bug.
var internal = outcome{event: &chat.Error{Code: chat.CodeInternal, Message: "internal error"}, action: drop,
	// A broken socket is the usual cause, which is no news.
	status: http.StatusInternalServerError, metric: metrics.ReasonError, level: zapcore.InfoLevel}

// classify returns err's outcome.
func classify(err error) outcome {
	for _, r := range table {
		if r.match(err) {
			return r.out(err)
		}
	}
	return internal
}

// ending is how a connection's end is counted: the server's reason when it
// ended the connection, otherwise the end of the client's read. A read that
// ends for any reason the table does not know is the client going away.
func ending(serverErr, readErr error) outcome {
	if serverErr != nil {
		return classify(serverErr)
	}
	o := classify(readErr)
	if o.metric == metrics.ReasonError {
		o = outcome{action: drop, metric: metrics.ReasonClient, level: zapcore.InfoLevel}
	}
	return o
}

// httpStatus is the HTTP status of a client error code.
func httpStatus(code chat.Code) int {
	switch code {
	case chat.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case chat.CodeRateLimited:
		return http.StatusTooManyRequests
	case chat.CodeUnavailable:
		return http.StatusServiceUnavailable
	case chat.CodeInternal:
		return http.StatusInternalServerError
	case chat.CodeForbidden:
		return http.StatusForbidden
	case chat.CodeUnauthorized, chat.CodeTokenExpired:
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}
