package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/streamchat/streamchat/pkg/client"
	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/config"
	"github.com/streamchat/streamchat/pkg/token"
)

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		img.Set(x, x%h, color.RGBA{200, 30, 30, 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// upload announces a file and sends its bytes (size as announced unless
// size is given), and returns the server's answer to the nonce.
func upload(t *testing.T, c *client.Conn, name, mime string, data []byte, nonce string, size int) client.Event {
	t.Helper()
	if size < 0 {
		size = len(data)
	}
	meta, _ := json.Marshal(map[string]any{"type": "file", "name": name, "mime": mime, "size": size, "nonce": nonce})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.SendRaw(ctx, websocket.MessageText, meta); err != nil {
		t.Fatal(err)
	}
	if data != nil {
		if err := c.SendRaw(ctx, websocket.MessageBinary, data); err != nil {
			t.Fatal(err)
		}
	}
	return answer(t, c, nonce)
}

// answer reads until the ack or error carrying nonce. The file entry an
// ack names may come before or after it; it is kept for fileEntry.
func answer(t *testing.T, c *client.Conn, nonce string) client.Event {
	t.Helper()
	for {
		ev := clienttest.Next(t, c)
		if ev.Type == "file" {
			seenFiles[c] = append(seenFiles[c], ev)
		}
		if (ev.Type == "ack" || ev.Type == "error") && ev.Nonce == nonce {
			return ev
		}
	}
}

// seenFiles are file entries answer read past, per connection (tests in
// this file do not run in parallel).
var seenFiles = map[*client.Conn][]client.Event{}

// fileEntry returns the file entry with the id, read before or now.
func fileEntry(t *testing.T, c *client.Conn, id string) client.Event {
	t.Helper()
	for _, ev := range seenFiles[c] {
		if ev.ID == id {
			return ev
		}
	}
	for {
		if ev := clienttest.Next(t, c); ev.Type == "file" && ev.ID == id {
			return ev
		}
	}
}

func fetch(t *testing.T, url string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// A PNG uploaded through one replica reaches the others' clients as a file
// event with its dimensions, and any replica serves the same bytes with
// headers that keep browsers from running anything.
func TestFileUpload(t *testing.T) {
	cl := startCluster(t, 3, config.TailShared, unlimited)
	room := uniqueRoom("files")
	a := dial(t, cl.replicas[0].wsURL(room, "ann", ""))
	clienttest.UntilReady(t, a)
	b := dial(t, cl.replicas[1].wsURL(room, "bob", ""))
	clienttest.UntilReady(t, b)
	c := dial(t, cl.replicas[2].wsURL(room, "cat", ""))
	clienttest.UntilReady(t, c)

	img := pngOf(t, 37, 21)
	ack := upload(t, a, "../../etc/cat.png", "image/png", img, "f1", -1)
	if ack.Type != "ack" {
		t.Fatalf("upload: %+v", ack)
	}
	var entry client.Event
	for _, r := range []*client.Conn{b, c} {
		for {
			ev := clienttest.Next(t, r)
			if ev.Type == "file" {
				entry = ev
				break
			}
		}
		if entry.ID != ack.ID || entry.Name != "cat.png" || entry.Mime != "image/png" || entry.Width != "37" || entry.Height != "21" ||
			entry.Size != fmt.Sprint(len(img)) || !strings.HasPrefix(entry.URL, "/files/"+room+"/") {
			t.Fatalf("file entry %+v", entry)
		}
	}
	resp, body := fetch(t, "http://"+cl.replicas[2].addr+entry.URL, nil)
	if resp.StatusCode != http.StatusOK || sha256.Sum256(body) != sha256.Sum256(img) {
		t.Fatalf("GET on another replica: %d, %d bytes", resp.StatusCode, len(body))
	}
	for k, want := range map[string]string{
		"Content-Type": "image/png", "Content-Length": fmt.Sprint(len(img)), "X-Content-Type-Options": "nosniff",
		"Content-Security-Policy": "default-src 'none'; sandbox", "Content-Disposition": "inline; filename*=UTF-8''cat.png",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if resp.Header.Get("ETag") == "" || !strings.HasPrefix(resp.Header.Get("Cache-Control"), "private, max-age=") {
		t.Errorf("caching headers: %v", resp.Header)
	}
	part, slice := fetch(t, "http://"+cl.replicas[1].addr+entry.URL, http.Header{"Range": {"bytes=8-15"}})
	if part.StatusCode != http.StatusPartialContent || !bytes.Equal(slice, img[8:16]) {
		t.Fatalf("range: %d %x", part.StatusCode, slice)
	}
	// A newcomer's replay has the file entry.
	late := dial(t, cl.replicas[1].wsURL(room, "dan", ""))
	_, replay, _ := clienttest.UntilReady(t, late)
	if len(replay) != 1 || replay[0].Type != "file" || replay[0].ID != ack.ID {
		t.Fatalf("replay %+v", replay)
	}
	if resp, _ := fetch(t, "http://"+cl.replicas[0].addr+"/files/"+room+"/AAAAAAAAAAAAAAAAAAAAAA", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown file: %d", resp.StatusCode)
	}
}

// The server decides what a file is: HTML claiming to be a PNG, and SVG,
// are attachments of type application/octet-stream.
func TestFileTypesAreSniffed(t *testing.T) {
	cl := startCluster(t, 1, config.TailShared, unlimited)
	r := cl.replicas[0]
	room := uniqueRoom("sniff")
	c := dial(t, r.wsURL(room, "ann", ""))
	clienttest.UntilReady(t, c)
	for i, f := range []struct{ name, mime, body string }{
		{"cute.png", "image/png", "<html><script>alert(1)</script></html>"},
		{"logo.svg", "image/svg+xml", `<svg xmlns="http://www.w3.org/2000/svg"><script>alert(2)</script></svg>`},
	} {
		ack := upload(t, c, f.name, f.mime, []byte(f.body), fmt.Sprint("s", i), -1)
		if ack.Type != "ack" {
			t.Fatalf("%s: %+v", f.name, ack)
		}
		ev := fileEntry(t, c, ack.ID)
		if ev.Mime != "application/octet-stream" || ev.Width != "" {
			t.Fatalf("%s: entry %+v", f.name, ev)
		}
		resp, _ := fetch(t, "http://"+r.addr+ev.URL, nil)
		if resp.Header.Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment; filename*=UTF-8''") {
			t.Fatalf("%s served as %v", f.name, resp.Header)
		}
	}
}

// Bad uploads get bad_request or too_large, store nothing, and the
// connection goes on.
func TestFileUploadRefusals(t *testing.T) {
	cl := startCluster(t, 1, config.TailShared, func(c *config.Config) {
		unlimited(c)
		c.MaxFile, c.RoomFileQuota, c.UploadRate = 4096, 10000, 1024
	})
	r := cl.replicas[0]
	room := uniqueRoom("refuse")
	c := dial(t, r.wsURL(room, "ann", ""))
	clienttest.UntilReady(t, c)
	ctx := context.Background()
	raw := func(typ websocket.MessageType, b []byte) {
		if err := c.SendRaw(ctx, typ, b); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(what, nonce, code string) {
		t.Helper()
		if ev := answer(t, c, nonce); ev.Type != "error" || ev.Code != code {
			t.Fatalf("%s: %+v, want %s", what, ev, code)
		}
	}
	if ev := upload(t, c, "big.bin", "", nil, "big", 5000); ev.Code != "too_large" {
		t.Fatalf("over CHAT_MAX_FILE: %+v", ev)
	}
	if ev := upload(t, c, "short.bin", "", []byte("12345"), "short", 10); ev.Code != "bad_request" {
		t.Fatalf("size mismatch: %+v", ev)
	}
	raw(websocket.MessageBinary, []byte("orphan"))
	expect("a binary frame with no file frame", "", "bad_request")
	raw(websocket.MessageText, []byte(`{"type":"file","name":"x","size":3,"nonce":"ilv"}`))
	raw(websocket.MessageText, []byte(`{"type":"message","text":"interleaved","nonce":"m0"}`))
	expect("a text frame where the bytes were due", "ilv", "bad_request")
	// The connection is still good.
	if id := clienttest.Send(t, c, "still here"); id == "" {
		t.Fatal("no ack after the refusals")
	}
	// The upload budget: 1 KiB/s, bursts of 4 KiB.
	for i := range 2 {
		if ev := upload(t, c, "a.bin", "", bytes.Repeat([]byte{'a'}, 2048), fmt.Sprint("b", i), -1); ev.Type != "ack" {
			t.Fatalf("upload %d within the budget: %+v", i, ev)
		}
	}
	if ev := upload(t, c, "a.bin", "", bytes.Repeat([]byte{'a'}, 2048), "b2", -1); ev.Code != "rate_limited" {
		t.Fatalf("over the upload budget: %+v", ev)
	}
	keys, _ := cl.redis.Client().Keys(ctx, "chat:{"+room+"}:file:*").Result()
	if len(keys) != 2 {
		t.Fatalf("%d files stored, want the 2 accepted", len(keys))
	}
}

// The room's quota refuses and stores nothing; files expire after their TTL.
func TestFileQuotaAndExpiry(t *testing.T) {
	cl := startCluster(t, 1, config.TailShared, func(c *config.Config) {
		unlimited(c)
		c.MaxFile, c.RoomFileQuota, c.UploadRate, c.FileTTL = 4096, 5000, 1<<20, time.Second
	})
	r := cl.replicas[0]
	room := uniqueRoom("quota")
	c := dial(t, r.wsURL(room, "ann", ""))
	clienttest.UntilReady(t, c)
	first := upload(t, c, "one.bin", "", bytes.Repeat([]byte{'x'}, 3000), "q1", -1)
	if first.Type != "ack" {
		t.Fatalf("first upload: %+v", first)
	}
	before := streamLen(t, cl, room)
	if ev := upload(t, c, "two.bin", "", bytes.Repeat([]byte{'y'}, 3000), "q2", -1); ev.Code != "too_large" || !strings.Contains(ev.Message, "space for files") {
		t.Fatalf("over the room's quota: %+v", ev)
	}
	if n := streamLen(t, cl, room); n != before {
		t.Fatalf("the refused upload appended %d entries", n-before)
	}
	url := fileEntry(t, c, first.ID).URL
	if resp, _ := fetch(t, "http://"+r.addr+url, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("before the TTL: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(waitFor)
	for {
		resp, body := fetch(t, "http://"+r.addr+url, nil)
		if resp.StatusCode == http.StatusNotFound {
			if !strings.Contains(string(body), "not_found") {
				t.Fatalf("expired file body: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the file outlived its TTL")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pageBack asks for history pages of n from the newest back to the first
// and returns every entry id, oldest first, and the number of pages.
func pageBack(t *testing.T, c *client.Conn, n int) ([]string, int) {
	t.Helper()
	var pages [][]string
	before := ""
	for i := 0; ; i++ {
		nonce := fmt.Sprint("h", i)
		frame, _ := json.Marshal(map[string]any{"type": "history", "before": before, "limit": n, "nonce": nonce})
		if err := c.SendRaw(context.Background(), websocket.MessageText, frame); err != nil {
			t.Fatal(err)
		}
		var page client.Event
		for page.Type != "history" || page.Nonce != nonce {
			page = clienttest.Next(t, c)
		}
		var ids []string
		for _, e := range page.Entries {
			if e.Type == "join" || e.Type == "leave" {
				t.Fatalf("history holds a %s entry", e.Type)
			}
			ids = append(ids, e.ID)
		}
		pages = append([][]string{ids}, pages...)
		if !page.More || len(ids) == 0 {
			break
		}
		before = ids[0]
		if i > 100 {
			t.Fatal("history never ended")
		}
	}
	var all []string
	for _, p := range pages {
		all = append(all, p...)
	}
	return all, len(pages)
}

// Older history in pages of 50: back to the first message, in order, no
// gap, no duplicate, more:false at the start; across a trim the pages end
// where the stream does.
func TestHistoryPaging(t *testing.T) {
	cl := startCluster(t, 1, config.TailShared, func(c *config.Config) { unlimited(c); c.StreamMaxlen = 100 })
	r := cl.replicas[0]
	ctx := context.Background()
	room := uniqueRoom("pages")
	c := dial(t, r.wsURL(room, "ann", ""))
	clienttest.UntilReady(t, c)
	var sent []string
	for i := range 500 {
		sent = append(sent, clienttest.Send(t, c, fmt.Sprint("m", i)))
	}
	// The stream holds about its cap (MAXLEN ~): what is left is what the
	// pages must hold.
	msgs, err := cl.redis.Client().XRange(ctx, "chat:{"+room+"}:log", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, m := range msgs {
		if m.Values["type"] == "message" {
			kept = append(kept, m.ID)
		}
	}
	if len(kept) >= 500 || len(kept) < 100 || kept[len(kept)-1] != sent[499] {
		t.Fatalf("the stream kept %d of 500 messages", len(kept))
	}
	got, pages := pageBack(t, c, 50)
	if fmt.Sprint(got) != fmt.Sprint(kept) {
		t.Fatalf("%d pages, %d entries; want the stream's %d messages in order", pages, len(got), len(kept))
	}

	// Untrimmed: all 500.
	big := startCluster(t, 1, config.TailShared, unlimited)
	room2 := uniqueRoom("pages")
	d := dial(t, big.replicas[0].wsURL(room2, "ann", ""))
	clienttest.UntilReady(t, d)
	sent = sent[:0]
	for i := range 500 {
		sent = append(sent, clienttest.Send(t, d, fmt.Sprint("m", i)))
	}
	got, pages = pageBack(t, d, 50)
	if fmt.Sprint(got) != fmt.Sprint(sent) || pages != 10 && pages != 11 {
		t.Fatalf("%d pages, %d entries; want all 500 sent, in order, in 10 pages", pages, len(got))
	}
}

// Signed in, a file is readable by whoever may enter its room and by no
// one else: both users of a direct message get it (token in the query, a
// Bearer header or the cookie), a third user is forbidden, a missing
// token is unauthorized, and a rooms claim that leaves the room out
// forbids it too.
func TestFileAccessSignedIn(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { jwtMode(c); unlimited(c) })
	alice, bob, carol := hs(t, claims("alice", "Alice")), hs(t, claims("bob", "Bob")), hs(t, claims("carol", "Carol"))
	a := dial(t, fmt.Sprintf("ws://%s/ws?room=@bob&token=%s", cl.replicas[0].addr, alice))
	hello, _, _ := clienttest.UntilReady(t, a)
	img := pngOf(t, 8, 8)
	ack := upload(t, a, "secret.png", "image/png", img, "f1", -1)
	if ack.Type != "ack" {
		t.Fatalf("upload in a DM: %+v", ack)
	}
	url := "http://" + cl.replicas[1].addr + fileEntry(t, a, ack.ID).URL
	if !strings.HasPrefix(url, "http://"+cl.replicas[1].addr+"/files/"+hello.Room+"/") {
		t.Fatalf("url %s is not in the DM room %s", url, hello.Room)
	}
	for name, h := range map[string]http.Header{
		"query":  nil,
		"bearer": {"Authorization": {"Bearer " + bob}},
		"cookie": {"Cookie": {"chat_token=" + bob}},
	} {
		u := url
		if h == nil {
			u += "?token=" + bob
		}
		if resp, body := fetch(t, u, h); resp.StatusCode != http.StatusOK || !bytes.Equal(body, img) {
			t.Errorf("bob, token by %s: %d, %d bytes", name, resp.StatusCode, len(body))
		}
	}
	for _, tt := range []struct {
		name   string
		url    string
		status int
	}{
		{"carol", url + "?token=" + carol, http.StatusForbidden},
		{"no token", url, http.StatusUnauthorized},
		{"bad token", url + "?token=" + bob + "x", http.StatusUnauthorized},
	} {
		if resp, body := fetch(t, tt.url, nil); resp.StatusCode != tt.status || bytes.Equal(body, img) {
			t.Errorf("%s: %d (%d bytes), want %d and no bytes", tt.name, resp.StatusCode, len(body), tt.status)
		}
	}

	// A public room: a rooms claim that leaves it out forbids its files.
	room := uniqueRoom("team")
	p := dial(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", cl.replicas[1].addr, room, bob))
	clienttest.UntilReady(t, p)
	ack = upload(t, p, "plan.png", "image/png", img, "f2", -1)
	if ack.Type != "ack" {
		t.Fatalf("upload in a room: %+v", ack)
	}
	url = "http://" + cl.replicas[0].addr + fileEntry(t, p, ack.ID).URL
	other := claims("dave", "Dave")
	other.Rooms = token.RoomList{"elsewhere-*"}
	if resp, _ := fetch(t, url+"?token="+hs(t, other), nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a user whose rooms leave it out: %d, want 403", resp.StatusCode)
	}
	if resp, body := fetch(t, url+"?token="+carol, nil); resp.StatusCode != http.StatusOK || !bytes.Equal(body, img) {
		t.Errorf("a user who may enter the room: %d", resp.StatusCode)
	}
}
