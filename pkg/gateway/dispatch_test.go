package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap/zaptest"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/gateway"
	"github.com/streamchat/streamchat/pkg/hub"
)

// fakeHub is a gateway.Hub without rooms or Redis: it records what is
// posted and answers with postErr when it is set.
type fakeHub struct {
	mu      sync.Mutex
	posted  []chat.Event
	postErr error
	started chan hub.Follower
}

func (h *fakeHub) Join(_ context.Context, req hub.JoinRequest) (gateway.Session, hub.Greeting, error) {
	return &fakeSession{h: h}, hub.Greeting{Boundary: chat.ID{Ms: 5}, Cursor: chat.ID{Ms: 5}, Online: []chat.Member{{Name: req.Name}}}, nil
}

func (h *fakeHub) Post(_ context.Context, e chat.Event, _ string) (chat.Ack, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.postErr != nil {
		return chat.Ack{}, h.postErr
	}
	h.posted = append(h.posted, e)
	return chat.Ack{ID: chat.ID{Ms: 7, Seq: uint64(len(h.posted))}}, nil
}

func (h *fakeHub) Amend(_ context.Context, a chat.Amendment) (chat.Ack, error) {
	return h.Post(context.Background(), a.Event, a.Sender)
}

func (h *fakeHub) Healthy() error { return nil }

func (h *fakeHub) setPostErr(err error) {
	h.mu.Lock()
	h.postErr = err
	h.mu.Unlock()
}

func (h *fakeHub) events() []chat.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]chat.Event(nil), h.posted...)
}

type fakeSession struct{ h *fakeHub }

func (s *fakeSession) Next(ctx context.Context) ([]hub.Entry, error) {
	<-ctx.Done() // never called: nothing to resume
	return nil, ctx.Err()
}

func (s *fakeSession) Start(f hub.Follower, _ func(error)) { s.h.started <- f }

func (s *fakeSession) Leave(context.Context) (bool, error) { return true, nil }

type fakeStorage struct{}

func (fakeStorage) Ping(context.Context) error { return nil }
func (fakeStorage) Stat(context.Context, string) (chat.RoomStat, error) {
	return chat.RoomStat{}, nil
}
func (fakeStorage) Before(context.Context, string, chat.ID, int) ([]chat.Event, bool, error) {
	return nil, false, nil
}
func (fakeStorage) RecordDirect(context.Context, string, string) error { return nil }
func (fakeStorage) PutFile(context.Context, string, string, chat.Blob, time.Duration, int64) error {
	return nil
}
func (fakeStorage) GetFile(context.Context, string, string) (chat.Blob, error) {
	return chat.Blob{}, chat.ErrNoFile
}
func (fakeStorage) Conversations(context.Context, string) ([]string, error) {
	return nil, nil
}
func (fakeStorage) States(context.Context, string, []chat.Event, string, string) error { return nil }
func (fakeStorage) Typing(context.Context, string, string, string, string, []byte) (bool, error) {
	return true, nil
}
func (fakeStorage) Joined(context.Context, string, string, chat.ID) (chat.ID, error) {
	return chat.ID{}, nil
}
func (fakeStorage) MarkRead(_ context.Context, _, _ string, id chat.ID) (chat.ID, error) {
	return id, nil
}
func (fakeStorage) Rooms(context.Context, string, func(string) string) ([]chat.RoomSummary, error) {
	return nil, nil
}

// The read loop decodes each frame into a command and dispatches it to the
// hub; failures come back as error events carrying the command's nonce,
// and the connection goes on. Runs against a fake hub: no Redis.
func TestDispatchWithFakeHub(t *testing.T) {
	fh := &fakeHub{started: make(chan hub.Follower, 1)}
	ts := serve(t, gateway.New(fh, fakeStorage{}, nil, zaptest.NewLogger(t), gateway.Options{Rate: 100, Burst: 100}))
	c := clienttest.Dial(t, "ws"+strings.TrimPrefix(ts.URL, "http")+"/ws?room=r&name=ann", nil)
	hello, _, ready := clienttest.UntilReady(t, c)
	if hello.You != "ann" || ready.Cursor != "5-0" || fmt.Sprint(ready.Online) != "[ann]" {
		t.Fatalf("hello %+v, ready %+v", hello, ready)
	}
	var f hub.Follower
	select {
	case f = <-fh.started:
	case <-time.After(waitFor):
		t.Fatal("delivery never started")
	}

	send := func(frame string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := c.SendRaw(ctx, websocket.MessageText, []byte(frame)); err != nil {
			t.Fatal(err)
		}
	}
	// A message: posted as the connection's identity, then acknowledged.
	send(`{"type":"message","text":"  hi  ","nonce":"n1"}`)
	if ack := clienttest.NextOf(t, c, "ack"); ack.Nonce != "n1" || ack.ID != "7-1" {
		t.Fatalf("ack %+v", ack)
	}
	// Anonymous, it keeps the hash of its author key, which lets only it
	// edit the message.
	want := chat.Event{Room: "r", Kind: chat.KindMessage, From: "ann", Text: "hi", Nonce: "n1"}
	if got := fh.events(); len(got) == 1 && len(got[0].Author) == 32 {
		want.Author = got[0].Author
	}
	if got := fh.events(); len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Fatalf("posted %+v, want %+v", got, want)
	}
	// An unknown command, and a refused and a failed post: error events
	// with the nonce, nothing posted.
	send(`{"type":"teleport","nonce":"n2"}`)
	if ev := clienttest.NextOf(t, c, "error"); ev.Code != "bad_request" || ev.Nonce != "n2" {
		t.Fatalf("unknown command: %+v", ev)
	}
	fh.setPostErr(&chat.Error{Code: chat.CodeBadRequest, Message: "no"})
	send(`{"type":"message","text":"a","nonce":"n3"}`)
	if ev := clienttest.NextOf(t, c, "error"); ev.Code != "bad_request" || ev.Nonce != "n3" || ev.Message != "no" {
		t.Fatalf("refused post: %+v", ev)
	}
	fh.setPostErr(fmt.Errorf("xadd: %w", hub.ErrUnavailable))
	send(`{"type":"message","text":"b","nonce":"n4"}`)
	if ev := clienttest.NextOf(t, c, "error"); ev.Code != "unavailable" || ev.Nonce != "n4" {
		t.Fatalf("failed post: %+v", ev)
	}
	fh.setPostErr(nil)
	if got := len(fh.events()); got != 1 {
		t.Fatalf("%d events posted, want 1", got)
	}
	// Still open both ways: a post goes through, and what the hub writes
	// to the connection arrives.
	send("plain text")
	if ack := clienttest.NextOf(t, c, "ack"); ack.ID != "7-2" {
		t.Fatalf("ack %+v", ack)
	}
	entry := chat.EncodeEvent(chat.Event{ID: chat.ID{Ms: 9}, Room: "r", Kind: chat.KindMessage, From: "bob", Text: "yo"}, false)
	if err := f.Write(entry); err != nil {
		t.Fatal(err)
	}
	if ev := clienttest.NextOf(t, c, "message"); ev.From != "bob" || ev.Text != "yo" || ev.ID != "9-0" {
		t.Fatalf("entry %+v", ev)
	}
}

// GET /api/rooms/{room} answers from the error table like every HTTP API.
func TestRoomAPIErrors(t *testing.T) {
	gw := gateway.New(&fakeHub{}, fakeStorage{}, nil, zaptest.NewLogger(t), gateway.Options{})
	ts := httptest.NewServer(gw.Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/rooms/Bad!Room")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Code, Message string }
	decodeJSON(t, resp, &body)
	if resp.StatusCode != http.StatusBadRequest || body.Code != "bad_room" || body.Message == "" {
		t.Fatalf("bad room: %d %+v", resp.StatusCode, body)
	}
}
