package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/config"
	"github.com/streamchat/streamchat/pkg/token"
)

// click clicks the element the selector names with the DOM's own click,
// which also reaches buttons shown only on hover.
func (tb *tab) click(what, selector string) {
	tb.t.Helper()
	tb.waitJS(what, `document.querySelector(`+jsString(selector)+`) !== null`)
	tb.do(chromedp.Evaluate[chromedp.Void](`document.querySelector(` + jsString(selector) + `).click()`))
}

// typeUntil types text a key at a time, as a person does, until expr
// holds on the watcher's page: the page sends a typing notice at most
// every 3.5 s, and the server passes at most one per 3 s per user, so
// whether the first keys' notice goes out depends on when the last did.
func (tb *tab) typeUntil(watcher *tab, text, expr string) {
	tb.t.Helper()
	deadline := time.Now().Add(waitFor)
	for i := 0; ; i++ {
		tb.do(chromedp.SendKeys("#text", string([]rune(text)[i%len([]rune(text))])))
		ok, err := chromedp.Run(watcher.ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("tab %s typed for %s and %s never saw %s (%v)", tb.name, waitFor, watcher.name, expr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// msgOf is a selector for the message whose text (so far) is text: the
// id of its element, looked up on the page.
func (tb *tab) idOf(text string) string {
	tb.t.Helper()
	tb.waitJS("message "+text, `[...document.querySelectorAll('#messages .msg[data-id]')].some(li => li.querySelector('.body').textContent === `+jsString(text)+`)`)
	id, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('#messages .msg[data-id]')].find(li => li.querySelector('.body').textContent === `+jsString(text)+`).dataset.id`))
	if err != nil {
		tb.t.Fatal(err)
	}
	return id
}

func msgSel(id string) string { return `#messages .msg[data-id="` + id + `"]` }

// The conversation features on two replicas, signed in: typing shows and
// clears, an edit and a delete show on the other page, a reaction count
// updates on both, mentions are marked and notify only when hidden, the
// room list's badge counts another room's messages and clears when the
// room is opened, and the tab title counts them.
func TestBrowserConversationFeatures(t *testing.T) {
	artifacts := os.Getenv(EnvArtifacts)
	if artifacts == "" {
		artifacts = t.TempDir()
	} else if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { jwtMode(c); unlimited(c) })
	r1, r2 := cl.replicas[0], cl.replicas[1]
	room, other := uniqueRoom("features"), uniqueRoom("elsewhere")
	browser := startBrowser(t)
	a := newTab(t, browser, "alice")
	b := newTab(t, browser, "bob")
	open := func(tb *tab, r *replica, c token.Claims, room string) {
		tb.do(chromedp.Navigate(fmt.Sprintf("http://%s/?token=%s#/r/%s", r.addr, hs(t, c), room)))
		tb.waitLive()
	}
	// Bob has been in the other room before: it is in his list.
	open(b, r2, claims("bob", "Bob"), other)
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/r/` + room + `"`))
	b.waitJS("bob in the room", `document.querySelector('#room-title').textContent === '#`+room+`' && document.querySelector('#status').dataset.state === 'live'`)
	open(a, r1, claims("alice", "Alice"), other)
	a.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/r/` + room + `"`))
	a.waitJS("alice in the room", `document.querySelector('#room-title').textContent === '#`+room+`' && document.querySelector('#status').dataset.state === 'live'`)

	step := stepper(t, a, b)
	typing := func(tb *tab) string {
		s, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`document.querySelector('#typing').textContent`))
		if err != nil {
			tb.t.Fatal(err)
		}
		return s
	}

	step("typing shows on the other replica and clears", func(t *testing.T) {
		a.do(chromedp.SendKeys("#text", "hel"))
		b.waitJS("alice is typing", `document.querySelector('#typing').textContent === 'Alice is typing…'`)
		if s := typing(a); s != "" {
			t.Fatalf("alice sees her own typing: %q", s)
		}
		b.waitJS("cleared 5 s after the last notice", `document.querySelector('#typing').textContent === ''`)
		a.do(chromedp.SendKeys("#text", "lo wrld")) // more than 3 s later: a new notice
		b.waitJS("typing again", `document.querySelector('#typing').textContent === 'Alice is typing…'`)
		a.do(pressEnter())
		// Cleared at once by her message: both hold when the message shows.
		b.waitJS("cleared by her message", hasMessage("hello wrld")+` && document.querySelector('#typing').textContent === ''`)
	})

	step("an edit and a delete show on the other page", func(t *testing.T) {
		id := a.idOf("hello wrld")
		a.click("edit button", msgSel(id)+` .actions .edit`)
		a.do(chromedp.Evaluate[chromedp.Void](`(() => { const f = document.querySelector(` + jsString(msgSel(id)+` .edit-form`) + `); f.querySelector('textarea').value = 'hello world'; f.requestSubmit(); })()`))
		b.waitJS("edited on bob's page", `document.querySelector(`+jsString(msgSel(id)+` .body`)+`).textContent === 'hello world (edited)'`)
		a.waitJS("edited on alice's page", `document.querySelector(`+jsString(msgSel(id)+` .body`)+`).textContent === 'hello world (edited)'`)
		if n, _ := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(msgSel(id)+` .actions .edit`)+`).length`)); n != 0 {
			t.Fatal("bob may edit alice's message")
		}

		a.send("oops, wrong room")
		oops := a.idOf("oops, wrong room")
		a.click("delete", msgSel(oops)+` .actions .delete`)
		a.waitJS("asks first", `document.querySelector(`+jsString(msgSel(oops)+` .actions .delete`)+`).textContent === 'Delete?'`)
		a.click("delete, confirmed", msgSel(oops)+` .actions .delete`)
		for _, tb := range []*tab{a, b} {
			tb.waitJS("tombstone", `document.querySelector(`+jsString(msgSel(oops))+`).classList.contains('deleted') && document.querySelector(`+jsString(msgSel(oops)+` .body`)+`).textContent === 'message deleted'`)
		}
	})

	step("a reaction count updates on both pages", func(t *testing.T) {
		id := a.idOf("hello world (edited)")
		b.click("react button", msgSel(id)+` .actions .react`)
		b.click("thumbs up", msgSel(id)+` .picker button[data-emoji="👍"]`)
		chip := msgSel(id) + ` .reactions .reaction[data-emoji="👍"]`
		for _, tb := range []*tab{a, b} {
			tb.waitJS("👍 1", `document.querySelector(`+jsString(chip)+`)?.textContent === '👍 1'`)
		}
		b.waitJS("bob's own", `document.querySelector(`+jsString(chip)+`).getAttribute('aria-pressed') === 'true'`)
		a.click("alice's chip", chip)
		for _, tb := range []*tab{a, b} {
			tb.waitJS("👍 2", `document.querySelector(`+jsString(chip)+`)?.textContent === '👍 2'`)
		}
		a.waitJS("alice's own", `document.querySelector(`+jsString(chip)+`).getAttribute('aria-pressed') === 'true'`)
		b.click("bob takes his back", chip)
		a.waitJS("👍 1 again", `document.querySelector(`+jsString(chip)+`)?.textContent === '👍 1'`)
		b.waitJS("not bob's any more", `document.querySelector(`+jsString(chip)+`).getAttribute('aria-pressed') === 'false'`)
		b.click("react button", msgSel(id)+` .actions .react`)
		b.click("party", msgSel(id)+` .picker button[data-emoji="🎉"]`)
		a.waitJS("🎉 1", `document.querySelector(`+jsString(msgSel(id)+` .reactions .reaction[data-emoji="🎉"]`)+`)?.textContent === '🎉 1'`)
	})

	step("mentions are marked, and notify only when hidden", func(t *testing.T) {
		// A stand-in for the Notification API, which headless Chromium
		// cannot show, and a hidden tab.
		a.do(chromedp.Evaluate[chromedp.Void](`(() => {
			window.__notes = [];
			window.Notification = class { static permission = "granted"; constructor(title, o) { __notes.push(title + ": " + o.body); } close() {} };
			Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
		})()`))
		b.send("@Alice can you look?")
		b.send("no mention here")
		a.waitJS("mention marked", `[...document.querySelectorAll('#messages .msg.mentioned mark.mention')].some(m => m.textContent === '@Alice')`)
		a.waitJS("both arrived", hasMessage("no mention here"))
		a.send("@Alice notes to self")
		a.waitJS("own delivered", delivered("@Alice notes to self"))
		notes, err := chromedp.Run(a.ctx, chromedp.Evaluate[[]string](`__notes`))
		if err != nil || fmt.Sprint(notes) != "[Bob in #"+room+": @Alice can you look?]" {
			t.Fatalf("notifications %q (%v), want the mention only", notes, err)
		}
		a.waitJS("title counts what came while hidden", `document.title.startsWith('(2) ')`)
		a.do(chromedp.Evaluate[chromedp.Void](`(() => { delete document.hidden; document.dispatchEvent(new Event("visibilitychange")); })()`))
		a.waitJS("title cleared when visible", `!document.title.startsWith('(')`)
	})

	step("the room list badge counts up and clears when the room is opened", func(t *testing.T) {
		carol := signedIn(t, cl, 0, other, "carol", "Carol", "")
		clienttest.UntilReady(t, carol)
		badge := `document.querySelector('#room-list a[data-room="` + other + `"]')?.parentElement.querySelector('.badge')?.textContent`
		clienttest.Send(t, carol, "one")
		b.waitJS("badge 1", badge+` === '1'`)
		clienttest.Send(t, carol, "two")
		clienttest.Send(t, carol, "three")
		b.waitJS("badge 3", badge+` === '3'`)
		b.waitJS("tab title (3)", `document.title.startsWith('(3) ')`)
		a.waitJS("alice's badge too", `document.querySelector('#room-list a[data-room="`+other+`"]')?.parentElement.querySelector('.badge')?.textContent === '3'`)
		b.typeUntil(a, "on my way, see you there", `document.querySelector('#typing').textContent === 'Bob is typing…'`)
		a.screenshot(filepath.Join(artifacts, "features.png"))
		b.click("open the other room", `#room-list a[data-room="`+other+`"]`)
		b.waitJS("in the other room with a new-messages line", hasMessage("three")+` && document.querySelector('#messages .divider.new') !== null`)
		b.waitJS("badge cleared", `document.querySelector('#room-list a[data-room="`+other+`"]') !== null && `+badge+` === undefined`)
		b.waitJS("title cleared", `!document.title.startsWith('(')`)
		// The marker is stored: the list on the other replica agrees.
		b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/r/` + room + `"`))
		b.waitLive()
		time.Sleep(100 * time.Millisecond)
		b.waitJS("still cleared after leaving", `document.querySelector('#room-list a[data-room="`+other+`"]') !== null && `+badge+` === undefined`)
	})
	a.check()
	b.check()
}
