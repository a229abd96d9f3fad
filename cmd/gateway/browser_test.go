package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/config"
	"github.com/streamchat/streamchat/pkg/token"
)

// EnvArtifacts names the directory the browser test writes its screenshots
// to (default: a temporary directory).
const EnvArtifacts = "CHAT_TEST_ARTIFACTS"

const chromiumHint = "Chromium is required by the browser tests: install it with `apt-get install -y chromium` (Debian/Ubuntu), or set CHAT_TEST_CHROMIUM to a Chrome or Chromium binary"

func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHAT_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal(chromiumHint)
	return ""
}

// tab is one browser page, with everything it reported that a test must
// not ignore: JavaScript dialogs and uncaught exceptions.
type tab struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc

	mu         sync.Mutex
	dialogs    []string
	exceptions []string
	frames     []string // websocket traffic, for failure reports
}

func newTab(t *testing.T, browser context.Context, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	tb := &tab{t: t, name: name, ctx: ctx, cancel: cancel}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("open tab %s: %v", name, err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		switch ev := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			tb.dialogs = append(tb.dialogs, ev.Message)
			go func() { // a dialog blocks the page until it is answered
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}()
		case *network.EventWebSocketFrameReceived:
			tb.frames = append(tb.frames, "← "+string(ev.Response.PayloadData))
		case *network.EventWebSocketFrameSent:
			tb.frames = append(tb.frames, "→ "+string(ev.Response.PayloadData))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := d.Text
			if d.Exception != nil {
				desc += " " + d.Exception.Description
			}
			tb.exceptions = append(tb.exceptions, fmt.Sprintf("%s at %s:%d:%d", desc, d.URL, d.LineNumber+1, d.ColumnNumber+1))
		}
	}); err != nil {
		t.Fatalf("listen on tab %s: %v", name, err)
	}
	t.Cleanup(tb.close)
	return tb
}

func (tb *tab) close() { tb.cancel() }

// check fails the test on any dialog or uncaught exception so far.
func (tb *tab) check() {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.dialogs) > 0 {
		tb.t.Fatalf("tab %s opened JavaScript dialogs: %q", tb.name, tb.dialogs)
	}
	if len(tb.exceptions) > 0 {
		tb.t.Fatalf("tab %s threw: %q", tb.name, tb.exceptions)
	}
}

func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatalf("tab %s: %v", tb.name, err)
	}
}

// waitJS waits until the JavaScript expression is truthy on the page.
func (tb *tab) waitJS(what, expr string) {
	tb.t.Helper()
	_, err := chromedp.Run(tb.ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitFor)))
	if err != nil {
		html, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`document.querySelector('#status').outerHTML + document.querySelector('#messages').outerHTML`))
		tb.mu.Lock()
		exceptions, frames := tb.exceptions, tb.frames
		tb.mu.Unlock()
		tb.t.Fatalf("tab %s: waiting for %s: %v\nexceptions: %q\nwebsocket:\n%s\npage:\n%s", tb.name, what, err, exceptions, strings.Join(frames, "\n"), html)
	}
}

// clientKey is the key the page keeps in localStorage and sends at connect.
func (tb *tab) clientKey() string {
	tb.t.Helper()
	key, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`localStorage.getItem("clientKey") || ""`))
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(key) {
		tb.t.Fatalf("tab %s: client key %q (%v)", tb.name, key, err)
	}
	return key
}

// texts returns the text of the message bodies on the page, in order.
func (tb *tab) texts(selector string) []string {
	tb.t.Helper()
	out, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll(`+jsString(selector)+`)].map(e => e.querySelector('.body').textContent)`))
	if err != nil {
		tb.t.Fatalf("tab %s: %v", tb.name, err)
	}
	return out
}

func (tb *tab) screenshot(path string) {
	tb.t.Helper()
	png, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("tab %s: screenshot: %v", tb.name, err)
	}
	if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		tb.t.Fatalf("tab %s: screenshot is not a PNG (%d bytes)", tb.name, len(png))
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// join opens the client on a replica and signs in to the room.
func (tb *tab) join(r *replica, room, name string) {
	tb.t.Helper()
	tb.do(
		chromedp.Navigate(fmt.Sprintf("http://%s/#/r/%s", r.addr, room)),
		chromedp.WaitVisible("#name"),
		chromedp.SetValue("#name", name),
		chromedp.Click("#join-button"),
	)
	tb.waitLive()
}

func (tb *tab) waitLive() {
	tb.t.Helper()
	tb.waitJS("live", `document.querySelector('#status').dataset.state === 'live'`)
}

// send types text and presses Enter.
func (tb *tab) send(text string) {
	tb.t.Helper()
	tb.do(chromedp.SendKeys("#text", text), pressEnter())
}

// pressEnter sends Enter the way a keyboard does: one keyDown that carries
// the text "\r", which the page may cancel, then keyUp. (SendKeys adds a
// separate char event that would type a newline even after the page
// handled the key.)
func pressEnter() chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		key := input.DispatchKeyEventParams{Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13}
		down := key
		down.Type, down.Text, down.UnmodifiedText = input.DispatchKeyEventTypeKeyDown, "\r", "\r"
		if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, down); err != nil {
			return err
		}
		up := key
		up.Type = input.DispatchKeyEventTypeKeyUp
		_, err := chromedp.Call(ctx, input.DispatchKeyEvent, up)
		return err
	})
}

// hasMessage is a JavaScript test for a message body with exactly this text.
func hasMessage(text string) string {
	return `[...document.querySelectorAll('#messages .msg .body')].some(b => b.textContent === ` + jsString(text) + `)`
}

// delivered is a JavaScript test for one's own message that the server stored.
func delivered(text string) string {
	return `[...document.querySelectorAll('#messages .msg.mine')].some(li => li.dataset.id && !li.classList.contains('pending') && li.querySelector('.body').textContent === ` + jsString(text) + `)`
}

func jsString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == '<' || r == '>':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestBrowser drives the embedded client in real headless Chromium against
// two real replicas on one real Redis.
// startBrowser starts headless Chromium for the test and returns its context.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	bin := findChromium(t)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox, // runs as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// The machine has no network beyond loopback: keep Chromium from
		// trying to reach its own services.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 720),
	)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v (%s)", bin, err, chromiumHint)
	}
	return browser
}

func TestBrowser(t *testing.T) {
	artifacts := os.Getenv(EnvArtifacts)
	if artifacts == "" {
		artifacts = t.TempDir()
	} else if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	cl := startCluster(t, 2, config.TailShared, unlimited)
	r1, r2 := cl.replicas[0], cl.replicas[1]
	room := uniqueRoom("web")
	browser := startBrowser(t)

	a := newTab(t, browser, "A")
	b := newTab(t, browser, "B")
	a.join(r1, room, "alice")
	b.join(r2, room, "bob")

	parent := t
	step := stepper(parent, a, b)

	step("message reaches the other replica and is delivered", func(t *testing.T) {
		a.send("hello from A")
		b.waitJS("A's message on B", hasMessage("hello from A"))
		a.waitJS("A's message delivered", delivered("hello from A"))
		a.screenshot(filepath.Join(artifacts, "a.png"))
		b.screenshot(filepath.Join(artifacts, "b.png"))
		// The page keeps a client key and the server scopes its nonces by
		// it, so a resend after a reconnect is stored once.
		key := a.clientKey()
		sent, _, err := cl.redis.Client().Scan(context.Background(), 0, "chat:{"+room+"}:sent:*:c:"+key+":*", 1000).Result()
		if err != nil || len(sent) != 1 {
			t.Fatalf("dedupe records for the page's client key %q: %v %v", key, sent, err)
		}
	})

	step("reload shows history in order", func(t *testing.T) {
		a.send("second")
		a.send("third")
		b.waitJS("third on B", hasMessage("third"))
		key := b.clientKey()
		b.do(chromedp.Reload())
		b.waitLive()
		if again := b.clientKey(); again != key {
			t.Fatalf("client key changed across a reload: %q, then %q", key, again)
		}
		if got := b.texts("#messages .msg.replay"); fmt.Sprint(got) != "[hello from A second third]" {
			t.Fatalf("history after reload = %q", got)
		}
		b.waitJS("history separated from live", `document.querySelector('#messages .divider') !== null`)
	})

	step("replica restart loses nothing", func(t *testing.T) {
		r2.stop()
		b.waitJS("reconnecting", `document.querySelector('#status').dataset.state === 'reconnecting'`)
		var want []string
		for i := 1; i <= 5; i++ {
			text := fmt.Sprint("while B was away #", i)
			want = append(want, text)
			a.send(text)
			a.waitJS("delivered on A", delivered(text))
		}
		b.send("typed while offline") // queued until the connection is back
		restartReplica(parent, r2)    // on the same address, as a supervisor would; lives on after this stage
		b.waitLive()
		b.waitJS("queued message delivered on B", delivered("typed while offline"))
		a.waitJS("queued message on A", hasMessage("typed while offline"))
		b.waitJS("last message on B", hasMessage(want[4]))
		var got []string
		for _, text := range b.texts("#messages .msg") {
			if strings.HasPrefix(text, "while B was away") {
				got = append(got, text)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after the restart B shows %q, want each of %q once, in order", got, want)
		}
	})

	step("markup is shown as text", func(t *testing.T) {
		img, script := `<img src=x onerror=alert(1)>`, `<script>alert(2)</script>`
		a.send(img)
		a.send(script)
		a.waitJS("img text delivered on A", delivered(img))
		a.waitJS("script text delivered on A", delivered(script))
		b.waitJS("img text on B", hasMessage(img))
		b.waitJS("script text on B", hasMessage(script))
		n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('#messages img, #messages script').length`))
		if err != nil || n != 0 {
			t.Fatalf("elements created from message text: %d (%v)", n, err)
		}
		// http(s) URLs become safe links; nothing else does.
		a.send("docs at https://example.com/a?b=1, not javascript:alert(3)")
		b.waitJS("link on B", `[...document.querySelectorAll('#messages a')].some(l => l.href === 'https://example.com/a?b=1' && l.rel === 'noopener noreferrer')`)
		links, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('#messages a')].filter(l => !/^https?:/.test(l.href)).length`))
		if err != nil || links != 0 {
			t.Fatalf("non-http links: %d (%v)", links, err)
		}
		time.Sleep(200 * time.Millisecond) // give a would-be onerror handler its chance to fire
		a.check()
		b.check()
	})

	step("presence follows the other page", func(t *testing.T) {
		b.waitJS("alice online on B", `document.querySelector('#online li[data-name="alice"]') !== null`)
		a.close()
		b.waitJS("alice gone on B", `document.querySelector('#online li[data-name="alice"]') === null`)
		b.check()
	})
}

// restartReplica starts a stopped replica again on the same address.
// stepper returns step, which runs one stage of a test as a subtest that
// the tabs report to; a failed stage ends the test, as later stages build
// on it.
func stepper(parent *testing.T, tabs ...*tab) func(name string, f func(t *testing.T)) {
	return func(name string, f func(t *testing.T)) {
		parent.Run(name, func(t *testing.T) {
			for _, tb := range tabs {
				tb.t = t
			}
			defer func() {
				for _, tb := range tabs {
					tb.t = parent
				}
			}()
			f(t)
		})
		if parent.Failed() {
			parent.FailNow()
		}
	}
}

func restartReplica(t *testing.T, r *replica) *replica {
	t.Helper()
	cfg := r.cfg
	cfg.Addr = r.addr
	return startReplica(t, cfg)
}

// Signed in with tokens: the page shows the user's name from the token,
// opens a direct conversation from the online list, and the other user,
// on another replica, finds it in their list and reads it.
func TestBrowserSignedIn(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { jwtMode(c); unlimited(c) })
	r1, r2 := cl.replicas[0], cl.replicas[1]
	room := uniqueRoom("signed")
	browser := startBrowser(t)
	a := newTab(t, browser, "alice")
	b := newTab(t, browser, "bob")
	open := func(tb *tab, r *replica, c token.Claims) {
		tb.do(chromedp.Navigate(fmt.Sprintf("http://%s/?token=%s#/r/%s", r.addr, hs(t, c), room)))
		tb.waitLive()
	}
	open(a, r1, claims("alice", "Alice Liddell"))
	open(b, r2, claims("bob", "Bob"))
	a.waitJS("own name from the token", `[...document.querySelectorAll('#online li')].some(li => li.dataset.uid === 'alice' && li.textContent.startsWith('Alice Liddell (you)'))`)
	if got, err := chromedp.Run(a.ctx, chromedp.Evaluate[string](`location.search`)); err != nil || got != "" {
		t.Fatalf("the token stayed in the address: %q %v", got, err)
	}
	a.waitJS("bob online", `document.querySelector('#online li[data-uid="bob"] button.dm') !== null`)
	a.do(chromedp.Click(`#online li[data-uid="bob"] button.dm`))
	a.waitJS("in the conversation with bob", `document.querySelector('#room-title').textContent === '@bob' && document.querySelector('#status').dataset.state === 'live'`)
	a.send("just between us")
	a.waitJS("delivered", delivered("just between us"))

	b.waitJS("the conversation in bob's list", `document.querySelector('#dm-list a[data-with="alice"]') !== null`)
	b.do(chromedp.Click(`#dm-list a[data-with="alice"]`))
	b.waitJS("bob reads it", hasMessage("just between us"))
	b.waitJS("from Alice", `[...document.querySelectorAll('#messages .msg')].some(li => li.dataset.from === 'Alice Liddell' && !li.classList.contains('mine'))`)
	b.send("likewise")
	a.waitJS("the answer on alice's page", hasMessage("likewise"))
	a.check()
	b.check()
}

// withFile returns JavaScript that puts a file with the bytes in a
// DataTransfer named dt and then runs use, as a drop or a paste would
// carry it.
func withFile(name, mime string, data []byte, use string) string {
	return `(() => {
		const bytes = Uint8Array.from(atob(` + jsString(base64.StdEncoding.EncodeToString(data)) + `), (c) => c.charCodeAt(0));
		const dt = new DataTransfer();
		dt.items.add(new File([bytes], ` + jsString(name) + `, { type: ` + jsString(mime) + ` }));
		` + use + `;
	})()`
}

// waitEval is waitJS by repeated evaluation, for a page restored from the
// back/forward cache, where chromedp's Poll waits for a load that never
// comes.
func (tb *tab) waitEval(what, expr string) {
	tb.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("tab %s: waiting for %s: %v", tb.name, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitJSWithin is waitJS with a deadline of its own, for the few
// behaviours whose promise is a time ("gone within 2 s").
func (tb *tab) waitJSWithin(what, expr string, limit time.Duration) {
	tb.t.Helper()
	_, err := chromedp.Run(tb.ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(limit)))
	if err != nil {
		tb.t.Fatalf("tab %s: %s not within %s: %v", tb.name, what, limit, err)
	}
}

// Files, older history, and the fixes a new user asked for: a dropped PNG
// shows as an image on another replica's page; scrolling up loads older
// messages in order with a date divider; leaving the page takes one off
// the online list at once; the phone layout keeps the message box and the
// last message in view.
func TestBrowserFilesAndHistory(t *testing.T) {
	artifacts := os.Getenv(EnvArtifacts)
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	cl := startCluster(t, 2, config.TailShared, unlimited)
	r1, r2 := cl.replicas[0], cl.replicas[1]
	room := uniqueRoom("pics")
	// Three days ago, 80 messages; the page's replay holds only the last
	// 50 of everything.
	rdb := cl.redis.Client()
	old := time.Now().Add(-72 * time.Hour).UnixMilli()
	lines := []string{"morning! anyone up for the trail on saturday?", "depends on the weather", "forecast says sun until 3",
		"I'm in, can bring the big thermos", "meet at the north car park at 9?", "9 works", "who's driving?", "I can take four"}
	people := []string{"grace", "heidi", "ivan"}
	var oldIDs []string
	for i := range 80 {
		id := fmt.Sprintf("%d-0", old+int64(i)*45_000)
		oldIDs = append(oldIDs, id)
		if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: "chat:{" + room + "}:log", ID: id,
			Values: []any{"type", "message", "from", people[i%3], "text", lines[i%len(lines)]}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	browser := startBrowser(t)
	a := newTab(t, browser, "A")
	b := newTab(t, browser, "B")
	a.join(r1, room, "alice")
	b.join(r2, room, "bob")

	img := scenery(t, 320, 180)
	a.do(chromedp.Evaluate[chromedp.Void](withFile("trail-view.png", "image/png", img,
		`document.querySelector(".chat").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }))`)))
	b.waitJS("the PNG as an image on the other replica's page", `[...document.querySelectorAll('#messages img')].some(i => i.complete && i.naturalWidth === 320 && i.getAttribute('width') === '320')`)
	a.waitJS("the upload delivered on A", `[...document.querySelectorAll('#messages .msg.mine img')].some(i => i.naturalWidth === 320)`)
	a.send("the view from the top, last weekend")
	b.send("wow. saturday then?")
	a.waitJS("bob's answer", hasMessage("wow. saturday then?"))

	b.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#messages').scrollTop = 0`))
	b.waitJS("the oldest message", `document.querySelector('#messages .msg[data-id="`+oldIDs[0]+`"]') !== null`)
	got, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#messages .msg')].map(li => li.dataset.id).filter(id => id && id < "`+fmt.Sprint(old+80*45_000)+`")`))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(oldIDs) {
		t.Fatalf("the older messages on the page, in order:\n%v (%v)\nwant\n%v", got, err, oldIDs)
	}
	b.waitJS("a date divider before them", `(() => { const d = [...document.querySelectorAll('#messages .divider.day')].map(x => x.textContent); return d.length >= 2 && d[0] !== 'Today' && d.includes('Today'); })()`)

	b.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#messages').scrollTop = 1e9`))
	b.screenshot(filepath.Join(artifacts, "conversation.png"))

	// Leaving for another page: gone from B's list at once, back on return.
	a.do(chromedp.Evaluate[chromedp.Void](`window.beforeLeaving = true; addEventListener('pageshow', (e) => { window.restored = e.persisted; })`))
	a.do(chromedp.Navigate("http://" + r1.addr + "/healthz"))
	b.waitJSWithin("alice off the list", `document.querySelector('#online li[data-name="alice"]') === null`, 2*time.Second)
	// Back: the page comes out of the back/forward cache (closing the
	// socket on pagehide is what lets it in) and resumes on pageshow.
	a.do(chromedp.Evaluate[chromedp.Void](`history.back()`))
	a.waitEval("restored from the back/forward cache and live", `window.beforeLeaving === true && window.restored === true && document.querySelector('#status').dataset.state === 'live'`)
	b.waitJS("alice back", `document.querySelector('#online li[data-name="alice"]') !== null`)
	b.send("welcome back")
	a.waitEval("a message after the return", hasMessage("welcome back"))

	phone := newTab(t, browser, "phone")
	phone.do(chromedp.EmulateViewport(390, 844))
	// The tabs share one profile, whose stored name would join at once:
	// set the phone's first, then open the room.
	phone.do(chromedp.Navigate("http://"+r2.addr+"/"),
		chromedp.Evaluate[chromedp.Void](`localStorage.setItem("username", "carol"); document.querySelector("#name").value = "carol"`),
		chromedp.Navigate(fmt.Sprintf("http://%s/#/r/%s", r2.addr, room)))
	phone.waitLive()
	phone.send("from my phone")
	phone.waitJS("delivered", delivered("from my phone"))
	phone.waitJS("message box and last message in view", `(() => {
		const box = document.querySelector('#text').getBoundingClientRect();
		const msgs = document.querySelectorAll('#messages .msg');
		const last = msgs[msgs.length - 1].getBoundingClientRect();
		return box.bottom <= innerHeight && box.top > innerHeight / 2 && last.top >= 0 && last.bottom <= box.top;
	})()`)
	phone.screenshot(filepath.Join(artifacts, "phone.png"))
	a.check()
	b.check()
	phone.check()
}

// A message refused as too fast, inside a grouped run, says why and has a
// Retry that works.
func TestBrowserRetryInAGroup(t *testing.T) {
	cl := startCluster(t, 1, config.TailShared, func(c *config.Config) { c.Rate, c.Burst = 1, 3 })
	room := uniqueRoom("retry")
	browser := startBrowser(t)
	a := newTab(t, browser, "A")
	a.join(cl.replicas[0], room, "alice")
	for i := range 5 {
		a.send(fmt.Sprint("quick ", i))
	}
	a.waitJS("a refused message with its reason", `[...document.querySelectorAll('#messages .msg.failed.continued')].some(li => li.querySelector('.failure .reason').textContent === 'sending too fast — retry' && li.querySelector('.failure button.retry'))`)
	time.Sleep(1500 * time.Millisecond) // the budget refills (1 per second)
	a.do(chromedp.Click(`#messages .msg.failed .failure button.retry`))
	a.waitJS("the retried message delivered", `[...document.querySelectorAll('#messages .msg.mine')].filter(li => li.dataset.id && !li.classList.contains('failed')).length >= 4`)
	a.check()
}

// scenery is a PNG that looks like a photo: a sky, a sun, hills.
func scenery(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{uint8(70 + 120*y/h), uint8(130 + 80*y/h), 230, 255} // sky
			if dx, dy := x-w*3/4, y-h/3; dx*dx+dy*dy < (h/7)*(h/7) {
				c = color.RGBA{255, 214, 102, 255} // sun
			}
			if ridge := h*2/3 + int(float64(h)/8*math.Sin(float64(x)/float64(w)*7)); y > ridge {
				c = color.RGBA{uint8(40 + 30*(y-ridge)/h), uint8(110 - 40*(y-ridge)/h), 60, 255} // hills
			}
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The other two ways in: an image pasted into the message box and a file
// picked with the attach button. Each shows an upload indicator at once;
// the image arrives inline on another replica's page, the text file as a
// link with its name and size; once the files expire, a newcomer's page
// says "file expired" for both.
func TestBrowserPasteAttachAndExpiry(t *testing.T) {
	const ttl = 3 * time.Second
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { unlimited(c); c.FileTTL = ttl })
	room := uniqueRoom("paste")
	browser := startBrowser(t)
	a := newTab(t, browser, "A")
	b := newTab(t, browser, "B")
	a.join(cl.replicas[0], room, "alice")
	b.join(cl.replicas[1], room, "bob")
	// Record every upload indicator A's page shows.
	a.do(chromedp.Evaluate[chromedp.Void](`window.progressSeen = [];
		new MutationObserver(() => document.querySelectorAll('#messages .progress').forEach((p) => progressSeen.push(p.textContent)))
			.observe(document.querySelector('#messages'), { childList: true, subtree: true, characterData: true });`))

	img := scenery(t, 64, 48)
	a.do(chromedp.Evaluate[chromedp.Void](withFile("clip.png", "image/png", img,
		`document.querySelector('#text').dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }))`)))
	b.waitJS("the pasted image on the other replica", `[...document.querySelectorAll('#messages img')].some(i => i.complete && i.naturalWidth === 64 && i.alt === 'clip.png')`)

	notes := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notes, bytes.Repeat([]byte("packing list\n"), 200), 0o644); err != nil {
		t.Fatal(err)
	}
	a.do(chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{notes}))
	b.waitJS("the attached file as a link with its size", `[...document.querySelectorAll('#messages a.file')].some(l =>
		l.textContent === 'notes.txt' && l.getAttribute('href').startsWith('/files/') && l.nextElementSibling.textContent === ' (2.5 KB)')`)
	a.waitJS("both uploads delivered on A", `document.querySelectorAll('#messages .msg.mine.pending').length === 0 &&
		document.querySelectorAll('#messages .msg.mine img, #messages .msg.mine a.file').length === 2`)
	seen, err := chromedp.Run(a.ctx, chromedp.Evaluate[[]string](`[...new Set(progressSeen)]`))
	if err != nil || !slices.Contains(seen, "clip.png: uploading…") || !slices.ContainsFunc(seen, func(s string) bool { return strings.HasPrefix(s, "notes.txt: uploading") }) {
		t.Fatalf("upload indicators on A: %q (%v)", seen, err)
	}

	// After the TTL the bytes are gone: a newcomer's replay says so.
	time.Sleep(ttl + time.Second)
	c := newTab(t, browser, "C")
	c.do(chromedp.Navigate("http://"+cl.replicas[1].addr+"/"),
		chromedp.Evaluate[chromedp.Void](`localStorage.setItem("username", "carol")`))
	c.join(cl.replicas[1], room, "carol")
	c.waitJS("both files expired", `[...document.querySelectorAll('#messages .expired')].map(e => e.textContent).sort().join('|') === 'clip.png: file expired|notes.txt: file expired'`)
	a.check()
	b.check()
	c.check()
}
